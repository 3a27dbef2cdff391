// The WebSocket clients of ClientGroup, on plain Asio sockets: loadgen writes the upgrade
// request and reads the 101 itself, and reads frames with ServerFrames. A general-purpose
// client library pays per message (a composed read operation, a growing buffer per
// connection); here one read takes whatever the socket holds, a small per-client buffer first
// and the group's one large buffer for the rest, and every frame in it is handled in place,
// so loadgen's thread is not what limits a run.
//
// A Client is owned by its group, not by shared_ptr: with tens of thousands of clients the
// group's vector is the cheapest owner, and every handler that captures `this` runs on the
// group's Loop, which outlives them all (the Loop is joined before the group is destroyed).
// The socket is rebuilt for every connection, only ever by the group's connection pacer (a
// posted or timer handler), never inside one of the socket's own handlers.
#include "bench/loadgen/clients.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "bench/loadgen/message.hpp"
#include "bench/loadgen/server_frames.hpp"

namespace shardcast::loadgen {

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using boost::system::error_code;
// The io_context's own executor rather than any_io_executor: its copies were a visible share
// of a read's cost.
using Socket = net::basic_stream_socket<tcp, net::io_context::executor_type>;
using Timer = net::basic_waitable_timer<std::chrono::steady_clock,
                                        net::wait_traits<std::chrono::steady_clock>,
                                        net::io_context::executor_type>;

// Bounds the upgrade and the closing handshake; a connection once open has no idle timeout,
// since the run's own deadline ends it.
constexpr std::chrono::seconds kHandshakeTimeout{5};
// The group's read buffer: one read takes many frames when a server writes them together.
constexpr std::size_t kReadBufferBytes = 64 * 1024;
// What a client reads first on each wakeup: a paced frame or two, or a targeted message.
constexpr std::size_t kFirstReadBytes = 1024;
// Full reads of one socket in a row, after the first, before the other sockets get a turn.
constexpr int kReadsPerTurn = 4;
// The longest 101 response loadgen accepts.
constexpr std::size_t kMaxResponseBytes = 8192;

// Every connection sends the same key, the example of RFC 6455 section 1.3, whose accept
// value is known: computing SHA-1 per connection would buy nothing on loopback, where no
// cache can replay an old response. Servers do not check a key's randomness.
constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [](char x, char y) { return lower(x) == lower(y); });
}

bool icontains(std::string_view text, std::string_view word) {
    for (std::size_t i = 0; i + word.size() <= text.size(); ++i) {
        if (iequals(text.substr(i, word.size()), word)) return true;
    }
    return false;
}

std::string_view trimmed(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Why the response head (status line and headers, without the blank line) does not complete
// the upgrade; empty when it does.
std::string refusal(std::string_view head) {
    const std::size_t eol = head.find("\r\n");
    const std::string_view status = head.substr(0, eol);
    if (!status.starts_with("HTTP/1.1 101")) return "upgrade refused: " + std::string(status);
    bool upgrade = false;
    bool connection = false;
    bool accept = false;
    for (std::size_t at = eol; at != std::string_view::npos && at < head.size();) {
        const std::size_t begin = at + 2;
        const std::size_t end = head.find("\r\n", begin);
        const std::string_view line = head.substr(begin, end - begin);
        at = end;
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        const std::string_view name = line.substr(0, colon);
        const std::string_view value = trimmed(line.substr(colon + 1));
        if (iequals(name, "upgrade")) upgrade = iequals(value, "websocket");
        if (iequals(name, "connection")) connection = icontains(value, "upgrade");
        if (iequals(name, "sec-websocket-accept")) accept = value == kAccept;
    }
    if (!upgrade || !connection) return "a 101 without Upgrade: websocket and Connection: upgrade";
    if (!accept) return "a 101 with a wrong Sec-WebSocket-Accept";
    return {};
}

}  // namespace

namespace detail {
class Client;
}  // namespace detail
using detail::Client;

struct ClientGroup::Impl {
    Impl(Loop& on, const Options& with)
        : loop(on),
          options(with),
          stats(on.stats()),
          server(net::ip::make_address_v4(with.host), with.port),
          host_header(with.host + ":" + std::to_string(with.port)),
          streams(with.publishes() ? static_cast<std::size_t>(with.publisher_count()) : 0),
          read_buffer(kReadBufferBytes),
          pacer(on.context()),
          churn_timer(on.context()) {}

    void enqueue_connect(Client* client);
    void pump_connects();
    void churn_tick();
    ChurnClose next_close();
    void add_open(Client* client);
    void remove_open(Client* client);
    std::array<std::uint8_t, 4> mask_key() {
        const auto k = static_cast<std::uint32_t>(rng());
        return {static_cast<std::uint8_t>(k), static_cast<std::uint8_t>(k >> 8),
                static_cast<std::uint8_t>(k >> 16), static_cast<std::uint8_t>(k >> 24)};
    }

    Loop& loop;
    const Options& options;
    LoopStats& stats;
    tcp::endpoint server;
    std::string host_header;
    std::size_t streams;  // StreamChecks per connection: one per publisher
    std::vector<std::unique_ptr<Client>> clients;
    std::vector<Client*> open_clients;  // the ones churn may pick, in no order
    // Every client reads into this, and handles what it read before the next client reads.
    std::vector<char> read_buffer;

    // Connections wait here for a token: connect_rate / threads tokens per second.
    std::deque<Client*> waiting;
    net::steady_timer pacer;
    bool pump_scheduled = false;
    double tokens = 1;
    std::int64_t refilled_ns = 0;

    net::steady_timer churn_timer;
    std::int64_t churn_end_ns = 0;
    std::int64_t churned_ns = 0;
    double churn_credit = 0;
    bool reset_next = false;  // alternate: the kind the next churned connection ends with
    std::minstd_rand rng{12345};

    bool churning = false;
    bool stopping = false;
};

namespace detail {

class Client {
public:
    Client(ClientGroup::Impl& group, int index)
        : group_(group), index_(index), timer_(group.loop.context()) {}

    // Where this client sits in the group's open_clients while it is open.
    std::size_t open_slot = 0;

    // Starts one connection attempt: TCP connect, then the upgrade.
    void connect() {
        state_ = State::connecting;
        connect_start_ns_ = now_ns();
        frames_ = ServerFrames{};
        outbox_.clear();
        close_received_ = false;
        socket_.emplace(group_.loop.context());
        error_code ec;
        socket_->open(tcp::v4(), ec);
        if (!ec) bind_source(ec);
        if (ec) {
            connect_failed();
            return;
        }
        start_timer();
        ++pending_;
        socket_->async_connect(group_.server,
                               [this](error_code connect_ec) { on_connect(connect_ec); });
    }

    // Churn: ends an open connection the way the options say, then reconnects.
    void churn() {
        if (state_ != State::open) return;
        state_ = State::closing;
        group_.remove_open(this);
        record_.close_ns = now_ns();
        record_.churned = true;
        if (group_.next_close() == ChurnClose::handshake) {
            ++group_.stats.churned_handshake;
            // Frames keep arriving and counting until the server's close answers this one.
            start_timer();
            send(client_frame(0x8, std::string_view("\x03\xe8", 2), group_.mask_key()));
        } else {
            ++group_.stats.churned_reset;
            // SO_LINGER 0 turns close into a reset: no FIN, no TIME_WAIT, a vanished client.
            error_code ignored;
            socket_->set_option(net::socket_base::linger(true, 0), ignored);
            end_socket();
        }
    }

    // The run is over: cancel whatever is pending. A connection still open counts as open at
    // the end.
    void shut() {
        if (!socket_) return;
        end_socket();
    }

private:
    enum class State { idle, connecting, open, closing, ended };

    void bind_source(error_code& ec) {
        const int sources = group_.options.source_ips;
        if (sources <= 1) return;
        // 127.0.0.k: each source address has its own ephemeral port range, so many sources
        // lift the limit of about 28,000 connections to one server port.
        const auto k = static_cast<unsigned>(index_ % sources);
        const net::ip::address_v4 source(net::ip::address_v4::loopback().to_uint() + k);
#ifdef IP_BIND_ADDRESS_NO_PORT
        // Defer the port choice to connect(), where the 4-tuple, not the address, must be
        // unique.
        const int one = 1;
        setsockopt(socket_->native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
        socket_->bind(tcp::endpoint(source, 0), ec);
    }

    // Bounds the step in progress (the upgrade, or the closing handshake): when it fires the
    // socket is closed, which fails whatever waits on it.
    void start_timer() {
        ++pending_;
        timer_.expires_after(kHandshakeTimeout);
        timer_.async_wait([this](error_code ec) {
            --pending_;
            if (!ec && (state_ == State::connecting || state_ == State::closing)) end_socket();
            maybe_finish();
        });
    }

    void on_connect(error_code ec) {
        --pending_;
        if (ec || group_.stopping) {
            connect_failed();
            return;
        }
        socket_->non_blocking(true, ec);
        if (ec) {
            connect_failed();
            return;
        }
        handshake_ = "GET /ws/" + client_id(index_) + " HTTP/1.1\r\nHost: " + group_.host_header +
                     "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " +
                     std::string(kKey) +
                     "\r\nSec-WebSocket-Version: 13\r\nUser-Agent: shardcast-loadgen\r\n\r\n";
        ++pending_;
        net::async_write(*socket_, net::buffer(handshake_),
                         [this](error_code write_ec, std::size_t) {
                             --pending_;
                             if (write_ec || group_.stopping) {
                                 connect_failed();
                                 return;
                             }
                             handshake_.clear();
                             read_response();
                         });
    }

    void read_response() {
        const std::size_t had = handshake_.size();
        handshake_.resize(had + 1024);
        ++pending_;
        socket_->async_read_some(
            net::buffer(handshake_.data() + had, 1024),
            [this, had](error_code ec, std::size_t n) { on_response_read(ec, had + n); });
    }

    // size: the bytes of the response read so far.
    void on_response_read(error_code ec, std::size_t size) {
        --pending_;
        if (ec || group_.stopping) {
            connect_failed();
            return;
        }
        handshake_.resize(size);
        const std::size_t end = handshake_.find("\r\n\r\n");
        if (end != std::string::npos) {
            on_response(end);
        } else if (handshake_.size() > kMaxResponseBytes) {
            note_error("a response head over 8 KiB");
            connect_failed();
        } else {
            read_response();
        }
    }

    // head_size: where the blank line that ends the response's head begins.
    void on_response(std::size_t head_size) {
        if (const std::string why = refusal(std::string_view(handshake_).substr(0, head_size));
            !why.empty()) {
            note_error(why);
            connect_failed();
            return;
        }
        timer_.cancel();
        const std::int64_t now = now_ns();
        auto& stats = group_.stats;
        stats.connect.record(now - connect_start_ns_);
        if (attempts_++ == 0) stats.bump(stats.connects_done);
        stats.bump(stats.open);
        state_ = State::open;
        record_ = ConnectionRecord{index_, now, 0, false, {}};
        record_.streams.resize(group_.streams);
        group_.add_open(this);
        // Frames the server sent right behind its 101.
        const std::string early = handshake_.substr(head_size + 4);
        std::string().swap(handshake_);
        if (!early.empty() && !consume(early, now)) {
            maybe_finish();
            return;
        }
        read_next();
    }

    void connect_failed() {
        auto& stats = group_.stats;
        if (!group_.stopping) ++stats.connect_failures;
        if (attempts_++ == 0) stats.bump(stats.connects_done);
        state_ = State::ended;
        std::string().swap(handshake_);
        end_socket();
    }

    // Each wakeup reads into the client's own small buffer, which Asio fills when the socket
    // becomes readable; a read that fills it is followed by reads into the group's buffer
    // until one comes back short. A read, unlike a wait, needs no epoll_ctl per wakeup.
    void read_next() {
        ++pending_;
        socket_->async_read_some(net::buffer(first_read_),
                                 [this](error_code ec, std::size_t n) { on_read(ec, n); });
    }

    void on_read(error_code ec, std::size_t n) {
        --pending_;
        if (ec) {
            on_read_error();
            return;
        }
        if (!reading()) {
            maybe_finish();
            return;
        }
        if (!consume(std::string_view(first_read_.data(), n), now_ns())) {
            maybe_finish();
            return;
        }
        if (n == first_read_.size() && !read_rest()) return;
        read_next();
    }

    // Reads what else the socket holds, a bounded number of times so that other clients get
    // their turn (the next read_next may complete at once, and Asio posts that completion).
    // False when the connection is over.
    bool read_rest() {
        std::vector<char>& buffer = group_.read_buffer;
        for (int turn = 0; turn < kReadsPerTurn; ++turn) {
            error_code ec;
            const std::size_t n = socket_->read_some(net::buffer(buffer), ec);
            if (ec == net::error::would_block) return true;
            if (ec) {
                on_read_error();
                return false;
            }
            if (!consume(std::string_view(buffer.data(), n), now_ns())) {
                maybe_finish();
                return false;
            }
            if (n < buffer.size()) return true;
        }
        return true;
    }

    bool reading() const {
        return socket_ && socket_->is_open() && !close_received_ &&
               (state_ == State::open || state_ == State::closing);
    }

    // Handles bytes read at now; false when the connection is over.
    bool consume(std::string_view bytes, std::int64_t now) {
        const bool framed =
            frames_.feed(bytes, [this, now](FrameKind kind, std::string_view payload) {
                on_frame(kind, payload, now);
            });
        if (!framed) {
            ++group_.stats.framing_errors;
            note_error("framing: " + frames_.error());
            server_ended();
            end_socket();
            return false;
        }
        return reading();
    }

    void on_frame(FrameKind kind, std::string_view payload, std::int64_t now) {
        if (close_received_) return;
        switch (kind) {
            case FrameKind::message:
                on_message(payload, now);
                break;
            case FrameKind::ping:
                send(client_frame(0xA, payload, group_.mask_key()));
                break;
            case FrameKind::pong:
                break;
            case FrameKind::close:
                close_received_ = true;
                if (state_ == State::closing) {
                    // The answer to loadgen's own close: the handshake is complete.
                    end_socket();
                    break;
                }
                server_ended();
                if (!group_.stopping) {
                    group_.stats.last_close_code = ServerFrames::close_code(payload);
                }
                // Echo the code; the socket ends once the echo is written.
                send(client_frame(0x8, payload.substr(0, 2), group_.mask_key()));
                break;
        }
    }

    void on_message(std::string_view text, std::int64_t now) {
        auto& stats = group_.stats;
        const auto stamp = parse_message(text);
        if (!stamp || stamp->publisher >= record_.streams.size()) {
            ++stats.malformed;
            return;
        }
        record_.streams[stamp->publisher].on_seq(stamp->seq);
        stats.bump(stats.received);
        const Window& window = group_.loop.window;
        if (now >= window.start_ns && now < window.end_ns) {
            ++stats.delivered_in_window;
            stats.latency.record(now - stamp->send_ns);
            if (index_ != 0 && group_.options.hot_fraction > 0) {
                stats.others_latency.record(now - stamp->send_ns);
            }
        }
    }

    // A failed read or write: the connection is gone.
    void on_read_error() {
        server_ended();
        end_socket();
        maybe_finish();
    }

    // The server ended an open connection (a close frame, EOF, a reset, or bad framing).
    void server_ended() {
        if (state_ != State::open) return;
        if (!group_.stopping) {
            ++group_.stats.unexpected_closes;
            record_.close_ns = now_ns();
        }
        state_ = State::closing;
        group_.remove_open(this);
    }

    // Queues a control frame behind the write in progress, if any: one write at a time.
    void send(const std::string& frame) {
        outbox_ += frame;
        if (writing_.empty()) write_next();
    }

    void write_next() {
        writing_.swap(outbox_);
        ++pending_;
        net::async_write(*socket_, net::buffer(writing_), [this](error_code ec, std::size_t) {
            --pending_;
            writing_.clear();
            if (ec) {
                outbox_.clear();
                on_read_error();
                return;
            }
            if (!outbox_.empty()) {
                write_next();
                return;
            }
            // After the server's close, the last write was the echo of it.
            if (close_received_) end_socket();
            maybe_finish();
        });
    }

    void end_socket() {
        error_code ignored;
        timer_.cancel();
        if (socket_) socket_->close(ignored);
    }

    void note_error(std::string why) {
        if (group_.stats.first_error.empty()) group_.stats.first_error = std::move(why);
    }

    // The connection is over once its last handler has run: record it, and reconnect when
    // churning.
    void maybe_finish() {
        if (pending_ != 0 || state_ != State::closing) return;
        state_ = State::ended;
        auto& stats = group_.stats;
        stats.bump(stats.open, -1);
        stats.connections.push_back(std::move(record_));
        record_ = {};
        if (group_.churning && !group_.stopping) {
            ++stats.reconnects;
            group_.enqueue_connect(this);
        }
    }

    ClientGroup::Impl& group_;
    const int index_;
    std::optional<Socket> socket_;
    Timer timer_;
    std::string handshake_;  // the upgrade request, then the response as it arrives
    std::array<char, kFirstReadBytes> first_read_;
    ServerFrames frames_;
    std::string writing_;  // the control frames being written
    std::string outbox_;   // control frames queued behind them
    ConnectionRecord record_;
    State state_ = State::idle;
    bool close_received_ = false;
    int pending_ = 0;  // handlers still to run for this connection
    int attempts_ = 0;
    std::int64_t connect_start_ns_ = 0;
};

}  // namespace detail

void ClientGroup::Impl::enqueue_connect(Client* client) {
    waiting.push_back(client);
    if (pump_scheduled) return;
    // Posted, not called: the caller may be a handler of the client's stream, which
    // connect() rebuilds.
    pump_scheduled = true;
    net::post(loop.context(), [this] { pump_connects(); });
}

ChurnClose ClientGroup::Impl::next_close() {
    if (options.churn_close != ChurnClose::alternate) return options.churn_close;
    reset_next = !reset_next;
    return reset_next ? ChurnClose::reset : ChurnClose::handshake;
}

void ClientGroup::Impl::add_open(Client* client) {
    client->open_slot = open_clients.size();
    open_clients.push_back(client);
}

void ClientGroup::Impl::remove_open(Client* client) {
    Client* last = open_clients.back();
    open_clients[client->open_slot] = last;
    last->open_slot = client->open_slot;
    open_clients.pop_back();
}

// A token bucket holding at most 5 ms worth of connections, so a backlog never bursts.
void ClientGroup::Impl::pump_connects() {
    pump_scheduled = false;
    const double rate = options.connect_rate / options.threads;
    const std::int64_t now = now_ns();
    if (rate > 0) {
        const double cap = std::max(1.0, rate * 0.005);
        tokens = std::min(cap, tokens + static_cast<double>(now - refilled_ns) * 1e-9 * rate);
        refilled_ns = now;
    }
    while (!waiting.empty() && !stopping && (rate <= 0 || tokens >= 1)) {
        tokens -= 1;
        Client* client = waiting.front();
        waiting.pop_front();
        client->connect();
    }
    if (waiting.empty() || stopping) return;
    const auto wait_ns = static_cast<std::int64_t>((1 - tokens) / rate * 1e9);
    pacer.expires_after(std::chrono::nanoseconds(std::max<std::int64_t>(wait_ns, 100'000)));
    pump_scheduled = true;
    pacer.async_wait([this](error_code ec) {
        if (!ec) pump_connects();
    });
}

void ClientGroup::Impl::churn_tick() {
    const std::int64_t now = now_ns();
    if (stopping || now >= churn_end_ns) {
        churning = false;
        return;
    }
    const double rate = options.churn_rate / options.threads;
    churn_credit += static_cast<double>(now - churned_ns) * 1e-9 * rate;
    churned_ns = now;
    while (churn_credit >= 1 && !open_clients.empty()) {
        churn_credit -= 1;
        std::uniform_int_distribution<std::size_t> pick(0, open_clients.size() - 1);
        open_clients[pick(rng)]->churn();  // which takes it out of open_clients
    }
    // Credit does not pile up while every client is down.
    churn_credit = std::min(churn_credit, 1.0);
    const auto period =
        std::clamp<std::int64_t>(static_cast<std::int64_t>(1e9 / rate), 1'000'000, 100'000'000);
    churn_timer.expires_after(std::chrono::nanoseconds(period));
    churn_timer.async_wait([this](error_code ec) {
        if (!ec) churn_tick();
    });
}

ClientGroup::ClientGroup(Loop& loop, const Options& options, std::vector<int> indices)
    : impl_(std::make_unique<Impl>(loop, options)) {
    impl_->clients.reserve(indices.size());
    impl_->open_clients.reserve(indices.size());
    for (int index : indices) impl_->clients.push_back(std::make_unique<Client>(*impl_, index));
}

ClientGroup::~ClientGroup() = default;

void ClientGroup::connect_all() {
    impl_->refilled_ns = now_ns();
    for (auto& client : impl_->clients) impl_->waiting.push_back(client.get());
    impl_->pump_connects();
}

void ClientGroup::churn_until(std::int64_t end_ns) {
    if (impl_->options.churn_rate <= 0) return;
    impl_->churning = true;
    impl_->churn_end_ns = end_ns;
    impl_->churned_ns = now_ns();
    impl_->churn_tick();
}

void ClientGroup::close_all() {
    impl_->stopping = true;
    impl_->churning = false;
    impl_->waiting.clear();
    impl_->pacer.cancel();
    impl_->churn_timer.cancel();
    for (auto& client : impl_->clients) client->shut();
}

}  // namespace shardcast::loadgen
