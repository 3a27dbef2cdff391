// WebSocket close codes the dispatcher sends. Plain constants: usable from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dispatcher/removal_reason.hpp"

namespace shardcast::dispatcher::close_code {

inline constexpr std::uint16_t kNormal = 1000;
inline constexpr std::uint16_t kGoingAway = 1001;         // server shutdown
inline constexpr std::uint16_t kPolicyViolation = 1008;   // overflow, or a client over a limit
inline constexpr std::uint16_t kTooBig = 1009;            // client frame over max_message_size
inline constexpr std::uint16_t kReplaced = 4001;          // a newer session took the client id
inline constexpr std::uint16_t kHeartbeatTimeout = 4002;  // nothing heard within heartbeat_timeout
inline constexpr std::uint16_t kSendTimeout = 4003;       // a write outlived send_time_limit
inline constexpr std::uint16_t kTokenExpired = 4004;      // the connect token expired
inline constexpr std::uint16_t kRefreshRefused = 4005;    // a refresh token did not verify

// A close frame carries at most 123 bytes of reason.
inline constexpr std::size_t kMaxReasonBytes = 123;

// The code a session removed for this reason is closed with, when it is told at all.
constexpr std::uint16_t for_removal(RemovalReason reason) {
    switch (reason) {
        case RemovalReason::replaced:
            return kReplaced;
        case RemovalReason::overflow:
        case RemovalReason::rate_limited:
        case RemovalReason::partial_message_limit:
        case RemovalReason::message_timeout:
            return kPolicyViolation;
        case RemovalReason::heartbeat_timeout:
            return kHeartbeatTimeout;
        case RemovalReason::send_timeout:
            return kSendTimeout;
        case RemovalReason::server_shutdown:
            return kGoingAway;
        case RemovalReason::token_expired:
            return kTokenExpired;
        case RemovalReason::refresh_refused:
            return kRefreshRefused;
        default:
            return kNormal;
    }
}

// Codes a caller may ask a server to send: 1000, or the 3000-4999 range registered for
// applications.
constexpr bool server_may_send(std::uint16_t code) {
    return code == kNormal || (code >= 3000 && code <= 4999);
}

}  // namespace shardcast::dispatcher::close_code
