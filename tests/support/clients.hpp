// Clients the integration tests use to talk to a real shardcast server over real sockets on
// 127.0.0.1. Every Beast and Asio include lives in clients.cpp, so including this header costs
// a test file nothing. Each class comment says which threads may call it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace shardcast::test {

// Extra request headers, in order. Each replaces any header of that name the client would set
// itself (Host, for instance), except Content-Length, which HttpClient always computes.
using HeaderList = std::vector<std::pair<std::string, std::string>>;

namespace detail {
struct LoopCore;
class WsConnection;
}  // namespace detail

// Runs one io_context on its own thread for any number of WsClients; nothing else runs there.
// The destructor closes every client's socket, waits for their handlers to finish and joins
// the thread, so it stays prompt with thousands of clients open. Do not destroy it from an
// on_message callback (its own thread), nor start clients on it while it is being destroyed.
// A WsClient may outlive its loop: it then only reports what it recorded.
class ClientLoop {
public:
    ClientLoop();
    ClientLoop(const ClientLoop&) = delete;
    ClientLoop& operator=(const ClientLoop&) = delete;
    ~ClientLoop();

private:
    friend class WsClient;

    std::shared_ptr<detail::LoopCore> core_;
    std::thread thread_;
};

struct CloseInfo {
    std::uint16_t code = 0;
    std::string reason;
};

// An asynchronous WebSocket client on a ClientLoop: connects to ws://127.0.0.1:<port><target>,
// upgrades, then reads continuously and records every message (text or binary) in order.
// Beast answers the server's pings by itself, as a well-behaved client does.
//
// Thread contract: every public member is safe from any thread; the socket itself is only
// touched on the loop thread, and sends and closes are posted there. Dropping the last
// handle closes the socket without a close handshake.
class WsClient {
public:
    static std::shared_ptr<WsClient> start(ClientLoop& loop,
                                           std::uint16_t port,
                                           std::string target,
                                           HeaderList headers = {});
    WsClient(const WsClient&) = delete;
    WsClient& operator=(const WsClient&) = delete;
    ~WsClient();

    // True once the upgrade succeeded, even if the connection has ended since; false if it
    // failed or the timeout passed first.
    bool wait_open(std::chrono::milliseconds timeout) const;
    // True from the upgrade until the read loop ends.
    bool is_open() const;
    // The HTTP status the server answered the upgrade with when it refused it (400, 409, ...),
    // else 0; refused_body() is that response's body.
    int refused_status() const;
    std::string refused_body() const;
    // The last error text (connect, upgrade, read or write), "" if none. A close handshake
    // that completes leaves it empty; a reset after the server's close frame is reported here
    // while close_info() still carries the frame's code.
    std::string error() const;
    // The subprotocol the server selected in its 101 response (Sec-WebSocket-Protocol), ""
    // when it selected none or the upgrade has not succeeded. Offer one with a
    // Sec-WebSocket-Protocol header among those given to start().
    std::string protocol() const;

    std::vector<std::string> messages() const;
    std::size_t message_count() const;
    // How many of messages() arrived as binary frames.
    std::size_t binary_count() const;
    // Pings received from the server; Beast has already answered each one.
    std::size_t ping_count() const;
    bool wait_messages(std::size_t count, std::chrono::milliseconds timeout) const;

    // Set once the connection has ended, however it ended. code and reason come from the
    // server's close frame whenever one arrived, even if the TCP teardown after it failed;
    // code is 0 when the socket ended without one (EOF, reset, abort()) and when it never
    // opened (refused upgrade, failed connect). After close(), code is the one the server
    // echoed.
    std::optional<CloseInfo> close_info() const;
    bool wait_closed(std::chrono::milliseconds timeout) const;

    // Queued and sent in order, one write in flight at a time. Messages queued before the
    // upgrade completes go out right after it; those queued after close() are dropped.
    void send_text(std::string text);
    void send_binary(std::string bytes);
    // Starts a clean close handshake once the queued messages are written. Messages the
    // server sends after that are read past and not recorded, as Beast's close does.
    void close(std::uint16_t code = 1000);
    // Closes the TCP socket at once, without a close frame: a client that vanished.
    void abort();

    // Called on the loop thread for every message, before it is recorded, so a test waiting on
    // message_count() sees its effects. It applies to messages that arrive after it is set:
    // set it before asking the server to send anything. It must not throw.
    void on_message(std::function<void(const std::string&)> callback);

private:
    explicit WsClient(std::shared_ptr<detail::WsConnection> connection);

    std::shared_ptr<detail::WsConnection> connection_;
};

// A synchronous HTTP/1.1 client over one keep-alive connection to 127.0.0.1:<port>. It
// reconnects when the server has closed the connection, and retries a request once when a
// reused connection turns out to be closed before any response byte arrived.
//
// Thread contract: not thread-safe; use each HttpClient from one thread at a time. It runs
// its own io_context inside each call, so it needs no ClientLoop.
class HttpClient {
public:
    struct Response {
        int status = 0;  // 0 when no response arrived; error then says why
        std::string body;
        std::string content_type;
        bool keep_alive = false;
        HeaderList headers;
        std::string error;
    };

    // timeout bounds each request: connect, write and read together.
    explicit HttpClient(std::uint16_t port,
                        std::chrono::milliseconds timeout = std::chrono::seconds(10));
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;
    ~HttpClient();

    // Any method string is sent as given, unknown ones included. No Content-Type is added:
    // pass one in headers when the body needs it.
    Response request(const std::string& method,
                     const std::string& target,
                     const std::string& body = {},
                     const HeaderList& headers = {});
    Response get(const std::string& target, const HeaderList& headers = {});
    Response post(const std::string& target,
                  const std::string& body,
                  const HeaderList& headers = {});

    // TCP connections opened so far; stays 1 while keep-alive holds.
    std::size_t connection_count() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// A client frame as RFC 6455 lays it out: `first` is the FIN, RSV and opcode byte; the
// payload is masked with `key`, or sent in the clear when `masked` is false, which a server
// must refuse. Any thread.
std::string client_frame(std::uint8_t first,
                         std::string_view payload,
                         std::uint32_t key,
                         bool masked = true);

// What raw_exchange does once its bytes are sent: keep the connection open for the server
// to close, or also shut down its sending side, so the server reads end-of-stream after them.
enum class AfterSend { keep_open, half_close };

// Sends raw bytes on a fresh TCP connection to 127.0.0.1:<port> and returns everything read
// until the server closes (or resets) the connection or the timeout passes; "" if the connect
// failed. For malformed-HTTP tests. Any thread.
std::string raw_exchange(std::uint16_t port,
                         const std::string& bytes,
                         std::chrono::milliseconds timeout,
                         AfterSend after = AfterSend::keep_open);

// A WebSocket peer that completes the upgrade by hand (raw TCP, reads only the 101 response)
// and then never reads again unless asked: it answers no pings and, with its 4 KiB receive
// buffer, lets the server's socket buffers fill quickly. Models a stalled or half-open client.
//
// Thread contract: not thread-safe; use each StalledClient from one thread at a time.
class StalledClient {
public:
    // Throws std::runtime_error when the connect fails or the server does not answer 101
    // within 5 seconds.
    StalledClient(std::uint16_t port, const std::string& target, const HeaderList& headers = {});
    StalledClient(const StalledClient&) = delete;
    StalledClient& operator=(const StalledClient&) = delete;
    ~StalledClient();

    // Reads and discards everything pending until the server closes or resets the connection
    // or the timeout passes; true once EOF or a reset has been seen.
    bool wait_server_closed(std::chrono::milliseconds timeout);
    // The code of the first close frame found among the bytes wait_server_closed() discarded.
    // Empty when none arrived, which is normal when the server gave up on full buffers.
    std::optional<std::uint16_t> close_code() const;
    // Reads until `count` pong frames, or `count` text frames, have arrived since the upgrade;
    // false when the server closes the connection or the timeout passes first. It reads no
    // further than the socket read that completes the count.
    bool read_until_pongs(std::size_t count, std::chrono::milliseconds timeout);
    bool read_until_texts(std::size_t count, std::chrono::milliseconds timeout);
    // Reads until `count` pongs, or a close frame, have arrived since the upgrade: a server
    // that answers a ping in a read either keeps the session or closes it right after.
    bool read_until_pongs_or_close(std::size_t count, std::chrono::milliseconds timeout);
    // The payloads of the pongs read so far, in order, and how many text frames were read.
    std::vector<std::string> pongs() const;
    std::size_t text_count() const;

    // Sends a masked client frame, as RFC 6455 requires. False when the server closed or reset
    // the connection, or stopped reading for 5 seconds, before every byte was written: a
    // server rejecting an oversized frame may well do that mid-frame.
    bool send_raw_frame(std::uint8_t opcode, std::string_view payload, bool fin = true);
    // Sends bytes as they are, e.g. a frame header announcing a payload that never follows.
    bool send_raw(std::string_view bytes);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// A plain TCP connection to 127.0.0.1:<port> that sends exactly the bytes it is given, when it
// is given them, and reads only when asked: a request that stops halfway, a connection that
// says nothing, pipelined requests. Models clients that are slow on purpose.
//
// Thread contract: not thread-safe; use each RawConnection from one thread at a time.
class RawConnection {
public:
    // Throws std::runtime_error when the connect fails within 5 seconds.
    explicit RawConnection(std::uint16_t port);
    RawConnection(const RawConnection&) = delete;
    RawConnection& operator=(const RawConnection&) = delete;
    ~RawConnection();

    // False when the server closed or reset the connection, or stopped reading for 5 seconds,
    // before every byte was written.
    bool send(std::string_view bytes);
    // Reads until done(received()) holds; false when the server closes the connection or the
    // timeout passes first.
    bool read_until(const std::function<bool(std::string_view)>& done,
                    std::chrono::milliseconds timeout);
    // Reads until the server closes or resets the connection; false when the timeout passes
    // first.
    bool wait_closed(std::chrono::milliseconds timeout);
    // Everything read so far.
    const std::string& received() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace shardcast::test
