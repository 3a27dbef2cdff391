// LimitsConfig: the limits.* keys, what any one peer may cost the server. Plain values,
// read-only once running.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "transport/client_address.hpp"

namespace shardcast::transport {

struct LimitsConfig {
    // WebSocket sessions in all (0: the descriptor limit less a reserve for health checks,
    // the metrics port and the cluster bus), and from one client address (0: no limit).
    std::size_t max_connections = 0;
    std::size_t max_connections_per_ip = 1000;
    // Proxies whose X-Forwarded-For / X-Real-IP name the client (nginx in front).
    std::vector<Cidr> trusted_proxies;
    // Per session, token buckets: messages (and pings, which cost the shard a pong each)
    // per second with their bursts, and payload bytes per second. Over any, the session is
    // closed with 1008.
    std::uint32_t client_messages_per_second = 100;
    std::uint32_t client_message_burst = 400;
    std::uint32_t client_pings_per_second = 5;
    std::uint32_t client_ping_burst = 20;
    std::uint32_t client_bytes_per_second = 1024 * 1024;
    std::uint32_t client_byte_burst = 4 * 1024 * 1024;
    // Memory a shard spends on unfinished messages (partial frames and fragments), and how
    // long one may stay unfinished.
    std::size_t partial_message_memory = 32 * 1024 * 1024;
    std::chrono::milliseconds partial_message_timeout{10'000};
};

}  // namespace shardcast::transport
