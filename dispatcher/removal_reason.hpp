// RemovalReason: why a session left its shard. Every removal is counted under one.
#pragma once

#include <cstddef>
#include <string_view>

namespace shardcast::dispatcher {

enum class RemovalReason : unsigned char {
    peer_closed,        // the client closed, or its socket ended
    write_error,        // a socket write failed
    read_error,         // the client broke the protocol (bad or oversized frame)
    heartbeat_timeout,  // nothing heard for session.heartbeat_timeout
    overflow,           // outbound buffer over session.buffer_limit with policy terminate
    send_timeout,       // one write in flight longer than session.send_time_limit
    replaced,           // a newer session claimed the same client id
    disconnected,       // Dispatcher::disconnect was called for the id
    server_shutdown,    // the dispatcher is stopping
    handshake_failed,   // the WebSocket upgrade never completed
    token_expired,      // the connect token's exp (plus leeway) passed without a refresh
    refresh_refused,    // the client sent a refresh token that does not verify for its id
};

inline constexpr std::size_t kRemovalReasonCount = 12;

constexpr std::string_view to_string(RemovalReason reason) {
    switch (reason) {
        case RemovalReason::peer_closed:
            return "peer_closed";
        case RemovalReason::write_error:
            return "write_error";
        case RemovalReason::read_error:
            return "read_error";
        case RemovalReason::heartbeat_timeout:
            return "heartbeat_timeout";
        case RemovalReason::overflow:
            return "overflow";
        case RemovalReason::send_timeout:
            return "send_timeout";
        case RemovalReason::replaced:
            return "replaced";
        case RemovalReason::disconnected:
            return "disconnected";
        case RemovalReason::server_shutdown:
            return "server_shutdown";
        case RemovalReason::handshake_failed:
            return "handshake_failed";
        case RemovalReason::token_expired:
            return "token_expired";
        case RemovalReason::refresh_refused:
            return "refresh_refused";
    }
    return "unknown";
}

}  // namespace shardcast::dispatcher
