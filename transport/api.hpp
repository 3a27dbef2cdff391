// Api: the HTTP publish, lookup, stats and health endpoints, independent of Beast. The
// HttpSession parses the request, calls handle(), and writes what comes back.
//
// Thread contract: handle() may be called from any HTTP thread concurrently. It answers at
// once, or (client lookups, publishes with ?ack=taken) later by calling the given function on
// a shard's thread, or on its own; the caller must then move back to its own executor. The caller
// has checked the API key of the routes that need one (needs_api_key) before reading the body.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcher/dispatcher.hpp"
#include "transport/bus_stats.hpp"
#include "transport/http_stats.hpp"
#include "transport/transport_config.hpp"

namespace shardcast::transport {

struct ApiRequest {
    std::string_view method;
    std::string_view target;  // path and query
    std::string_view body;
};

struct ApiResponse {
    ApiResponse() = default;
    ApiResponse(unsigned s, std::string b, std::string_view type = "application/json")
        : status(s), body(std::move(b)), content_type(type) {}

    unsigned status = 200;
    std::string body;
    std::string_view content_type = "application/json";
    std::string_view allow;             // set with 405
    std::string_view www_authenticate;  // set with 401
    std::string_view retry_after;       // set with 429
    bool websocket_version = false;     // a 426 for a version we do not speak: name ours
};

// The paths of WebSocket upgrades: /ws (the id comes from the token) and /ws/{clientId}.
inline constexpr std::string_view kWsPath = "/ws";
inline constexpr std::string_view kWsPrefix = "/ws/";

// Whether a route publishes or reveals clients, and so needs an API key.
constexpr bool needs_api_key(Route route) {
    switch (route) {
        case Route::send:
        case Route::broadcast:
        case Route::batch:
        case Route::disconnect:
        case Route::client:
        case Route::stats:
            return true;
        default:
            return false;
    }
}

// Which route a path names, for counting; shared with the HttpSession.
Route route_of(std::string_view path);

// {"error":"<message>"} with the message escaped.
std::string json_error(std::string_view message);

class Api {
public:
    using Reply = std::function<void(ApiResponse)>;

    Api(const TransportConfig& config,
        dispatcher::Dispatcher& dispatcher,
        const std::atomic<bool>& accepting,
        HttpStats& stats);

    // Answers the request now, or returns nullopt and calls later(...) once the answer exists.
    std::optional<ApiResponse> handle(const ApiRequest& request, const Reply& later);

    // The body of GET /metrics is supplied by the metrics module when it is enabled.
    void set_metrics(std::function<std::string()> render) { metrics_ = std::move(render); }
    // This node's name, and the bus counters in cluster mode (null: a single node). Set before
    // the server starts.
    void set_node(std::string node, const BusStats* bus) {
        node_ = std::move(node);
        bus_ = bus;
    }

private:
    std::optional<ApiResponse> publish(Route route, const ApiRequest& request, const Reply& later);
    // Each sets reached[i] for every shard i it queued a message to, unless reached is empty.
    ApiResponse send(std::string_view body, std::vector<bool>& reached);
    ApiResponse broadcast(std::string_view body, std::vector<bool>& reached);
    ApiResponse batch(std::string_view body, std::vector<bool>& reached);
    ApiResponse disconnect(std::string_view body);
    std::optional<ApiResponse> client(std::string_view id, const Reply& later);
    ApiResponse stats() const;
    ApiResponse readiness() const;

    const TransportConfig& config_;
    dispatcher::Dispatcher& dispatcher_;
    const std::atomic<bool>& accepting_;
    HttpStats& stats_;
    std::function<std::string()> metrics_;
    std::string node_;
    const BusStats* bus_ = nullptr;
};

}  // namespace shardcast::transport
