// Listener: accepts TCP connections and starts an HttpSession on a strand for each.
// Thread contract: constructed and started on the main thread; close() from any thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
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

    boost::asio::io_context& io_context_;
    boost::asio::ip::tcp::acceptor acceptor_;
    HttpContext& context_;
};

}  // namespace shardcast::transport
