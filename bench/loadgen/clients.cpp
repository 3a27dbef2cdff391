// The WebSocket clients of ClientGroup. One of the two files of loadgen that include Beast.
//
// A Client is owned by its group, not by shared_ptr: with tens of thousands of clients the
// group's vector is the cheapest owner, and every handler that captures `this` runs on the
// group's Loop, which outlives them all (the Loop is joined before the group is destroyed).
// The websocket stream is rebuilt for every connection, only ever by the group's connection
// pacer (a posted or timer handler), never inside one of the stream's own handlers.
#include "bench/loadgen/clients.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <deque>
#include <optional>
#include <random>
#include <string>

#include "bench/loadgen/message.hpp"

namespace shardcast::loadgen {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using boost::system::error_code;
// The io_context's own executor rather than any_io_executor: a read completes for every
// message, and the polymorphic executor's copies were a visible share of its cost.
using Socket = net::basic_stream_socket<tcp, net::io_context::executor_type>;

// Bounds the upgrade and the closing handshake; a connection once open has no idle timeout,
// since the run's own deadline ends it.
constexpr std::chrono::seconds kHandshakeTimeout{5};
// A client only ever writes pongs and a close frame: a small write buffer saves memory.
constexpr std::size_t kWriteBufferBytes = 256;

}  // namespace

namespace detail {
class Client;
}  // namespace detail
using detail::Client;

struct ClientGroup::Impl {
    Impl(Loop& loop, const Options& options)
        : loop(loop),
          options(options),
          stats(loop.stats()),
          server(net::ip::make_address_v4(options.host), options.port),
          host_header(options.host + ":" + std::to_string(options.port)),
          streams(options.publishes() ? static_cast<std::size_t>(options.publishers) : 0),
          pacer(loop.context()),
          churn_timer(loop.context()) {}

    void enqueue_connect(Client* client);
    void pump_connects();
    void churn_tick();
    void add_open(Client* client);
    void remove_open(Client* client);

    Loop& loop;
    const Options& options;
    LoopStats& stats;
    tcp::endpoint server;
    std::string host_header;
    std::size_t streams;  // StreamChecks per connection: one per publisher
    std::vector<std::unique_ptr<Client>> clients;
    std::vector<Client*> open_clients;  // the ones churn may pick, in no order

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
    std::minstd_rand rng{12345};

    bool churning = false;
    bool stopping = false;
};

namespace detail {

class Client {
public:
    Client(ClientGroup::Impl& group, int index)
        : group_(group), index_(index), target_("/ws/" + client_id(index)) {}

    // Where this client sits in the group's open_clients while it is open.
    std::size_t open_slot = 0;

    // Starts one connection attempt: TCP connect, then the upgrade.
    void connect() {
        state_ = State::connecting;
        connect_start_ns_ = now_ns();
        ws_.emplace(group_.loop.context());
        ws_->set_option(websocket::stream_base::timeout{kHandshakeTimeout,
                                                        websocket::stream_base::none(), false});
        ws_->write_buffer_bytes(kWriteBufferBytes);
        ws_->set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
            req.set(beast::http::field::user_agent, "shardcast-loadgen");
        }));
        auto& socket = beast::get_lowest_layer(*ws_);
        error_code ec;
        socket.open(tcp::v4(), ec);
        if (!ec) bind_source(socket, ec);
        if (ec) {
            connect_failed();
            return;
        }
        ++pending_;
        socket.async_connect(group_.server, [this](error_code ec) { on_connect(ec); });
    }

    // Churn: ends an open connection the way the options say, then reconnects.
    void churn() {
        if (state_ != State::open) return;
        state_ = State::closing;
        group_.remove_open(this);
        record_.close_ns = now_ns();
        record_.churned = true;
        if (group_.options.churn_close == ChurnClose::handshake) {
            ++pending_;
            ws_->async_close(websocket::close_code::normal, [this](error_code) {
                --pending_;
                maybe_finish();
            });
        } else {
            // SO_LINGER 0 turns close into a reset: no FIN, no TIME_WAIT, a vanished client.
            auto& socket = beast::get_lowest_layer(*ws_);
            error_code ignored;
            socket.set_option(net::socket_base::linger(true, 0), ignored);
            socket.close(ignored);
        }
    }

    // The run is over: cancel whatever is pending. A connection still open counts as open at
    // the end.
    void shut() {
        if (!ws_) return;
        error_code ignored;
        beast::get_lowest_layer(*ws_).close(ignored);
    }

private:
    enum class State { idle, connecting, open, closing, ended };

    void bind_source(Socket& socket, error_code& ec) {
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
        setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
        socket.bind(tcp::endpoint(source, 0), ec);
    }

    void on_connect(error_code ec) {
        --pending_;
        if (ec || group_.stopping) {
            connect_failed();
            return;
        }
        ++pending_;
        ws_->async_handshake(group_.host_header, target_,
                             [this](error_code ec) { on_handshake(ec); });
    }

    void on_handshake(error_code ec) {
        --pending_;
        if (ec || group_.stopping) {
            connect_failed();
            return;
        }
        const std::int64_t now = now_ns();
        auto& stats = group_.stats;
        stats.connect.record(now - connect_start_ns_);
        if (attempts_++ == 0) stats.bump(stats.connects_done);
        stats.bump(stats.open);
        state_ = State::open;
        record_ = ConnectionRecord{index_, now, 0, false, {}};
        record_.streams.resize(group_.streams);
        group_.add_open(this);
        do_read();
    }

    void connect_failed() {
        auto& stats = group_.stats;
        if (!group_.stopping) ++stats.connect_failures;
        if (attempts_++ == 0) stats.bump(stats.connects_done);
        state_ = State::ended;
        error_code ignored;
        beast::get_lowest_layer(*ws_).close(ignored);
    }

    void do_read() {
        ++pending_;
        ws_->async_read(buffer_, [this](error_code ec, std::size_t) { on_read(ec); });
    }

    void on_read(error_code ec) {
        --pending_;
        if (!ec) {
            on_message(now_ns());
            buffer_.consume(buffer_.size());
            do_read();
            return;
        }
        if (state_ == State::open) {
            // Neither churn nor the end of the run closed it: the server did.
            if (!group_.stopping) {
                ++group_.stats.unexpected_closes;
                if (ec == websocket::error::closed) {
                    group_.stats.last_close_code = ws_->reason().code;
                }
                record_.close_ns = now_ns();
            }
            state_ = State::closing;
            group_.remove_open(this);
        }
        maybe_finish();
    }

    void on_message(std::int64_t now) {
        auto& stats = group_.stats;
        const auto data = buffer_.data();
        const std::string_view text(static_cast<const char*>(data.data()), data.size());
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
    const std::string target_;
    std::optional<websocket::stream<Socket>> ws_;
    beast::flat_buffer buffer_;
    ConnectionRecord record_;
    State state_ = State::idle;
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
