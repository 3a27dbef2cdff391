// RemovalReason: why a session left its shard. Every removal is counted under one.
#pragma once

#include <cstddef>
#include <string_view>

#include "dispatcher/enum_name.hpp"

namespace shardcast::dispatcher {

enum class RemovalReason : unsigned char {
    peer_closed,            // the client closed, or its socket ended
    write_error,            // a socket write failed
    read_error,             // the client broke the protocol, or reading failed (not a plain end)
    heartbeat_timeout,      // nothing heard for session.heartbeat_timeout
    overflow,               // outbound buffer over session.buffer_limit with policy terminate
    send_timeout,           // one write in flight longer than session.send_time_limit
    replaced,               // a newer session claimed the same client id
    disconnected,           // Dispatcher::disconnect was called for the id
    server_shutdown,        // the dispatcher is stopping
    handshake_failed,       // the WebSocket upgrade never completed
    token_expired,          // the connect token's exp (plus leeway) passed without a refresh
    refresh_refused,        // the client sent a refresh token that does not verify for its id
    rate_limited,           // the client sent more messages, pings or bytes than its limits allow
    partial_message_limit,  // the shard's memory for unfinished messages ran out on it
    message_timeout,        // the client left a message (or frame) unfinished for too long
    slow_reader,            // cut so the shard's outbound bytes fit: the most behind go first
};

inline constexpr std::size_t kRemovalReasonCount = enum_count<RemovalReason>;

}  // namespace shardcast::dispatcher
