#include "transport/connect_token.hpp"

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdlib>
#include <vector>

#include "transport/client_id.hpp"

namespace shardcast::transport {
namespace json = boost::json;
namespace {

// The type of key an algorithm is verified with. A token is only ever checked against keys
// of the type its alg names, so an HS256 token "signed" with a public key's PEM text as the
// HMAC secret meets no HMAC key but the real secret.
enum class KeyKind : unsigned char { hmac, rsa, ec256, ec384, ec521, none };

KeyKind kind_for(jwt_alg_t alg) {
    switch (alg) {
        case JWT_ALG_HS256:
        case JWT_ALG_HS384:
        case JWT_ALG_HS512:
            return KeyKind::hmac;
        case JWT_ALG_RS256:
        case JWT_ALG_RS384:
        case JWT_ALG_RS512:
            return KeyKind::rsa;
        case JWT_ALG_ES256:
            return KeyKind::ec256;
        case JWT_ALG_ES384:
            return KeyKind::ec384;
        case JWT_ALG_ES512:
            return KeyKind::ec521;
        default:
            return KeyKind::none;  // none, and anything libjwt does not know
    }
}

// Owns what libjwt allocates.
struct Jwt {
    jwt_t* p = nullptr;
    Jwt() = default;
    Jwt(const Jwt&) = delete;
    Jwt& operator=(const Jwt&) = delete;
    ~Jwt() { jwt_free(p); }
};

struct MallocText {
    char* p = nullptr;
    explicit MallocText(char* text) : p(text) {}
    MallocText(const MallocText&) = delete;
    MallocText& operator=(const MallocText&) = delete;
    ~MallocText() { std::free(p); }
};

struct PemKey {
    KeyKind kind;
    std::string pem;
};

// Reads the key's type, so a token of another type never meets it, and refuses what cannot
// be a verification key.
KeyKind classify(const PublicKeyFile& file, std::size_t index) {
    const std::string name =
        "auth.jwt.public_keys[" + std::to_string(index) + "] (" + file.path + ")";
    BIO* bio = BIO_new_mem_buf(file.pem.data(), static_cast<int>(file.pem.size()));
    EVP_PKEY* key = bio != nullptr ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr) : nullptr;
    BIO_free(bio);
    if (key == nullptr) {
        throw std::invalid_argument(name + ": not a PEM public key (-----BEGIN PUBLIC KEY-----)");
    }
    KeyKind kind = KeyKind::none;
    std::string problem;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        kind = KeyKind::rsa;
        if (EVP_PKEY_get_bits(key) < 2048) {
            problem = "an RSA key of " + std::to_string(EVP_PKEY_get_bits(key)) +
                      " bits; at least 2048 are needed";
        }
    } else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
        char group[64] = {};
        std::size_t length = 0;
        EVP_PKEY_get_group_name(key, group, sizeof group, &length);
        const std::string_view curve(group, length);
        kind = curve == "prime256v1"  ? KeyKind::ec256
               : curve == "secp384r1" ? KeyKind::ec384
               : curve == "secp521r1" ? KeyKind::ec521
                                      : KeyKind::none;
        if (kind == KeyKind::none) {
            problem =
                "an EC key on curve " + std::string(curve) + "; expected P-256, P-384 or P-521";
        }
    } else {
        problem = "neither an RSA nor an EC key";
    }
    EVP_PKEY_free(key);
    if (!problem.empty()) {
        throw std::invalid_argument(name + ": " + problem);
    }
    return kind;
}

TokenVerdict refuse(TokenError error, std::string detail) {
    TokenVerdict verdict;
    verdict.error = error;
    verdict.detail = std::move(detail);
    return verdict;
}

// A NumericDate: seconds since the epoch, possibly fractional. Years past 9999 are cut
// there, so the arithmetic on them stays exact.
std::optional<double> numeric_date(const json::object& claims, std::string_view name) {
    const json::value* value = claims.if_contains(name);
    if (value == nullptr || !value->is_number()) {
        return std::nullopt;
    }
    return std::clamp(value->to_number<double>(), -253402300799.0, 253402300799.0);
}

bool audience_contains(const json::value& aud, std::string_view audience) {
    if (const json::string* one = aud.if_string()) {
        return *one == audience;
    }
    if (const json::array* many = aud.if_array()) {
        return std::any_of(many->begin(), many->end(), [&](const json::value& v) {
            return v.is_string() && v.get_string() == audience;
        });
    }
    return false;
}

}  // namespace

struct TokenVerifier::Impl {
    explicit Impl(const JwtConfig& config)
        : hmac(config.hmac_secret),
          audience(config.audience),
          issuer(config.issuer),
          leeway(config.leeway),
          require_exp(config.require_exp) {
        for (std::size_t i = 0; i < config.public_keys.size(); ++i) {
            pems.push_back({classify(config.public_keys[i], i), config.public_keys[i].pem});
        }
    }

    TokenVerdict check_claims(const json::object& claims, double now_s) const;

    std::string hmac;
    std::vector<PemKey> pems;
    std::string audience;
    std::string issuer;
    std::chrono::seconds leeway;
    bool require_exp;
};

TokenVerifier::TokenVerifier(const JwtConfig& config) : impl_(std::make_unique<Impl>(config)) {}

TokenVerifier::~TokenVerifier() = default;

bool TokenVerifier::enabled() const { return !impl_->hmac.empty() || !impl_->pems.empty(); }

std::chrono::seconds TokenVerifier::leeway() const { return impl_->leeway; }

TokenVerdict TokenVerifier::verify(std::string_view token,
                                   std::chrono::system_clock::time_point now) const {
    if (token.empty()) {
        return refuse(TokenError::missing_token, "no token");
    }
    if (token.size() > kMaxTokenBytes) {
        return refuse(TokenError::malformed_token,
                      "token longer than " + std::to_string(kMaxTokenBytes) + " bytes");
    }
    const std::string text(token);  // libjwt reads C strings
    if (text.find('\0') != std::string::npos) {
        return refuse(TokenError::malformed_token, "not a JWT");
    }
    // Parsed unverified first, for the algorithm only: it decides which keys may be tried.
    Jwt unverified;
    if (jwt_decode(&unverified.p, text.c_str(), nullptr, 0) != 0) {
        return refuse(TokenError::malformed_token, "not a JWT");
    }
    const char* alg_name = jwt_get_header(unverified.p, "alg");
    const jwt_alg_t alg = alg_name != nullptr ? jwt_str_alg(alg_name) : JWT_ALG_INVAL;
    const KeyKind kind = kind_for(alg);
    if (kind == KeyKind::none) {
        return refuse(TokenError::algorithm_refused,
                      alg_name == nullptr ? "no alg in the token header"
                                          : "algorithm " + std::string(alg_name) + " is refused");
    }
    std::vector<std::string_view> candidates;
    if (kind == KeyKind::hmac && !impl_->hmac.empty()) {
        candidates.push_back(impl_->hmac);
    }
    for (const PemKey& key : impl_->pems) {
        if (key.kind == kind) candidates.push_back(key.pem);
    }
    if (candidates.empty()) {
        return refuse(TokenError::algorithm_refused,
                      std::string(alg_name) + " tokens are refused: no key of that type is set");
    }
    Jwt verified;
    for (std::string_view key : candidates) {
        Jwt attempt;
        const int rc =
            jwt_decode(&attempt.p, text.c_str(), reinterpret_cast<const unsigned char*>(key.data()),
                       static_cast<int>(key.size()));
        if (rc == 0 && jwt_get_alg(attempt.p) == alg) {
            std::swap(verified.p, attempt.p);
            break;
        }
    }
    if (verified.p == nullptr) {
        return refuse(TokenError::bad_signature, "signature does not verify");
    }
    const MallocText grants(jwt_get_grants_json(verified.p, nullptr));
    boost::system::error_code ec;
    const json::value parsed = json::parse(grants.p != nullptr ? grants.p : "", ec);
    const json::object* claims = parsed.if_object();
    if (ec || claims == nullptr) {
        return refuse(TokenError::malformed_token, "claims are not a JSON object");
    }
    return impl_->check_claims(*claims,
                               std::chrono::duration<double>(now.time_since_epoch()).count());
}

TokenVerdict TokenVerifier::Impl::check_claims(const json::object& claims, double now_s) const {
    const auto slack = static_cast<double>(leeway.count());
    TokenVerdict verdict;
    const json::string* sub = claims.contains("sub") ? claims.at("sub").if_string() : nullptr;
    if (sub == nullptr) {
        return refuse(TokenError::malformed_token, "sub is missing or not a string");
    }
    if (!valid_client_id(*sub)) {
        return refuse(TokenError::malformed_token,
                      "sub is not a valid client id (1-128 of A-Z a-z 0-9 . _ : @ -)");
    }
    verdict.claims.sub.assign(sub->data(), sub->size());
    for (std::string_view name : {"exp", "nbf", "iat"}) {
        if (claims.contains(name) && !numeric_date(claims, name)) {
            return refuse(TokenError::malformed_token, std::string(name) + " is not a number");
        }
    }
    if (const auto exp = numeric_date(claims, "exp")) {
        if (now_s >= *exp + slack) {
            return refuse(TokenError::token_expired, "token expired");
        }
        verdict.claims.exp = static_cast<std::int64_t>(*exp);
    } else if (require_exp) {
        return refuse(TokenError::malformed_token, "exp is required");
    }
    if (const auto nbf = numeric_date(claims, "nbf"); nbf && now_s + slack < *nbf) {
        return refuse(TokenError::token_not_yet_valid, "token not valid yet (nbf)");
    }
    if (const auto iat = numeric_date(claims, "iat"); iat && now_s + slack < *iat) {
        return refuse(TokenError::token_not_yet_valid, "token issued in the future (iat)");
    }
    if (const json::value* aud = claims.if_contains("aud")) {
        if (audience.empty()) {
            return refuse(TokenError::wrong_audience,
                          "token has an audience and auth.jwt.audience is not set");
        }
        if (!audience_contains(*aud, audience)) {
            return refuse(TokenError::wrong_audience, "aud does not name this service");
        }
    } else if (!audience.empty()) {
        return refuse(TokenError::wrong_audience, "aud is missing");
    }
    if (!issuer.empty()) {
        const json::value* iss = claims.if_contains("iss");
        if (iss == nullptr || !iss->is_string() || iss->get_string() != issuer) {
            return refuse(TokenError::wrong_issuer, "iss is not the configured issuer");
        }
    }
    if (const json::value* info = claims.if_contains("info")) {
        if (!info->is_object()) {
            return refuse(TokenError::malformed_token, "info must be a JSON object");
        }
        verdict.claims.info = json::serialize(*info);
        if (verdict.claims.info.size() > kMaxInfoBytes) {
            return refuse(TokenError::malformed_token,
                          "info is over " + std::to_string(kMaxInfoBytes) + " bytes");
        }
    }
    return verdict;
}

std::string mint_token(const JwtConfig& config,
                       std::string_view sub,
                       std::chrono::seconds ttl,
                       std::chrono::system_clock::time_point now,
                       std::string_view info) {
    if (config.hmac_secret.empty()) {
        throw std::invalid_argument(
            "auth.jwt.hmac_secret is not set: tokens are minted with the HMAC secret");
    }
    if (!valid_client_id(sub)) {
        throw std::invalid_argument(
            "--sub: not a valid client id (1-128 of A-Z a-z 0-9 . _ : @ -)");
    }
    json::object claims;
    const auto iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch());
    claims["sub"] = sub;
    claims["iat"] = iat.count();
    claims["exp"] = (iat + ttl).count();
    if (!config.audience.empty()) claims["aud"] = config.audience;
    if (!config.issuer.empty()) claims["iss"] = config.issuer;
    if (!info.empty()) {
        boost::system::error_code ec;
        json::value parsed = json::parse(info, ec);
        if (ec || !parsed.is_object()) {
            throw std::invalid_argument("--info: expected a JSON object");
        }
        claims["info"] = std::move(parsed);
    }
    Jwt jwt;
    const std::string grants = json::serialize(claims);
    const auto* key = reinterpret_cast<const unsigned char*>(config.hmac_secret.data());
    if (jwt_new(&jwt.p) != 0 || jwt_add_grants_json(jwt.p, grants.c_str()) != 0 ||
        jwt_set_alg(jwt.p, JWT_ALG_HS256, key, static_cast<int>(config.hmac_secret.size())) != 0) {
        throw std::runtime_error("cannot build the token");
    }
    const MallocText token(jwt_encode_str(jwt.p));
    if (token.p == nullptr) {
        throw std::runtime_error("cannot sign the token");
    }
    return token.p;
}

}  // namespace shardcast::transport
