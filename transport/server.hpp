// Server: the WebSocket + HTTP front end on one port. Owns the HTTP threads, the listener,
// the Api and its counters; delivers upgrades to the dispatcher's shards.
// Thread contract: start(), stop_accepting() and stop() are called from the main thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "dispatcher/dispatcher.hpp"
#include "transport/api.hpp"
#include "transport/http_stats.hpp"
#include "transport/transport_config.hpp"

namespace shardcast::transport {

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

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace shardcast::transport
