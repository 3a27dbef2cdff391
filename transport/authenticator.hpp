// Authenticator: who may publish and who may connect. It decides an upgrade request whole,
// on the HTTP thread, before anything is attached: the request must be a valid WebSocket
// upgrade, from an allowed origin, with a token that verifies for the id it asks for. Only
// then is the socket handed to a shard. It also decides the API calls from their
// Authorization header alone, before any of the body is read.
//
// Thread contract: immutable once built; every member may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "transport/auth_config.hpp"
#include "transport/connect_token.hpp"
#include "transport/http_stats.hpp"

namespace shardcast::transport {

// The subprotocol whose clients receive {"data":...} frames and may refresh their token.
inline constexpr std::string_view kProtocolV1 = "shardcast.v1";
// A Sec-WebSocket-Protocol entry that carries the connect token: shardcast.token.<JWT>.
// The server never selects it, so it never comes back in the response.
inline constexpr std::string_view kTokenProtocolPrefix = "shardcast.token.";

// The parts of an upgrade request that decide it, as the HttpSession read them. Empty views
// are absent headers.
struct UpgradeRequestView {
    std::string_view method;
    unsigned version = 11;  // HTTP/1.1
    std::string_view target;
    std::string_view host;
    bool connection_upgrade = false;  // Connection lists "upgrade"
    bool upgrade_websocket = false;   // Upgrade lists "websocket"
    std::string_view key;             // Sec-WebSocket-Key
    std::string_view ws_version;      // Sec-WebSocket-Version
    bool has_origin = false;
    std::string_view origin;
    std::string_view authorization;
    std::string_view protocols;  // every Sec-WebSocket-Protocol field, joined with ", "
};

// Where a reconnecting client left off: ?since=<offset>&epoch=<epoch> (docs/protocol.md).
struct ResumePoint {
    std::uint64_t since = 0;
    std::string epoch;
};

// An upgrade admitted: who the client is and what it negotiated.
struct ClientIdentity {
    std::string client_id;
    std::optional<std::int64_t> exp;    // the token's exp (Unix seconds); none: never expires
    std::string info;                   // the token's info claim as JSON, or ""
    bool v1 = false;                    // shardcast.v1 was offered and is selected
    bool anonymous = false;             // no token: the id came from the URL
    std::optional<ResumePoint> resume;  // asked to resume
};

// An upgrade refused: the status, the reason it is counted under and the error to send.
struct UpgradeRefused {
    unsigned status = 400;
    UpgradeRefusal reason = UpgradeRefusal::not_upgrade;
    std::string message;
};

struct UpgradeDecision {
    std::optional<ClientIdentity> identity;  // set when admitted
    UpgradeRefused refused;                  // meaningful when not
};

// An API call's verdict from its Authorization header.
struct ApiAccess {
    bool allowed = false;
    unsigned status = 401;  // when refused: 401 (no or wrong key) or 403 (the API is closed)
    std::string message;
};

class Authenticator {
public:
    // Loads the JWT keys; throws std::invalid_argument naming the key that is wrong.
    explicit Authenticator(AuthConfig config);

    UpgradeDecision admit(const UpgradeRequestView& request,
                          std::chrono::system_clock::time_point now) const;
    ApiAccess api_access(std::string_view authorization) const;

    const AuthConfig& config() const { return config_; }
    const TokenVerifier& verifier() const { return verifier_; }

private:
    std::optional<UpgradeRefused> check_request(const UpgradeRequestView& request) const;
    bool origin_allowed(std::string_view origin, std::string_view host) const;

    AuthConfig config_;
    TokenVerifier verifier_;
};

// The token a request carries and where it was found: the query (?token=), an
// Authorization: Bearer header, or a shardcast.token.<JWT> subprotocol entry. More than one
// is an error (its message), as is a query escape that does not decode.
struct FoundToken {
    std::string token;  // empty: none
    std::string error;  // non-empty: the request is malformed
};
FoundToken find_token(std::string_view target,
                      std::string_view authorization,
                      std::string_view protocols);

// Whether the comma-separated Sec-WebSocket-Protocol list offers the protocol.
bool offers_protocol(std::string_view protocols, std::string_view protocol);

}  // namespace shardcast::transport
