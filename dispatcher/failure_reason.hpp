// FailureReason: why one message did not reach one session. Every failure is counted.
#pragma once

#include <cstddef>
#include <string_view>

#include "dispatcher/enum_name.hpp"

namespace shardcast::dispatcher {

enum class FailureReason : unsigned char {
    no_session,        // sent to an id with no session on its shard
    overflow_dropped,  // dropped by the drop_oldest overflow policy
    session_closed,    // was queued for a session that was removed
    write_error,       // was being written when the socket failed
    send_timeout,      // was being written when send_time_limit expired
    shutdown,          // still queued when the drain deadline passed
    bus_unavailable,   // meant for another node, but the cluster bus was down or backed up
};

inline constexpr std::size_t kFailureReasonCount = enum_count<FailureReason>;

}  // namespace shardcast::dispatcher
