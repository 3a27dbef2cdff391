#include "transport/listener.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <string>
#include <system_error>

namespace shardcast::transport {
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

void throw_on(const boost::system::error_code& ec,
              const char* what,
              const tcp::endpoint& endpoint) {
    if (ec) {
        throw std::system_error(ec, std::string("listen on ") + endpoint.address().to_string() +
                                        ":" + std::to_string(endpoint.port()) + ": " + what);
    }
}

}  // namespace

Listener::Listener(net::io_context& io_context, const tcp::endpoint& endpoint, HttpContext& context)
    : io_context_(io_context),
      acceptor_(net::make_strand(io_context)),
      retry_(acceptor_.get_executor()),
      context_(context) {
    boost::system::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    throw_on(ec, "open", endpoint);
    acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    throw_on(ec, "set_option", endpoint);
    acceptor_.bind(endpoint, ec);
    throw_on(ec, "bind", endpoint);
    acceptor_.listen(net::socket_base::max_listen_connections, ec);
    throw_on(ec, "listen", endpoint);
}

void Listener::run() { do_accept(); }

void Listener::close() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
        boost::system::error_code ignored;
        self->acceptor_.close(ignored);
        self->retry_.cancel();
    });
}

void Listener::do_accept() {
    // Each connection gets its own strand, so HTTP threads > 1 never run one session twice.
    acceptor_.async_accept(
        net::make_strand(io_context_),
        [self = shared_from_this()](boost::system::error_code ec, tcp::socket s) {
            self->on_accept(ec, std::move(s));
        });
}

void Listener::on_accept(boost::system::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) {
        return;  // closed by close()
    }
    // A client that gave up while still in the backlog: its trouble, not ours.
    if (ec == net::error::connection_aborted) {
        return do_accept();
    }
    if (ec) {
        return pause_after(ec);
    }
    if (failures_ > 0) {
        spdlog::info("accept: accepting again after {} failed attempts", failures_);
        failures_ = 0;
    }
    // Pushes are small and latency matters: do not let Nagle hold them back.
    socket.set_option(tcp::no_delay(true), ec);
    start_http_session(std::move(socket), context_);
    do_accept();
}

void Listener::pause_after(const boost::system::error_code& ec) {
    constexpr std::chrono::milliseconds kFirstPause{5};
    constexpr std::chrono::milliseconds kLongestPause{1000};
    context_.stats.record_accept_error();
    // Said once per episode, not once per attempt: the metric counts every one.
    if (failures_++ == 0) {
        spdlog::warn("accept: {}; retrying from {} ms to {} ms apart until it succeeds",
                     ec.message(), kFirstPause.count(), kLongestPause.count());
    }
    // 5, 10, 20 ... ms: the ninth pause would pass the longest, so the exponent stops there.
    const auto doublings = std::min<std::uint64_t>(failures_ - 1, 8);
    retry_.expires_after(std::min(kFirstPause * (1 << doublings), kLongestPause));
    retry_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
        if (wait_ec || !self->acceptor_.is_open()) return;
        self->do_accept();
    });
}

}  // namespace shardcast::transport
