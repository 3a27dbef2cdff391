// Server: the WebSocket + HTTP front end on one port. Owns the HTTP threads, the listener,
// the Api and its counters; delivers upgrades to the dispatcher's shards.
// Thread contract: start(), stop_accepting() and stop() are called from the main thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "dispatcher/dispatcher.hpp"
#include "transport/api.hpp"
#include "transport/connection_limits.hpp"
#include "transport/http_stats.hpp"
#include "transport/request_log.hpp"
#include "transport/transport_config.hpp"

namespace shardcast::transport {

// Descriptors kept free of WebSocket sessions when limits.max_connections is left to the
// server to derive.
inline constexpr std::size_t kDescriptorReserve = 256;

class Server {
public:
    // Throws std::invalid_argument when a JWT key in config.auth cannot be used.
    Server(TransportConfig config, dispatcher::Dispatcher& dispatcher);
    ~Server();

    // Binds the port(s) and starts the HTTP threads. Throws std::system_error naming the
    // address when the port cannot be bound.
    void start();
    // The bound port (useful with port 0).
    std::uint16_t port() const;
    // The bound metrics-only port, when TransportConfig::metrics_listen is set.
    std::optional<std::uint16_t> metrics_port() const;
    // Stops accepting connections and upgrades; /readyz answers 503 from now on.
    void stop_accepting();
    // Stops the HTTP threads. Call after the dispatcher has drained.
    void stop();

    Api& api();
    const HttpStats& stats() const;
    // The WebSocket connection limits in force (max_total() is the effective
    // limits.max_connections) and how many are held.
    const ConnectionLimits& limits() const;
    const RequestLog& request_log() const;
    // Bytes a shard's connections hold for messages their clients have not finished.
    std::int64_t partial_bytes(std::size_t shard) const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;  // shared with the dispatcher: see the constructor
};

}  // namespace shardcast::transport
