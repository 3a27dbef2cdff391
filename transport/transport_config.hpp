// Configuration of the WebSocket/HTTP front end. Plain values, read-only once running.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "transport/auth_config.hpp"
#include "transport/limits_config.hpp"

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
    // A request's head must arrive within this (408 otherwise), and its body no slower than
    // min_body_rate bytes a second on top of it: a client trickling bytes holds a
    // connection for seconds, not forever.
    std::chrono::milliseconds header_timeout{10'000};
    std::size_t min_body_rate = 64 * 1024;
    // API keys, connect tokens and origins.
    AuthConfig auth;
    // What any one peer may cost: connections, frame rates, unfinished messages.
    LimitsConfig limits;
    // When set, a second port that serves only GET /metrics and GET /healthz, so the scrape
    // can live on an internal address while the main port faces clients; the main port then
    // serves no /metrics.
    std::optional<Endpoint> metrics_listen;
    // With API keys set, /metrics on the main port needs one too.
    bool metrics_require_key = true;
};

}  // namespace shardcast::transport
