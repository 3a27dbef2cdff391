// Configuration of the WebSocket/HTTP front end. Plain values, read-only once running.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "transport/auth_config.hpp"

namespace shardcast::transport {

struct Endpoint {
    std::string host;
    std::uint16_t port = 0;
};

struct TransportConfig {
    std::string host = "0.0.0.0";
    std::uint16_t port = 8080;
    // Threads that accept connections and serve the HTTP API (publishing runs here).
    std::size_t http_threads = 1;
    // Largest request body; larger ones get 413, decided from the headers.
    std::size_t max_body = 4 * 1024 * 1024;
    // An HTTP connection idle this long between requests is closed.
    std::chrono::milliseconds http_idle_timeout{60'000};
    // API keys, connect tokens and origins.
    AuthConfig auth;
    // When set, a second port that serves only GET /metrics and GET /healthz, so the scrape
    // can live on an internal address while the main port faces clients.
    std::optional<Endpoint> metrics_listen;
};

}  // namespace shardcast::transport
