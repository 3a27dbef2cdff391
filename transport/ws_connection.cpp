// WsConnection: one client's WebSocket, on its shard's io_context. The dispatcher's Session
// decides what to write and when; this class only performs it with Beast.
// Thread contract: after hand_off, every member runs on the shard thread.
#include "transport/ws_connection.hpp"

#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket.hpp>
#include <memory>

#include "dispatcher/session.hpp"
#include "dispatcher/shard.hpp"
#include "transport/api.hpp"

namespace shardcast::transport {
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using dispatcher::RemovalReason;

namespace {

// A read that ends because the client left is a normal end; one that ends because the
// client broke the protocol (an oversized or malformed frame) is counted apart.
RemovalReason read_end_reason(const beast::error_code& ec) {
    if (ec == websocket::error::message_too_big || ec == websocket::condition::protocol_violation) {
        return RemovalReason::read_error;
    }
    return RemovalReason::peer_closed;
}

class WsConnection final : public dispatcher::Session {
public:
    WsConnection(dispatcher::Shard& shard, std::string client_id, tcp::socket socket)
        : Session(shard, std::move(client_id)), ws_(std::move(socket)) {}

    void run(UpgradeRequest request) {
        if (auto result = shard().attach(shared_from_this());
            result != dispatcher::Shard::Attach::attached) {
            refuse(std::move(request), result);
            return;
        }
        ws_.set_option(websocket::stream_base::decorator(
            [](websocket::response_type& res) { res.set(http::field::server, "shardcast"); }));
        ws_.read_message_max(shard().config().max_message_size);
        ws_.auto_fragment(false);
        ws_.text(true);
        // Pongs (and pings) are proof of life for the heartbeat. Runs inside a read, which
        // holds a reference to this connection.
        ws_.control_callback([this](websocket::frame_type, beast::string_view) { on_heard(); });
        ws_.async_accept(request, [self = self()](beast::error_code ec) { self->on_accept(ec); });
    }

    bool socket_open() const override { return ws_.next_layer().is_open(); }

private:
    std::shared_ptr<WsConnection> self() {
        return std::static_pointer_cast<WsConnection>(shared_from_this());
    }

    // The shard would not take this session (max_per_client reached, or stopping): answer
    // the upgrade with a plain HTTP error instead.
    void refuse(UpgradeRequest request, dispatcher::Shard::Attach result) {
        const bool stopping = result == dispatcher::Shard::Attach::stopping;
        auto res = std::make_shared<http::response<http::string_body>>(
            stopping ? http::status::service_unavailable : http::status::conflict,
            request.version());
        res->set(http::field::server, "shardcast");
        res->set(http::field::content_type, "application/json");
        res->body() = json_error(stopping ? "shutting down"
                                          : "too many sessions for this client id "
                                            "(session.max_per_client)");
        res->keep_alive(false);
        res->prepare_payload();
        auto& stats = shard().stats();
        (stopping ? stats.refused_stopping : stats.refused_too_many).add();
        http::async_write(ws_.next_layer(), *res,
                          [self = self(), res](beast::error_code, std::size_t) { self->abort(); });
    }

    void on_accept(beast::error_code ec) {
        if (ec) {
            on_handshake_failed();
            return;
        }
        on_open();
        do_read();
    }

    void do_read() {
        ws_.async_read(buffer_, [self = self()](beast::error_code ec, std::size_t n) {
            self->on_read(ec, n);
        });
    }

    void on_read(beast::error_code ec, std::size_t bytes) {
        if (ec) {
            on_read_end(read_end_reason(ec));
            return;
        }
        // Client frames are counted; their content goes upstream in cluster mode, else nowhere.
        on_frame(std::string_view(static_cast<const char*>(buffer_.data().data()), bytes));
        buffer_.consume(buffer_.size());
        do_read();
    }

    void start_write(const dispatcher::Payload& payload) override {
        // The handler holds the payload: the session may let go of it first (send timeout).
        ws_.async_write(net::buffer(*payload),
                        [self = self(), payload](beast::error_code ec, std::size_t) {
                            self->on_write_done(!ec);
                        });
    }

    void start_ping() override {
        ws_.async_ping({}, [self = self()](beast::error_code ec) { self->on_ping_done(!ec); });
    }

    void start_close(std::uint16_t code, std::string_view reason) override {
        // Beast queues the close behind a write in flight. Success means our close frame is
        // out; the read loop ends when the client answers, which finishes the close.
        ws_.async_close(websocket::close_reason(static_cast<websocket::close_code>(code),
                                                beast::string_view(reason.data(), reason.size())),
                        [self = self()](beast::error_code ec) {
                            if (ec) {
                                self->abort();
                                self->finish_close();
                            }
                        });
    }

    void abort() override {
        beast::error_code ignored;
        ws_.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
        ws_.next_layer().close(ignored);
    }

    websocket::stream<tcp::socket> ws_;
    beast::flat_buffer buffer_;
};

}  // namespace

void hand_off(dispatcher::Shard& shard,
              std::string client_id,
              tcp::socket socket,
              UpgradeRequest request) {
    // Re-home the descriptor on the shard's io_context: from here on only the shard thread
    // touches this socket.
    beast::error_code ec;
    const auto protocol = socket.local_endpoint(ec).protocol();
    if (ec) {
        return;  // the client is already gone
    }
    const int fd = socket.release(ec);
    if (ec) {
        return;
    }
    tcp::socket moved(shard.io_context());
    moved.assign(protocol, fd, ec);
    if (ec) {
        ::close(fd);
        return;
    }
    auto connection = std::make_shared<WsConnection>(shard, std::move(client_id), std::move(moved));
    net::post(shard.io_context(), [connection, request = std::move(request)]() mutable {
        connection->run(std::move(request));
    });
}

}  // namespace shardcast::transport
