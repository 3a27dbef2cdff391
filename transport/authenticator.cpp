#include "transport/authenticator.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

#include "transport/ascii.hpp"
#include "transport/client_id.hpp"
#include "transport/protocol_v1.hpp"
#include "transport/request_target.hpp"

namespace shardcast::transport {
namespace {

constexpr std::string_view kWsPath = "/ws";
constexpr std::string_view kBearer = "bearer ";

std::string_view trim(std::string_view text) {
    const std::size_t first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
        return {};
    }
    return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

// Calls visit(entry) for each trimmed, non-empty entry of a comma-separated header.
template <class Visit>
void each_entry(std::string_view list, Visit visit) {
    while (!list.empty()) {
        const std::size_t comma = list.find(',');
        const std::string_view entry = trim(list.substr(0, comma));
        list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
        if (!entry.empty()) visit(entry);
    }
}

// RFC 6455 4.1: the key is 16 random bytes in base64, which is 22 characters and "==".
bool valid_key(std::string_view key) {
    if (key.size() != 24 || !key.ends_with("==")) {
        return false;
    }
    return std::all_of(key.begin(), key.end() - 2, [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/';
    });
}

// Constant-time comparison: a key check must not leak how much of a guess was right.
bool same_secret(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    unsigned char diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    }
    return diff == 0;
}

UpgradeRefusal refusal_for(TokenError error) {
    // UpgradeRefusal lists the token refusals first, in TokenError's order.
    return static_cast<UpgradeRefusal>(static_cast<std::size_t>(error));
}
static_assert(static_cast<std::size_t>(UpgradeRefusal::wrong_issuer) + 1 == kTokenErrorCount);

UpgradeDecision refused(unsigned status, UpgradeRefusal reason, std::string message) {
    UpgradeDecision decision;
    decision.refused = {status, reason, std::move(message)};
    return decision;
}

}  // namespace

bool offers_protocol(std::string_view protocols, std::string_view protocol) {
    bool found = false;
    each_entry(protocols, [&](std::string_view entry) { found = found || entry == protocol; });
    return found;
}

FoundToken find_token(std::string_view target,
                      std::string_view authorization,
                      std::string_view protocols) {
    FoundToken found;
    int sources = 0;
    if (const std::size_t n = query_count(target, "token"); n > 0) {
        auto value = query_param(target, "token");
        if (n > 1 || !value) {
            found.error = n > 1 ? "more than one token parameter"
                                : "the token parameter is not "
                                  "a valid URL escape";
            return found;
        }
        found.token = std::move(*value);
        ++sources;
    }
    if (authorization.size() > kBearer.size() &&
        ascii_iequals(authorization.substr(0, kBearer.size()), kBearer)) {
        found.token = std::string(trim(authorization.substr(kBearer.size())));
        ++sources;
    }
    int entries = 0;
    each_entry(protocols, [&](std::string_view entry) {
        if (entry.starts_with(kTokenProtocolPrefix)) {
            found.token = std::string(entry.substr(kTokenProtocolPrefix.size()));
            ++entries;
        }
    });
    sources += entries;
    if (sources > 1) {
        found.token.clear();
        found.error =
            "more than one token (give it once: ?token=, Authorization: Bearer, or a "
            "shardcast.token. subprotocol)";
    }
    return found;
}

Authenticator::Authenticator(AuthConfig config)
    : config_(std::move(config)), verifier_(config_.jwt) {}

// The request must be one Beast would accept, so that once a session is attached for it the
// 101 can only fail if the socket does.
std::optional<UpgradeRefused> Authenticator::check_request(const UpgradeRequestView& r) const {
    if (r.method != "GET") {
        return UpgradeRefused{405, UpgradeRefusal::not_upgrade, "method not allowed; use GET"};
    }
    if (r.version != 11 || !r.connection_upgrade || !r.upgrade_websocket) {
        return UpgradeRefused{426, UpgradeRefusal::not_upgrade, "expected a WebSocket upgrade"};
    }
    if (r.ws_version != "13") {
        return UpgradeRefused{426, UpgradeRefusal::not_upgrade,
                              "unsupported Sec-WebSocket-Version; this server speaks 13"};
    }
    if (r.host.empty()) {
        return UpgradeRefused{400, UpgradeRefusal::not_upgrade, "missing Host header"};
    }
    if (!valid_key(r.key)) {
        return UpgradeRefused{400, UpgradeRefusal::not_upgrade,
                              "missing or malformed Sec-WebSocket-Key"};
    }
    if (r.has_origin && !origin_allowed(r.origin, r.host)) {
        return UpgradeRefused{403, UpgradeRefusal::origin_refused,
                              "origin not allowed (auth.allowed_origins)"};
    }
    return std::nullopt;
}

// The server's own origin (the Host the browser asked for) or one listed. "null", sent by
// sandboxed frames and local files, is neither.
bool Authenticator::origin_allowed(std::string_view origin, std::string_view host) const {
    if (config_.any_origin()) {
        return true;
    }
    for (const std::string& allowed : config_.allowed_origins) {
        if (ascii_iequals(origin, allowed)) {
            return true;
        }
    }
    const std::size_t scheme_end = origin.find("://");
    if (scheme_end == std::string_view::npos) {
        return false;
    }
    const std::string_view scheme = origin.substr(0, scheme_end);
    std::string_view authority = origin.substr(scheme_end + 3);
    if (ascii_iequals(authority, host)) {
        return true;
    }
    // A default port may be written in one and left out of the other.
    const std::string_view port = ascii_iequals(scheme, "https") ? ":443" : ":80";
    return (host.ends_with(port) &&
            ascii_iequals(authority, host.substr(0, host.size() - port.size()))) ||
           (authority.ends_with(port) &&
            ascii_iequals(authority.substr(0, authority.size() - port.size()), host));
}

namespace {

// ?since=<offset>&epoch=<epoch>, both or neither: an epoch is 1-64 characters of
// [A-Za-z0-9._:-], an offset a decimal uint64.
std::optional<std::string> parse_resume(std::string_view target,
                                        std::optional<ResumePoint>& resume) {
    // Present but unreadable (a broken escape) is not absent: it is refused, not ignored.
    if (query_count(target, "since") == 0 && query_count(target, "epoch") == 0) {
        return std::nullopt;
    }
    const auto since = query_param(target, "since");
    const auto epoch = query_param(target, "epoch");
    if (!since || !epoch || query_count(target, "since") > 1 || query_count(target, "epoch") > 1) {
        return "resume needs since and epoch, once each";
    }
    ResumePoint point;
    const auto [end, ec] =
        std::from_chars(since->data(), since->data() + since->size(), point.since);
    if (ec != std::errc{} || end != since->data() + since->size()) {
        return "since must be an offset (a decimal number)";
    }
    if (!v1::valid_epoch(*epoch)) {
        return "epoch must be 1-64 of A-Z a-z 0-9 . _ : -";
    }
    point.epoch = *epoch;
    resume = std::move(point);
    return std::nullopt;
}

}  // namespace

UpgradeDecision Authenticator::admit(const UpgradeRequestView& request,
                                     std::chrono::system_clock::time_point now) const {
    // /ws takes the id from the token; /ws/{id} names it, and the token must agree.
    const std::string_view path = path_of(request.target);
    const bool named = path.size() > kWsPath.size();
    const std::string_view path_id = named ? path.substr(kWsPath.size() + 1) : std::string_view{};
    if (named && !valid_client_id(path_id)) {
        return refused(400, UpgradeRefusal::invalid_client_id,
                       "invalid client id: expected 1-128 of A-Z a-z 0-9 . _ : @ -");
    }
    if (auto refusal = check_request(request)) {
        UpgradeDecision decision;
        decision.refused = std::move(*refusal);
        return decision;
    }
    FoundToken found = find_token(request.target, request.authorization, request.protocols);
    if (!found.error.empty()) {
        return refused(401, UpgradeRefusal::malformed_token, std::move(found.error));
    }
    ClientIdentity identity;
    identity.v1 = offers_protocol(request.protocols, kProtocolV1);
    if (auto problem = parse_resume(request.target, identity.resume)) {
        return refused(400, UpgradeRefusal::bad_resume, std::move(*problem));
    }
    if (identity.resume && !identity.v1) {
        // A plain client never sees an offset, so it has none to resume from.
        return refused(400, UpgradeRefusal::bad_resume,
                       "resume needs the shardcast.v1 subprotocol");
    }
    if (found.token.empty() && config_.anonymous_clients && named) {
        identity.client_id = std::string(path_id);
        identity.anonymous = true;
        return UpgradeDecision{std::move(identity), {}};
    }
    if (found.token.empty()) {
        return refused(
            401, UpgradeRefusal::missing_token,
            config_.anonymous_clients ? "missing client id: connect to /ws/{id}, or bring a token"
            : verifier_.enabled() ? "missing connect token (?token=, Authorization: Bearer, or a "
                                    "shardcast.token. subprotocol)"
                                  : "this server admits no clients: no auth.jwt key is set and "
                                    "auth.anonymous_clients is false");
    }
    TokenVerdict verdict = verifier_.verify(found.token, now);
    if (verdict.error) {
        return refused(401, refusal_for(*verdict.error),
                       "invalid connect token: " + verdict.detail);
    }
    if (named && verdict.claims.sub != path_id) {
        return refused(403, UpgradeRefusal::sub_mismatch,
                       "the token is for another client id than the path names");
    }
    identity.client_id = std::move(verdict.claims.sub);
    identity.exp = verdict.claims.exp;
    identity.info = std::move(verdict.claims.info);
    return UpgradeDecision{std::move(identity), {}};
}

ApiAccess Authenticator::api_access(std::string_view authorization) const {
    if (config_.api_keys.empty()) {
        if (config_.insecure_api) {
            return {true, 200, {}};
        }
        return {false, 403,
                "the API is closed: no auth.api_keys are set (set keys, or auth.insecure_api: "
                "true to open it to anyone)"};
    }
    bool match = false;
    if (authorization.size() > kBearer.size() &&
        ascii_iequals(authorization.substr(0, kBearer.size()), kBearer)) {
        const std::string_view key = authorization.substr(kBearer.size());
        for (const auto& candidate : config_.api_keys) {
            match |= same_secret(key, candidate);
        }
    }
    if (match) {
        return {true, 200, {}};
    }
    return {false, 401, "missing or invalid API key (Authorization: Bearer <key>)"};
}

}  // namespace shardcast::transport
