// One HTTP/1.1 connection: reads requests, answers the API, or hands an upgrade to a shard.
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>

#include "dispatcher/dispatcher.hpp"
#include "transport/api.hpp"
#include "transport/authenticator.hpp"
#include "transport/connection_limits.hpp"
#include "transport/http_stats.hpp"
#include "transport/request_log.hpp"
#include "transport/transport_config.hpp"
#include "transport/ws_connection.hpp"

namespace shardcast::transport {

// What every HTTP session shares; owned by the Server and outliving every session.
struct HttpContext {
    const TransportConfig& config;
    dispatcher::Dispatcher& dispatcher;
    Api& api;
    const Authenticator& auth;
    HttpStats& stats;
    RequestLog& log;
    ConnectionLimits& limits;
    SessionContext& session;
    const std::atomic<bool>& accepting;
    // The separate metrics port: everything but /metrics and /healthz is 404 there.
    bool metrics_only = false;
};

// Starts serving an accepted socket. Runs on the socket's executor (an HTTP thread's strand).
void start_http_session(boost::asio::ip::tcp::socket socket, HttpContext& context);

}  // namespace shardcast::transport
