// Listener: accepts TCP connections and starts an HttpSession on a strand for each. When an
// accept fails for want of a resource (file descriptors, most often), it pauses before the
// next one, from 5 ms doubling to 1 s, until one succeeds: the failed connection stays in the
// backlog, so retrying at once would fail again at once, a busy loop. A connection aborted
// by its client before it was accepted is only skipped.
// Thread contract: constructed and started on the main thread; close() from any thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <memory>

#include "transport/http_session.hpp"

namespace shardcast::transport {

class Listener : public std::enable_shared_from_this<Listener> {
public:
    // Binds and listens; throws std::system_error naming the endpoint when it cannot.
    Listener(boost::asio::io_context& io_context,
             const boost::asio::ip::tcp::endpoint& endpoint,
             HttpContext& context);

    void run();
    // Stops accepting; connections already accepted carry on.
    void close();
    boost::asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

private:
    void do_accept();
    void on_accept(boost::system::error_code ec, boost::asio::ip::tcp::socket socket);
    void pause_after(const boost::system::error_code& ec);

    boost::asio::io_context& io_context_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer retry_;  // on the acceptor's strand
    HttpContext& context_;
    // Failed accepts since the last one that succeeded; the pause before a retry follows.
    std::uint64_t failures_ = 0;
};

}  // namespace shardcast::transport
