#include "transport/server.hpp"

#include <sys/resource.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <thread>
#include <vector>

#include "transport/listener.hpp"

namespace shardcast::transport {
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// With limits.max_connections at 0: the descriptor limit, less a reserve for what must keep
// working when every session is taken (health checks, the metrics port, the publish API,
// the cluster bus).
std::size_t max_connections_for(std::size_t configured) {
    if (configured != 0) {
        return configured;
    }
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
        return 0;
    }
    const auto descriptors = static_cast<std::size_t>(limit.rlim_cur);
    return descriptors > 2 * kDescriptorReserve ? descriptors - kDescriptorReserve
                                                : descriptors / 2;
}

}  // namespace

struct Server::Impl {
    Impl(TransportConfig c, dispatcher::Dispatcher& d)
        : config(std::move(c)),
          dispatcher(d),
          auth(config.auth),
          api(config, dispatcher, accepting, stats),
          limits(max_connections_for(config.limits.max_connections),
                 config.limits.max_connections_per_ip),
          partial_budgets(dispatcher.shard_count()),
          session{stats, auth.verifier(), config.limits, partial_budgets},
          context{config, dispatcher, api, auth, stats, log, limits, session, accepting},
          metrics_context{config, dispatcher, api,     auth,      stats,
                          log,    limits,     session, accepting, true} {}

    TransportConfig config;
    dispatcher::Dispatcher& dispatcher;
    std::atomic<bool> accepting{false};
    HttpStats stats;
    const Authenticator auth;
    Api api;
    RequestLog log;
    ConnectionLimits limits;
    std::vector<PartialBudget> partial_budgets;
    SessionContext session;
    HttpContext context;
    HttpContext metrics_context;
    // After the members sessions point to, so sessions die before them.
    net::io_context io_context;
    std::shared_ptr<Listener> listener;
    std::shared_ptr<Listener> metrics_listener;
    std::vector<std::thread> threads;
};

// The Impl outlives this Server when the dispatcher does: the WebSocket connections point into
// it (their limits, budgets, stats), and a stopped shard's io_context may still hold an
// operation that owns a connection until the dispatcher destroys it.
Server::Server(TransportConfig config, dispatcher::Dispatcher& dispatcher)
    : impl_(std::make_shared<Impl>(std::move(config), dispatcher)) {
    dispatcher.keep_until_destroyed(impl_);
}

Server::~Server() { stop(); }

namespace {

tcp::endpoint resolve(net::io_context& io_context, const Endpoint& where, const char* key) {
    tcp::resolver resolver(io_context);
    boost::system::error_code ec;
    auto results = resolver.resolve(where.host, std::to_string(where.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
        throw std::system_error(ec,
                                std::string(key) + ": cannot resolve host \"" + where.host + "\"");
    }
    return results.begin()->endpoint();
}

}  // namespace

void Server::start() {
    const Endpoint main{impl_->config.host, impl_->config.port};
    impl_->listener = std::make_shared<Listener>(
        impl_->io_context, resolve(impl_->io_context, main, "listen"), impl_->context);
    if (impl_->config.metrics_listen) {
        impl_->metrics_listener = std::make_shared<Listener>(
            impl_->io_context,
            resolve(impl_->io_context, *impl_->config.metrics_listen, "metrics.listen"),
            impl_->metrics_context);
        impl_->metrics_listener->run();
    }
    impl_->listener->run();
    impl_->accepting.store(true, std::memory_order_release);
    for (std::size_t i = 0; i < impl_->config.http_threads; ++i) {
        impl_->threads.emplace_back([this] { impl_->io_context.run(); });
    }
}

std::uint16_t Server::port() const { return impl_->listener->local_endpoint().port(); }

std::optional<std::uint16_t> Server::metrics_port() const {
    if (!impl_->metrics_listener) return std::nullopt;
    return impl_->metrics_listener->local_endpoint().port();
}

void Server::stop_accepting() {
    impl_->accepting.store(false, std::memory_order_release);
    // The metrics port stays open: a drain is exactly when the scrape matters.
    if (impl_->listener) {
        impl_->listener->close();
    }
}

void Server::stop() {
    stop_accepting();
    impl_->io_context.stop();
    for (auto& thread : impl_->threads) {
        thread.join();
    }
    impl_->threads.clear();
}

Api& Server::api() { return impl_->api; }
const ConnectionLimits& Server::limits() const { return impl_->limits; }
const RequestLog& Server::request_log() const { return impl_->log; }
std::int64_t Server::partial_bytes(std::size_t shard) const {
    return impl_->partial_budgets[shard].bytes.load(std::memory_order_relaxed);
}
const HttpStats& Server::stats() const { return impl_->stats; }

}  // namespace shardcast::transport
