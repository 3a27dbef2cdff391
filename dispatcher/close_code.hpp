// WebSocket close codes the dispatcher sends. Plain constants: usable from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shardcast::dispatcher::close_code {

inline constexpr std::uint16_t kNormal = 1000;
inline constexpr std::uint16_t kGoingAway = 1001;         // server shutdown
inline constexpr std::uint16_t kPolicyViolation = 1008;   // outbound buffer overflow
inline constexpr std::uint16_t kTooBig = 1009;            // client frame over max_message_size
inline constexpr std::uint16_t kReplaced = 4001;          // a newer session took the client id
inline constexpr std::uint16_t kHeartbeatTimeout = 4002;  // nothing heard within heartbeat_timeout
inline constexpr std::uint16_t kSendTimeout = 4003;       // a write outlived send_time_limit
inline constexpr std::uint16_t kTokenExpired = 4004;      // the connect token expired
inline constexpr std::uint16_t kRefreshRefused = 4005;    // a refresh token did not verify

// A close frame carries at most 123 bytes of reason.
inline constexpr std::size_t kMaxReasonBytes = 123;

// Codes a caller may ask a server to send: 1000, or the 3000-4999 range registered for
// applications.
constexpr bool server_may_send(std::uint16_t code) {
    return code == kNormal || (code >= 3000 && code <= 4999);
}

}  // namespace shardcast::dispatcher::close_code
