// Authenticator: the upgrade decision in the order it is made (path id, request shape,
// origin, token place, token, sub), and the API decision from the Authorization header. The
// tokens here are the server's own (mint_token); tests/integration/auth_test.py proves the
// same against tokens from PyJWT, with every algorithm.
#include "transport/authenticator.hpp"

#include <gtest/gtest.h>

#include <string>

namespace shardcast::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

constexpr std::string_view kSecret = "a-test-secret-that-is-at-least-32-bytes-long";

AuthConfig with_secret() {
    AuthConfig config;
    config.jwt.hmac_secret = kSecret;
    config.api_keys = {"k1", "k2"};
    return config;
}

std::string token_for(std::string_view sub, std::chrono::seconds ttl = 1h) {
    JwtConfig jwt;
    jwt.hmac_secret = kSecret;
    return mint_token(jwt, sub, ttl, Clock::now());
}

// A valid upgrade of target (which must outlive it), to which each test adds or breaks one
// thing.
UpgradeRequestView upgrade(std::string_view target) {
    UpgradeRequestView r;
    r.method = "GET";
    r.target = target;
    r.host = "push.example.com";
    r.connection_upgrade = true;
    r.upgrade_websocket = true;
    r.key = "dGhlIHNhbXBsZSBub25jZQ==";
    r.ws_version = "13";
    return r;
}

class AuthenticatorTest : public ::testing::Test {
protected:
    UpgradeDecision admit(const UpgradeRequestView& request) const {
        return auth.admit(request, Clock::now());
    }
    UpgradeRefusal refusal(const UpgradeRequestView& request) const {
        const UpgradeDecision decision = admit(request);
        EXPECT_FALSE(decision.identity) << "admitted " << request.target;
        return decision.refused.reason;
    }

    Authenticator auth{with_secret()};
};

TEST_F(AuthenticatorTest, TokenOnBarePathNamesTheClient) {
    const std::string target = "/ws?token=" + token_for("alice");
    const UpgradeDecision decision = admit(upgrade(target));
    ASSERT_TRUE(decision.identity) << decision.refused.message;
    EXPECT_EQ(decision.identity->client_id, "alice");
    EXPECT_TRUE(decision.identity->exp.has_value());
    EXPECT_FALSE(decision.identity->v1);
}

TEST_F(AuthenticatorTest, PathIdMustBeTheTokensSub) {
    const std::string target = "/ws/bob?token=" + token_for("alice");
    EXPECT_EQ(refusal(upgrade(target)), UpgradeRefusal::sub_mismatch);
    EXPECT_EQ(admit(upgrade(target)).refused.status, 403u);
    const std::string own = "/ws/alice?token=" + token_for("alice");
    EXPECT_TRUE(admit(upgrade(own)).identity);
}

TEST_F(AuthenticatorTest, TokenMayComeInTheHeaderOrASubprotocolButOnlyOnce) {
    const std::string token = token_for("alice");
    UpgradeRequestView header = upgrade("/ws");
    const std::string bearer = "Bearer " + token;
    header.authorization = bearer;
    EXPECT_TRUE(admit(header).identity);

    UpgradeRequestView protocol = upgrade("/ws");
    const std::string protocols = "shardcast.v1, shardcast.token." + token;
    protocol.protocols = protocols;
    const UpgradeDecision decision = admit(protocol);
    ASSERT_TRUE(decision.identity);
    EXPECT_TRUE(decision.identity->v1);

    const std::string with_query = "/ws?token=" + token;
    UpgradeRequestView twice = upgrade(with_query);
    twice.authorization = bearer;
    EXPECT_EQ(refusal(twice), UpgradeRefusal::malformed_token);
}

TEST_F(AuthenticatorTest, NoTokenIsRefusedUnlessAnonymousClientsAreOn) {
    EXPECT_EQ(refusal(upgrade("/ws/alice")), UpgradeRefusal::missing_token);
    EXPECT_EQ(admit(upgrade("/ws/alice")).refused.status, 401u);

    AuthConfig open = with_secret();
    open.anonymous_clients = true;
    const Authenticator anonymous(open);
    const UpgradeDecision decision = anonymous.admit(upgrade("/ws/alice"), Clock::now());
    ASSERT_TRUE(decision.identity);
    EXPECT_EQ(decision.identity->client_id, "alice");
    EXPECT_TRUE(decision.identity->anonymous);
    EXPECT_FALSE(anonymous.admit(upgrade("/ws"), Clock::now()).identity) << "no id to take";
}

TEST_F(AuthenticatorTest, ExpiredAndForgedTokensAreRefusedWithTheirReason) {
    const std::string expired = "/ws?token=" + token_for("alice", -1h);
    EXPECT_EQ(refusal(upgrade(expired)), UpgradeRefusal::token_expired);
    std::string forged = "/ws?token=" + token_for("alice");
    char& inside = forged[forged.size() - 10];  // within the signature, all of its bits used
    inside = inside == 'A' ? 'B' : 'A';
    EXPECT_EQ(refusal(upgrade(forged)), UpgradeRefusal::bad_signature);
    EXPECT_EQ(refusal(upgrade("/ws?token=not-a-jwt")), UpgradeRefusal::malformed_token);
}

TEST_F(AuthenticatorTest, MalformedUpgradesAreRefusedBeforeTheToken) {
    const std::string target = "/ws?token=" + token_for("alice");
    UpgradeRequestView post = upgrade(target);
    post.method = "POST";
    EXPECT_EQ(admit(post).refused.status, 405u);
    UpgradeRequestView plain = upgrade(target);
    plain.upgrade_websocket = false;
    EXPECT_EQ(admit(plain).refused.status, 426u);
    UpgradeRequestView old = upgrade(target);
    old.ws_version = "8";
    EXPECT_EQ(admit(old).refused.status, 426u);
    UpgradeRequestView no_key = upgrade(target);
    no_key.key = "";
    EXPECT_EQ(admit(no_key).refused.status, 400u);
    UpgradeRequestView short_key = upgrade(target);
    short_key.key = "c2hvcnQ=";
    EXPECT_EQ(refusal(short_key), UpgradeRefusal::not_upgrade);
    EXPECT_EQ(refusal(upgrade("/ws/bad..id")), UpgradeRefusal::invalid_client_id);
}

TEST_F(AuthenticatorTest, BrowsersMayComeOnlyFromTheServersOwnOrAnAllowedOrigin) {
    const std::string target = "/ws?token=" + token_for("alice");
    auto from = [&](std::string_view origin,
                    const Authenticator& a = Authenticator(with_secret())) {
        UpgradeRequestView r = upgrade(target);
        r.has_origin = true;
        r.origin = origin;
        return a.admit(r, Clock::now());
    };
    EXPECT_TRUE(from("https://push.example.com").identity);
    EXPECT_TRUE(from("https://push.example.com:443").identity) << "default port written out";
    EXPECT_FALSE(from("https://evil.example").identity);
    EXPECT_FALSE(from("null").identity);
    EXPECT_EQ(from("https://evil.example").refused.reason, UpgradeRefusal::origin_refused);
    EXPECT_EQ(from("https://evil.example").refused.status, 403u);

    AuthConfig listed = with_secret();
    listed.allowed_origins = {"https://app.example.com"};
    const Authenticator with_list(listed);
    EXPECT_TRUE(from("https://app.example.com", with_list).identity);
    EXPECT_FALSE(from("http://app.example.com", with_list).identity) << "another scheme";

    AuthConfig any = with_secret();
    any.allowed_origins = {"*"};
    EXPECT_TRUE(from("https://evil.example", Authenticator(any)).identity);
}

TEST_F(AuthenticatorTest, ApiNeedsAKeyAndIsClosedWithoutAny) {
    EXPECT_TRUE(auth.api_access("Bearer k2").allowed);
    EXPECT_TRUE(auth.api_access("bearer k1").allowed) << "the scheme is case-insensitive";
    EXPECT_EQ(auth.api_access("Bearer k3").status, 401u);
    EXPECT_EQ(auth.api_access("").status, 401u);

    const Authenticator closed{AuthConfig{}};
    EXPECT_FALSE(closed.api_access("Bearer anything").allowed);
    EXPECT_EQ(closed.api_access("Bearer anything").status, 403u);

    AuthConfig insecure;
    insecure.insecure_api = true;
    EXPECT_TRUE(Authenticator(insecure).api_access("").allowed);
}

TEST(FindTokenTest, ReportsBrokenEscapesAndRepeatsAsErrors) {
    EXPECT_EQ(find_token("/ws?token=abc", "", "").token, "abc");
    EXPECT_FALSE(find_token("/ws?token=a%zz", "", "").error.empty());
    EXPECT_FALSE(find_token("/ws?token=a&token=b", "", "").error.empty());
    EXPECT_FALSE(find_token("/ws", "", "shardcast.token.a, shardcast.token.b").error.empty());
    EXPECT_TRUE(find_token("/ws", "Basic dXNlcg==", "").token.empty()) << "not a bearer token";
}

TEST(OffersProtocolTest, MatchesWholeEntriesOnly) {
    EXPECT_TRUE(offers_protocol("chat, shardcast.v1", "shardcast.v1"));
    EXPECT_TRUE(offers_protocol(" shardcast.v1 ", "shardcast.v1"));
    EXPECT_FALSE(offers_protocol("shardcast.v10", "shardcast.v1"));
    EXPECT_FALSE(offers_protocol("", "shardcast.v1"));
}

}  // namespace
}  // namespace shardcast::transport
