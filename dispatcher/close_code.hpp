// WebSocket close codes the dispatcher sends. Plain constants: usable from any thread.
#pragma once

#include <cstdint>

namespace shardcast::dispatcher::close_code {

inline constexpr std::uint16_t kNormal = 1000;
inline constexpr std::uint16_t kGoingAway = 1001;         // server shutdown
inline constexpr std::uint16_t kPolicyViolation = 1008;   // outbound buffer overflow
inline constexpr std::uint16_t kTooBig = 1009;            // client frame over max_message_size
inline constexpr std::uint16_t kReplaced = 4001;          // a newer session took the client id
inline constexpr std::uint16_t kHeartbeatTimeout = 4002;  // nothing heard within heartbeat_timeout
inline constexpr std::uint16_t kSendTimeout = 4003;       // a write outlived send_time_limit

}  // namespace shardcast::dispatcher::close_code
