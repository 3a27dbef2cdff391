// The test clients of clients.hpp. The only file of the test support library that includes
// Beast, so that the tests themselves compile quickly. StalledClient and raw_exchange use
// plain POSIX sockets: they must do exactly what they are told on the wire and nothing more.
#include "tests/support/clients.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <stdexcept>

namespace shardcast::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Bounds the connect and the upgrade, so a server that never answers fails the test instead
// of hanging it. The open connection itself has no timeout: tests decide how long to wait.
constexpr std::chrono::seconds kHandshakeTimeout{10};

tcp::endpoint loopback(std::uint16_t port) { return {asio::ip::address_v4::loopback(), port}; }

std::string host_header(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

}  // namespace

namespace detail {

// The io_context the ClientLoop thread runs. Every connection shares ownership of it, so no
// socket can outlive it even when a test drops a client after the loop is gone.
struct LoopCore {
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};

    // Guards stopped and connections. Posting happens under it too, so that nothing is
    // posted once the loop is stopping: such a handler would never run, and the connection it
    // holds, holding this core, would keep the io_context that holds the handler alive.
    std::mutex mutex;
    bool stopped = false;
    std::vector<std::weak_ptr<WsConnection>> connections;
    std::size_t prune_at = 64;

    template <class Handler>
    void post(Handler&& handler) {
        std::lock_guard lock(mutex);
        if (!stopped) {
            asio::post(io, std::forward<Handler>(handler));
        }
    }
};

// One WebSocket client socket. The socket, the write queue and the close request belong to the
// loop thread; what tests read is kept in Record under mutex.
class WsConnection : public std::enable_shared_from_this<WsConnection> {
public:
    using Callback = std::function<void(const std::string&)>;

    struct Record {
        bool opened = false;
        bool open = false;
        int refused_status = 0;
        std::string refused_body;
        std::string error;
        std::string protocol;  // selected by the server's 101
        std::vector<std::string> messages;
        std::size_t binary_count = 0;
        std::size_t ping_count = 0;
        std::optional<CloseInfo> close_info;
        // Shared so the loop thread can take it under the lock and call it outside.
        std::shared_ptr<const Callback> on_message;
    };

    WsConnection(std::shared_ptr<LoopCore> core,
                 std::uint16_t port,
                 std::string target,
                 HeaderList headers)
        : core_(std::move(core)),
          ws_(core_->io.get_executor()),
          port_(port),
          target_(std::move(target)),
          headers_(std::move(headers)) {}

    LoopCore& core() { return *core_; }

    // Any thread. Waits until pred(record) holds or the timeout passes; returns pred's value.
    template <class Pred>
    bool wait(std::chrono::milliseconds timeout, Pred pred) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return pred(record_); });
    }

    template <class Reader>
    auto read(Reader reader) {
        std::lock_guard lock(mutex_);
        return reader(record_);
    }

    void set_on_message(Callback callback) {
        auto shared = std::make_shared<const Callback>(std::move(callback));
        std::lock_guard lock(mutex_);
        record_.on_message = std::move(shared);
    }

    void start() {
        core_->post([self = shared_from_this()] { self->do_connect(); });
    }

    void send(std::string data, bool binary) {
        core_->post([self = shared_from_this(), data = std::move(data), binary]() mutable {
            self->enqueue(std::move(data), binary);
        });
    }

    void close(std::uint16_t code) {
        core_->post([self = shared_from_this(), code] { self->request_close(code); });
    }

    void abort() {
        core_->post([self = shared_from_this()] { self->abort_now(); });
    }

    // Loop thread. Cancels every pending operation; their handlers then end the connection.
    void abort_now() { beast::get_lowest_layer(ws_).close(); }

private:
    enum class State { kConnecting, kOpen, kClosing, kEnded };
    struct Outgoing {
        std::string data;
        bool binary = false;
    };

    void do_connect() {
        auto& stream = beast::get_lowest_layer(ws_);
        stream.expires_after(kHandshakeTimeout);
        stream.async_connect(loopback(port_), beast::bind_front_handler(&WsConnection::on_connect,
                                                                        shared_from_this()));
    }

    void on_connect(beast::error_code ec) {
        if (ec) {
            return end(ec, "connect");
        }
        beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true), ec);
        if (!headers_.empty()) {
            ws_.set_option(websocket::stream_base::decorator(
                [headers = std::move(headers_)](websocket::request_type& request) {
                    for (const auto& [name, value] : headers) {
                        request.set(name, value);
                    }
                }));
        }
        // Stored in ws_, which this owns: the callback cannot outlive this.
        ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
            if (kind == websocket::frame_type::ping) {
                std::lock_guard lock(mutex_);
                ++record_.ping_count;
            }
        });
        response_ = std::make_unique<websocket::response_type>();
        ws_.async_handshake(
            *response_, host_header(port_), target_,
            beast::bind_front_handler(&WsConnection::on_handshake, shared_from_this()));
    }

    void on_handshake(beast::error_code ec) {
        beast::get_lowest_layer(ws_).expires_never();
        const auto response = std::move(response_);
        if (ec) {
            if (ec == websocket::error::upgrade_declined) {
                std::lock_guard lock(mutex_);
                record_.refused_status = response->result_int();
                record_.refused_body = response->body();
            }
            return end(ec, "upgrade");
        }
        state_ = State::kOpen;
        {
            std::lock_guard lock(mutex_);
            record_.opened = true;
            record_.open = true;
            record_.protocol = std::string((*response)[http::field::sec_websocket_protocol]);
        }
        changed_.notify_all();
        do_read();
        if (!outbox_.empty()) {
            do_write();
        } else if (close_code_) {
            do_close();
        }
    }

    void do_read() {
        ws_.async_read(buffer_,
                       beast::bind_front_handler(&WsConnection::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec) {
            // Once our close frame is out, Beast aborts the read and the close takes over.
            if (state_ == State::kClosing && ec == asio::error::operation_aborted) {
                return;
            }
            return end(ec, "read");
        }
        auto message = beast::buffers_to_string(buffer_.data());
        buffer_.clear();
        const bool binary = ws_.got_binary();
        std::shared_ptr<const Callback> callback;
        {
            std::lock_guard lock(mutex_);
            callback = record_.on_message;
        }
        if (callback) {
            (*callback)(message);
        }
        {
            std::lock_guard lock(mutex_);
            record_.messages.push_back(std::move(message));
            record_.binary_count += binary ? 1 : 0;
        }
        changed_.notify_all();
        // Once our close frame is out, the close reads (and discards) until the server's close
        // frame. A new read would race it: Beast 1.81 can deadlock a read started while
        // closing when the server's close frame is already buffered.
        if (state_ == State::kOpen) {
            do_read();
        }
    }

    void enqueue(std::string data, bool binary) {
        if (state_ == State::kEnded || close_code_) {
            return;
        }
        outbox_.push_back({std::move(data), binary});
        if (state_ == State::kOpen && !writing_) {
            do_write();
        }
    }

    void do_write() {
        writing_ = true;
        ws_.binary(outbox_.front().binary);
        ws_.async_write(asio::buffer(outbox_.front().data),
                        beast::bind_front_handler(&WsConnection::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, std::size_t) {
        writing_ = false;
        outbox_.pop_front();
        if (ec) {
            // The read loop sees the same failure and ends the connection.
            outbox_.clear();
            return record_error(ec, "write");
        }
        if (state_ == State::kEnded) {
            outbox_.clear();
        } else if (!outbox_.empty()) {
            do_write();
        } else if (close_code_) {
            do_close();
        }
    }

    void request_close(std::uint16_t code) {
        if (state_ == State::kEnded || close_code_) {
            return;
        }
        close_code_ = code;
        if (state_ == State::kOpen && !writing_) {
            do_close();
        }
    }

    void do_close() {
        state_ = State::kClosing;
        // Bounds the close handshake as the upgrade is bounded. Only operations started from
        // here on see it, so the pending read stays unbounded.
        beast::get_lowest_layer(ws_).expires_after(kHandshakeTimeout);
        ws_.async_close(websocket::close_reason(*close_code_),
                        beast::bind_front_handler(&WsConnection::on_close, shared_from_this()));
    }

    void on_close(beast::error_code ec) { end(ec, "close"); }

    // The connection is over: records how, once. ws_.reason() holds the server's close frame
    // whenever one arrived, even when the teardown after it failed: a server that closes with
    // our unread frames in its buffer resets the connection, and Beast's close reply or our
    // own write then fails.
    void end(beast::error_code ec, const char* what) {
        if (state_ == State::kEnded) {
            return;
        }
        // The outbox stays: a write in flight still uses its front, and on_write drops the rest.
        state_ = State::kEnded;
        CloseInfo info;
        info.code = static_cast<std::uint16_t>(ws_.reason().code);
        const auto& reason = ws_.reason().reason;
        info.reason.assign(reason.data(), reason.size());
        {
            std::lock_guard lock(mutex_);
            record_.open = false;
            record_.close_info = std::move(info);
            if (ec && ec != websocket::error::closed) {
                record_.error = std::string(what) + ": " + ec.message();
            }
        }
        changed_.notify_all();
    }

    void record_error(beast::error_code ec, const char* what) {
        {
            std::lock_guard lock(mutex_);
            record_.error = std::string(what) + ": " + ec.message();
        }
        changed_.notify_all();
    }

    // First, so it is destroyed last: the socket below must not outlive the io_context.
    std::shared_ptr<LoopCore> core_;
    websocket::stream<beast::tcp_stream> ws_;
    beast::flat_buffer buffer_;
    // Held only while the upgrade runs: refused upgrades report its status and body.
    std::unique_ptr<websocket::response_type> response_;
    std::uint16_t port_;
    std::string target_;
    HeaderList headers_;

    State state_ = State::kConnecting;
    std::deque<Outgoing> outbox_;
    bool writing_ = false;
    std::optional<std::uint16_t> close_code_;

    std::mutex mutex_;
    std::condition_variable changed_;
    Record record_;
};

}  // namespace detail

ClientLoop::ClientLoop()
    : core_(std::make_shared<detail::LoopCore>()),
      thread_([core = core_.get()] { core->io.run(); }) {}

ClientLoop::~ClientLoop() {
    std::vector<std::shared_ptr<detail::WsConnection>> live;
    {
        std::lock_guard lock(core_->mutex);
        core_->stopped = true;
        for (const auto& weak : core_->connections) {
            if (auto connection = weak.lock()) {
                live.push_back(std::move(connection));
            }
        }
        core_->connections.clear();
        // Closing every socket completes every pending operation, and whatever a handler
        // starts on a closed socket fails at once, so run() returns once these have drained.
        asio::post(core_->io, [live = std::move(live)] {
            for (const auto& connection : live) {
                connection->abort_now();
            }
        });
    }
    core_->guard.reset();
    thread_.join();
}

std::shared_ptr<WsClient> WsClient::start(ClientLoop& loop,
                                          std::uint16_t port,
                                          std::string target,
                                          HeaderList headers) {
    auto connection = std::make_shared<detail::WsConnection>(loop.core_, port, std::move(target),
                                                             std::move(headers));
    {
        auto& core = connection->core();
        std::lock_guard lock(core.mutex);
        // Dropped clients leave expired entries behind; sweep them as the list doubles.
        if (core.connections.size() >= core.prune_at) {
            std::erase_if(core.connections, [](const auto& weak) { return weak.expired(); });
            core.prune_at = std::max<std::size_t>(64, 2 * core.connections.size());
        }
        core.connections.push_back(connection);
    }
    connection->start();
    return std::shared_ptr<WsClient>(new WsClient(std::move(connection)));
}

WsClient::WsClient(std::shared_ptr<detail::WsConnection> connection)
    : connection_(std::move(connection)) {}

WsClient::~WsClient() { connection_->abort(); }

bool WsClient::wait_open(std::chrono::milliseconds timeout) const {
    connection_->wait(timeout, [](const auto& r) { return r.opened || r.close_info; });
    return connection_->read([](const auto& r) { return r.opened; });
}

bool WsClient::is_open() const {
    return connection_->read([](const auto& r) { return r.open; });
}

int WsClient::refused_status() const {
    return connection_->read([](const auto& r) { return r.refused_status; });
}

std::string WsClient::refused_body() const {
    return connection_->read([](const auto& r) { return r.refused_body; });
}

std::string WsClient::error() const {
    return connection_->read([](const auto& r) { return r.error; });
}

std::string WsClient::protocol() const {
    return connection_->read([](const auto& r) { return r.protocol; });
}

std::vector<std::string> WsClient::messages() const {
    return connection_->read([](const auto& r) { return r.messages; });
}

std::size_t WsClient::message_count() const {
    return connection_->read([](const auto& r) { return r.messages.size(); });
}

std::size_t WsClient::binary_count() const {
    return connection_->read([](const auto& r) { return r.binary_count; });
}

std::size_t WsClient::ping_count() const {
    return connection_->read([](const auto& r) { return r.ping_count; });
}

bool WsClient::wait_messages(std::size_t count, std::chrono::milliseconds timeout) const {
    return connection_->wait(timeout,
                             [count](const auto& r) { return r.messages.size() >= count; });
}

std::optional<CloseInfo> WsClient::close_info() const {
    return connection_->read([](const auto& r) { return r.close_info; });
}

bool WsClient::wait_closed(std::chrono::milliseconds timeout) const {
    return connection_->wait(timeout, [](const auto& r) { return r.close_info.has_value(); });
}

void WsClient::send_text(std::string text) { connection_->send(std::move(text), false); }

void WsClient::send_binary(std::string bytes) { connection_->send(std::move(bytes), true); }

void WsClient::close(std::uint16_t code) { connection_->close(code); }

void WsClient::abort() { connection_->abort(); }

void WsClient::on_message(std::function<void(const std::string&)> callback) {
    connection_->set_on_message(std::move(callback));
}

// Each request runs its asynchronous steps on a private io_context, so that the timeout
// bounds them (Beast's synchronous calls have none).
struct HttpClient::Impl {
    Impl(std::uint16_t to_port, std::chrono::milliseconds within)
        : port(to_port), timeout(within), stream(io) {}

    // Runs the operation start(handler) begins to completion; returns its error.
    template <class Start>
    beast::error_code run(Start start) {
        beast::error_code result;
        start([&result](beast::error_code ec, auto&&...) { result = ec; });
        io.restart();
        io.run();
        return result;
    }

    // One request on the current connection, connecting first if there is none. stale is set
    // when the server turned out to have closed the connection before any response byte.
    Response exchange(const http::request<http::string_body>& request, bool& stale) {
        Response response;
        stale = false;
        stream.expires_after(timeout);
        if (!connected) {
            buffer.clear();
            ++connections;
            if (const auto ec = run([&](auto h) { stream.async_connect(loopback(port), h); })) {
                response.error = "connect: " + ec.message();
                return response;
            }
            connected = true;
            beast::error_code ignored;
            stream.socket().set_option(tcp::no_delay(true), ignored);
        }
        if (const auto ec = run([&](auto h) { http::async_write(stream, request, h); })) {
            disconnect();
            stale = true;
            response.error = "write: " + ec.message();
            return response;
        }
        http::response_parser<http::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        parser.skip(request.method() == http::verb::head);
        if (const auto ec = run([&](auto h) { http::async_read(stream, buffer, parser, h); })) {
            disconnect();
            stale = ec == http::error::end_of_stream || ec == asio::error::connection_reset;
            response.error = "read: " + ec.message();
            return response;
        }
        auto& message = parser.get();
        response.status = message.result_int();
        response.body = std::move(message.body());
        response.content_type = std::string(message[http::field::content_type]);
        response.keep_alive = message.keep_alive();
        for (const auto& field : message) {
            response.headers.emplace_back(field.name_string(), field.value());
        }
        if (!response.keep_alive) {
            disconnect();
        }
        return response;
    }

    void disconnect() {
        stream.close();
        connected = false;
    }

    std::uint16_t port;
    std::chrono::milliseconds timeout;
    asio::io_context io{1};
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    bool connected = false;
    std::size_t connections = 0;
};

HttpClient::HttpClient(std::uint16_t port, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>(port, timeout)) {}

HttpClient::~HttpClient() = default;

HttpClient::Response HttpClient::request(const std::string& method,
                                         const std::string& target,
                                         const std::string& body,
                                         const HeaderList& headers) {
    http::request<http::string_body> request;
    const auto verb = http::string_to_verb(method);
    if (verb == http::verb::unknown) {
        request.method_string(method);
    } else {
        request.method(verb);
    }
    request.target(target);
    request.version(11);
    request.set(http::field::host, host_header(impl_->port));
    for (const auto& [name, value] : headers) {
        request.set(name, value);
    }
    request.body() = body;
    request.prepare_payload();

    const bool reused = impl_->connected;
    bool stale = false;
    auto response = impl_->exchange(request, stale);
    // A kept-alive connection may have been closed by the server while idle; like any HTTP
    // client, try once more on a fresh one. A fresh connection failing is a real failure.
    if (reused && stale) {
        response = impl_->exchange(request, stale);
    }
    return response;
}

HttpClient::Response HttpClient::get(const std::string& target, const HeaderList& headers) {
    return request("GET", target, {}, headers);
}

HttpClient::Response HttpClient::post(const std::string& target,
                                      const std::string& body,
                                      const HeaderList& headers) {
    return request("POST", target, body, headers);
}

std::size_t HttpClient::connection_count() const { return impl_->connections; }

namespace {

// A non-blocking POSIX socket; every wait on it is a poll() with a deadline.
class Socket {
public:
    Socket() = default;
    explicit Socket(int fd) : fd_(fd) {}
    Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Socket& operator=(Socket&& other) noexcept {
        std::swap(fd_, other.fd_);
        return *this;
    }
    ~Socket() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }

    int fd() const { return fd_; }

private:
    int fd_ = -1;
};

// Waits until fd is ready for events or the deadline passes. Error and hang-up count as
// ready: the next send or recv reports them.
bool poll_until(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd entry{fd, events, 0};
        const int ready = ::poll(&entry, 1, static_cast<int>(std::max<long>(0, left.count())));
        if (ready > 0) {
            return true;
        }
        if (ready == 0 || errno != EINTR) {
            return false;
        }
    }
}

// Connects to 127.0.0.1:port. A receive_buffer of 0 keeps the kernel's default; any other
// size is set before connect, because the window scale is agreed in the handshake.
Socket connect_loopback(std::uint16_t port,
                        int receive_buffer,
                        Clock::time_point deadline,
                        std::string& error) {
    Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (socket.fd() < 0) {
        error = std::string("socket: ") + std::strerror(errno);
        return {};
    }
    if (receive_buffer > 0) {
        ::setsockopt(socket.fd(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(socket.fd(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        if (errno != EINPROGRESS) {
            error = std::string("connect: ") + std::strerror(errno);
            return {};
        }
        if (!poll_until(socket.fd(), POLLOUT, deadline)) {
            error = "connect: timed out";
            return {};
        }
        int result = 0;
        socklen_t length = sizeof result;
        ::getsockopt(socket.fd(), SOL_SOCKET, SO_ERROR, &result, &length);
        if (result != 0) {
            error = std::string("connect: ") + std::strerror(result);
            return {};
        }
    }
    return socket;
}

// False when the peer closed or reset the connection, or stopped reading until the deadline.
bool send_all(int fd, std::string_view bytes, Clock::time_point deadline) {
    while (!bytes.empty()) {
        const auto sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (sent >= 0) {
            bytes.remove_prefix(static_cast<std::size_t>(sent));
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!poll_until(fd, POLLOUT, deadline)) {
                return false;
            }
        } else if (errno != EINTR) {
            return false;
        }
    }
    return true;
}

enum class Received { kData, kClosed, kTimeout };

// Appends what is readable to out, waiting for it until the deadline. kClosed covers EOF,
// a reset and any other receive error: each means the server is gone.
Received receive_some(int fd, std::string& out, Clock::time_point deadline) {
    std::array<char, 64 * 1024> chunk;
    for (;;) {
        const auto got = ::recv(fd, chunk.data(), chunk.size(), 0);
        if (got > 0) {
            out.append(chunk.data(), static_cast<std::size_t>(got));
            return Received::kData;
        }
        if (got == 0) {
            return Received::kClosed;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!poll_until(fd, POLLIN, deadline)) {
                return Received::kTimeout;
            }
        } else if (errno != EINTR) {
            return Received::kClosed;
        }
    }
}

}  // namespace

std::string client_frame(std::uint8_t first,
                         std::string_view payload,
                         std::uint32_t key,
                         bool masked) {
    std::string frame;
    frame.push_back(static_cast<char>(first));
    const char mask_bit = masked ? static_cast<char>(0x80) : 0;
    if (payload.size() < 126) {
        frame.push_back(static_cast<char>(mask_bit | payload.size()));
    } else if (payload.size() <= 0xffff) {
        frame.push_back(static_cast<char>(mask_bit | 126));
        frame.push_back(static_cast<char>(payload.size() >> 8));
        frame.push_back(static_cast<char>(payload.size() & 0xff));
    } else {
        frame.push_back(static_cast<char>(mask_bit | 127));
        for (int shift = 56; shift >= 0; shift -= 8) {
            frame.push_back(
                static_cast<char>((static_cast<std::uint64_t>(payload.size()) >> shift) & 0xff));
        }
    }
    if (!masked) {
        frame.append(payload);
        return frame;
    }
    std::array<char, 4> mask{};
    for (std::size_t i = 0; i < mask.size(); ++i) {
        mask[i] = static_cast<char>((key >> (8 * i)) & 0xff);
    }
    frame.append(mask.data(), mask.size());
    frame.reserve(frame.size() + payload.size());
    for (std::size_t i = 0; i < payload.size(); ++i) {
        frame.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
    }
    return frame;
}

std::string raw_exchange(std::uint16_t port,
                         const std::string& bytes,
                         std::chrono::milliseconds timeout,
                         AfterSend after) {
    const auto deadline = Clock::now() + timeout;
    std::string error;
    const auto socket = connect_loopback(port, 0, deadline, error);
    if (socket.fd() < 0) {
        return {};
    }
    // A server that rejects the request early may close before reading it all: still read
    // what it answered.
    if (send_all(socket.fd(), bytes, deadline) && after == AfterSend::half_close) {
        ::shutdown(socket.fd(), SHUT_WR);
    }
    std::string received;
    while (receive_some(socket.fd(), received, deadline) == Received::kData) {
    }
    return received;
}

namespace {

// Small enough that a server writing to a StalledClient fills it, and then its own send
// buffer, after a few messages.
constexpr int kStalledReceiveBuffer = 4 * 1024;
constexpr std::chrono::seconds kStalledTimeout{5};
constexpr std::size_t kMaxResponseHeader = 16 * 1024;

}  // namespace

struct StalledClient::Impl {
    // Skims server frames for a close frame and pongs, counting text frames, without keeping
    // any other payload.
    void scan(std::string_view bytes) {
        pending.append(bytes);
        for (;;) {
            if (skip > 0) {
                const auto dropped = std::min<std::uint64_t>(skip, pending.size());
                pending.erase(0, dropped);
                skip -= dropped;
                if (skip > 0) {
                    return;
                }
            }
            if (pending.size() < 2) {
                return;
            }
            const auto first = static_cast<std::uint8_t>(pending[0]);
            const auto second = static_cast<std::uint8_t>(pending[1]);
            const std::size_t length_bytes = (second & 0x7f) == 126   ? 2
                                             : (second & 0x7f) == 127 ? 8
                                                                      : 0;
            const std::size_t header = 2 + length_bytes + ((second & 0x80) ? 4 : 0);
            if (pending.size() < header) {
                return;
            }
            std::uint64_t length = second & 0x7f;
            if (length_bytes > 0) {
                length = 0;
                for (std::size_t i = 0; i < length_bytes; ++i) {
                    length = (length << 8) | static_cast<std::uint8_t>(pending[2 + i]);
                }
            }
            const auto opcode = first & 0x0f;
            if (opcode == 0xA) {  // a pong: at most 125 bytes, kept whole
                if (pending.size() < header + length) {
                    return;
                }
                pongs.push_back(pending.substr(header, length));
                pending.erase(0, header + length);
                continue;
            }
            if (opcode == 0x1) {
                ++texts;
            }
            const bool is_close = opcode == 0x8;
            if (is_close && !close_code && length >= 2) {
                if (pending.size() < header + 2) {
                    return;
                }
                std::array<std::uint8_t, 2> code{static_cast<std::uint8_t>(pending[header]),
                                                 static_cast<std::uint8_t>(pending[header + 1])};
                if (second & 0x80) {
                    code[0] ^= static_cast<std::uint8_t>(pending[header - 4]);
                    code[1] ^= static_cast<std::uint8_t>(pending[header - 3]);
                }
                close_code = static_cast<std::uint16_t>((code[0] << 8) | code[1]);
            }
            pending.erase(0, header);
            skip = length;
        }
    }

    Socket socket;
    std::string pending;
    std::uint64_t skip = 0;
    // Reads and scans until done() holds; false if the server closed before it did or the
    // deadline passed.
    bool read_until(const std::function<bool()>& done, Clock::time_point deadline) {
        std::string received;
        while (!done()) {
            if (closed) {
                return false;
            }
            received.clear();
            const auto result = receive_some(socket.fd(), received, deadline);
            scan(received);
            if (result == Received::kTimeout) {
                return done();
            }
            closed = result == Received::kClosed;
        }
        return true;
    }

    std::optional<std::uint16_t> close_code;
    std::vector<std::string> pongs;
    std::size_t texts = 0;
    bool closed = false;
};

StalledClient::StalledClient(std::uint16_t port,
                             const std::string& target,
                             const HeaderList& headers)
    : impl_(std::make_unique<Impl>()) {
    const auto deadline = Clock::now() + kStalledTimeout;
    std::string error;
    impl_->socket = connect_loopback(port, kStalledReceiveBuffer, deadline, error);
    if (impl_->socket.fd() < 0) {
        throw std::runtime_error("StalledClient: " + error);
    }
    std::string request = "GET " + target + " HTTP/1.1\r\nHost: " + host_header(port) +
                          "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n";
    for (const auto& [name, value] : headers) {
        request += name + ": " + value + "\r\n";
    }
    request += "\r\n";
    if (!send_all(impl_->socket.fd(), request, deadline)) {
        throw std::runtime_error("StalledClient: the upgrade request could not be sent");
    }
    std::string response;
    std::size_t end = std::string::npos;
    while ((end = response.find("\r\n\r\n")) == std::string::npos) {
        if (response.size() > kMaxResponseHeader ||
            receive_some(impl_->socket.fd(), response, deadline) != Received::kData) {
            throw std::runtime_error("StalledClient: no complete upgrade response");
        }
    }
    const auto status_line = response.substr(0, response.find("\r\n"));
    if (status_line.rfind("HTTP/1.1 101", 0) != 0) {
        throw std::runtime_error("StalledClient: upgrade refused: " + status_line);
    }
    // Frames may follow the 101 in the same read.
    impl_->scan(std::string_view(response).substr(end + 4));
}

StalledClient::~StalledClient() = default;

bool StalledClient::wait_server_closed(std::chrono::milliseconds timeout) {
    return impl_->read_until([&] { return impl_->closed; }, Clock::now() + timeout);
}

std::optional<std::uint16_t> StalledClient::close_code() const { return impl_->close_code; }

bool StalledClient::read_until_pongs(std::size_t count, std::chrono::milliseconds timeout) {
    return impl_->read_until([&] { return impl_->pongs.size() >= count; }, Clock::now() + timeout);
}

bool StalledClient::read_until_texts(std::size_t count, std::chrono::milliseconds timeout) {
    return impl_->read_until([&] { return impl_->texts >= count; }, Clock::now() + timeout);
}

bool StalledClient::read_until_pongs_or_close(std::size_t count,
                                              std::chrono::milliseconds timeout) {
    return impl_->read_until([&] { return impl_->pongs.size() >= count || impl_->close_code; },
                             Clock::now() + timeout);
}

std::vector<std::string> StalledClient::pongs() const { return impl_->pongs; }

std::size_t StalledClient::text_count() const { return impl_->texts; }

bool StalledClient::send_raw_frame(std::uint8_t opcode, std::string_view payload, bool fin) {
    const auto first = static_cast<std::uint8_t>((fin ? 0x80 : 0x00) | (opcode & 0x0f));
    return send_raw(client_frame(first, payload, std::random_device{}()));
}

bool StalledClient::send_raw(std::string_view bytes) {
    return send_all(impl_->socket.fd(), bytes, Clock::now() + kStalledTimeout);
}

namespace {

constexpr std::chrono::seconds kRawTimeout{5};

}  // namespace

struct RawConnection::Impl {
    Socket socket;
    std::string received;
    bool closed = false;
};

RawConnection::RawConnection(std::uint16_t port) : impl_(std::make_unique<Impl>()) {
    std::string error;
    impl_->socket = connect_loopback(port, 0, Clock::now() + kRawTimeout, error);
    if (impl_->socket.fd() < 0) {
        throw std::runtime_error("RawConnection: " + error);
    }
}

RawConnection::~RawConnection() = default;

bool RawConnection::send(std::string_view bytes) {
    return send_all(impl_->socket.fd(), bytes, Clock::now() + kRawTimeout);
}

bool RawConnection::read_until(const std::function<bool(std::string_view)>& done,
                               std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!done(impl_->received)) {
        if (impl_->closed) {
            return false;
        }
        const auto result = receive_some(impl_->socket.fd(), impl_->received, deadline);
        if (result == Received::kTimeout) {
            return done(impl_->received);
        }
        impl_->closed = result == Received::kClosed;
    }
    return true;
}

bool RawConnection::wait_closed(std::chrono::milliseconds timeout) {
    read_until([&](std::string_view) { return impl_->closed; }, timeout);
    return impl_->closed;
}

const std::string& RawConnection::received() const { return impl_->received; }

}  // namespace shardcast::test
