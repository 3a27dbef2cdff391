#include "transport/server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <thread>
#include <vector>

#include "transport/listener.hpp"

namespace shardcast::transport {
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct Server::Impl {
    Impl(TransportConfig c, dispatcher::Dispatcher& d)
        : config(std::move(c)),
          dispatcher(d),
          auth(config.auth),
          api(config, dispatcher, accepting, stats),
          context{config, dispatcher, api, auth, stats, accepting},
          metrics_context{config, dispatcher, api, auth, stats, accepting, true} {}

    TransportConfig config;
    dispatcher::Dispatcher& dispatcher;
    std::atomic<bool> accepting{false};
    HttpStats stats;
    const Authenticator auth;
    Api api;
    HttpContext context;
    HttpContext metrics_context;
    // After the members sessions point to, so sessions die before them.
    net::io_context io_context;
    std::shared_ptr<Listener> listener;
    std::shared_ptr<Listener> metrics_listener;
    std::vector<std::thread> threads;
};

Server::Server(TransportConfig config, dispatcher::Dispatcher& dispatcher)
    : impl_(std::make_unique<Impl>(std::move(config), dispatcher)) {}

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
const HttpStats& Server::stats() const { return impl_->stats; }

}  // namespace shardcast::transport
