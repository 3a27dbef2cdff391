// WsConnection: one client's WebSocket, on its shard's io_context. The dispatcher's Session
// decides what to write and when; this class performs it.
//
// Beast answers the upgrade. From then on every byte on the socket goes through this class:
// one writer puts control frames and a batch of queued messages into one sendmsg, and one
// reader parses the client's frames from the shard's shared read buffer (ws_frame.hpp).
//
// Thread contract: after hand_off, every member runs on the shard thread.
#include "transport/ws_connection.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket.hpp>
#include <cerrno>
#include <climits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dispatcher/session.hpp"
#include "dispatcher/shard.hpp"
#include "transport/api.hpp"
#include "transport/exact_allocator.hpp"
#include "transport/frame_gather.hpp"
#include "transport/frame_set.hpp"
#include "transport/io_error.hpp"
#include "transport/protocol_v1.hpp"
#include "transport/ws_frame.hpp"

namespace shardcast::transport {
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using dispatcher::RemovalReason;

namespace {

// A socket bound to the shard's io_context by type: its executor is one pointer, where
// tcp::socket's type-erased one takes 48 more bytes in every connection.
using Socket = net::basic_stream_socket<tcp, net::io_context::executor_type>;

// Messages one write may carry: a busy client gets many per system call.
constexpr std::size_t kMaxFramesPerWrite = 256;
// With the pong, ping, reply and close frames that may ride along.
constexpr std::size_t kMaxFrames = kMaxFramesPerWrite + 4;
// A refresh costs a signature check on the shard thread: one a second is plenty for a
// client whose token lasts minutes, and bounds what a client can make the shard spend.
constexpr std::chrono::seconds kMinRefreshInterval{1};

// The steady-clock moment a token with this exp stops holding, leeway included.
dispatcher::Clock::time_point expiry_of(std::optional<std::int64_t> exp,
                                        std::chrono::seconds leeway) {
    if (!exp) {
        return dispatcher::Clock::time_point::max();
    }
    const auto now = std::chrono::system_clock::now();
    const auto left = std::chrono::seconds(*exp) + leeway -
                      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch());
    // Far-off expiries are never reached, and would overflow a nanosecond clock.
    if (left > std::chrono::hours(24 * 365 * 10)) {
        return dispatcher::Clock::time_point::max();
    }
    return dispatcher::Clock::now() + left;
}
static_assert(ws::FrameGather::scratch_bytes(kMaxFrames) <= dispatcher::Shard::kWriteScratchBytes);
static_assert(ws::FrameGather::iovec_count(kMaxFrames) <= IOV_MAX);

// What a connection holds only now and then: the token's info claim, the resume point until
// the session is attached, the rest of a write the kernel did not take, and the pong, reply
// and close frames owed. An idle connection carries none of it (about 200 bytes): it is
// allocated on first use and freed once it holds nothing.
struct Occasional {
    std::string info;                   // sent along with upstream frames
    std::optional<ResumePoint> resume;  // until the session is attached
    // What the kernel did not take of the write in flight: its scratch bytes, copied, and
    // the whole rest as buffers (pointing into tail_bytes and the session's payloads).
    std::string tail_bytes;
    std::vector<net::const_buffer> tail;
    std::string pong;   // payload of the pong owed
    std::string close;  // payload of our close frame
    // v1 control frames owed ({"refreshed":...}, {"gap":...}), oldest first; the front is in
    // flight while FrameKind::reply is.
    std::vector<std::string> replies;

    bool holds_nothing() const {
        return info.empty() && !resume && tail.empty() && pong.empty() && close.empty() &&
               replies.empty();
    }
};

class WsConnection final : public dispatcher::Session {
public:
    WsConnection(dispatcher::Shard& shard,
                 ClientIdentity identity,
                 ConnectionLimits::Slot slot,
                 Socket socket,
                 SessionContext& context)
        : Session(shard, std::move(identity.client_id)),
          socket_(std::move(socket)),
          reader_(shard.config().max_message_size),
          context_(context),
          budget_(context.partial_budgets[shard.index()]),
          slot_(std::move(slot)),
          frame_limits_(context.limits),
          v1_(identity.v1) {
        set_expiry(expiry_of(identity.exp, context.verifier.leeway()));
        if (!identity.info.empty() || identity.resume) {
            occasional().info = std::move(identity.info);
            occasional().resume = std::move(identity.resume);
        }
    }
    WsConnection(const WsConnection&) = delete;
    WsConnection& operator=(const WsConnection&) = delete;
    // A closing connection gave its partial bytes back already, so one that outlives the server
    // (its session kept by a stopped shard until the dispatcher goes) touches no budget.
    ~WsConnection() override {
        if (partial_bytes_ != 0) {
            budget_.add(-static_cast<std::int64_t>(partial_bytes_));
        }
    }

    void run(UpgradeRequest request) {
        HttpStats& stats = context_.stats;
        if (auto result = shard().attach(shared_from_this());
            result != dispatcher::Shard::Attach::attached) {
            refuse(std::move(request), result, stats);
            return;
        }
        // What the client missed goes into its queue now, before anything delivered later.
        if (occasional_ && occasional_->resume) {
            const ResumePoint& resume = *occasional_->resume;
            shard().resume(*this, resume.since, resume.epoch);
            occasional_->resume.reset();
        }
        stats.record(Route::websocket, 101);
        handshake_ = std::make_unique<websocket::stream<Socket>>(std::move(socket_));
        handshake_->set_option(
            websocket::stream_base::decorator([v1 = v1_](websocket::response_type& res) {
                res.set(http::field::server, "shardcast");
                if (v1) res.set(http::field::sec_websocket_protocol, kProtocolV1);
            }));
        handshake_->async_accept(request,
                                 [self = self()](beast::error_code ec) { self->on_accept(ec); });
    }

    bool socket_open() const override {
        return handshake_ ? handshake_->next_layer().is_open() : socket_.is_open();
    }

private:
    std::shared_ptr<WsConnection> self() {
        return std::static_pointer_cast<WsConnection>(shared_from_this());
    }

    // The shard would not take this session (max_per_client reached, or stopping): answer
    // the upgrade with a plain HTTP error instead.
    void refuse(UpgradeRequest request, dispatcher::Shard::Attach result, HttpStats& http_stats) {
        const bool stopping = result == dispatcher::Shard::Attach::stopping;
        http_stats.record(Route::websocket, stopping ? 503 : 409);
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
        http::async_write(socket_, *res,
                          [self = self(), res, &http_stats](beast::error_code ec, std::size_t) {
                              if (ec) http_stats.record_drop(DropReason::response_unwritten);
                              self->abort();
                          });
    }

    // Beast has written the 101; the socket comes back here and Beast's stream goes away.
    void on_accept(beast::error_code ec) {
        socket_ = std::move(handshake_->next_layer());
        handshake_.reset();
        upgraded_ = !ec;
        if (ec) {
            on_handshake_failed();
            return;
        }
        socket_.non_blocking(true, ec);
        if (const std::size_t bytes = shard().config().socket_send_buffer; bytes != 0) {
            // Config validation keeps this within int. Should it fail, the socket is gone
            // and the first read or write removes the session.
            socket_.set_option(net::socket_base::send_buffer_size(static_cast<int>(bytes)), ec);
        }
        on_open();
        pump();  // a gap notice queued by the resume waited for the 101
        do_read();
    }

    // --- reading ---------------------------------------------------------------------------

    void do_read() {
        socket_.async_wait(
            Socket::wait_read,
            net::bind_allocator(ExactAllocator<void>{},
                                [self = self()](beast::error_code ec) { self->on_readable(ec); }));
    }

    void on_readable(beast::error_code ec) {
        if (read_done_) {
            return;
        }
        if (ec) {
            return read_ended(ended_by(ec));
        }
        const std::span<char> scratch = shard().read_scratch();
        const std::size_t n = socket_.read_some(net::buffer(scratch.data(), scratch.size()), ec);
        if (ec == net::error::would_block || ec == net::error::try_again) {
            return do_read();
        }
        if (ec) {
            return read_ended(ended_by(ec));
        }
        now_ms_ = FrameLimits::now_ms();
        const bool more =
            reader_.feed(scratch.first(n), [this](const ws::Event& event) { on_event(event); });
        track_partial();
        if (more && !read_done_) {
            do_read();
        }
    }

    // What the reader holds for a message the client has not finished counts against the
    // shard's budget, and must be finished within limits.partial_message_timeout. A session
    // that is closing holds none: it reads only for the client's close.
    void track_partial() {
        account_partial();
        if (partial_bytes_ > 0 && state() == State::open &&
            budget_.bytes.load(std::memory_order_relaxed) >
                static_cast<std::int64_t>(context_.limits.partial_message_memory)) {
            on_violation(RemovalReason::partial_message_limit);
        }
        if (state() != State::open && !reader_.discarding()) {
            reader_.discard_messages();
            account_partial();
        }
    }

    void account_partial() {
        const std::size_t held = reader_.idle() ? 0 : reader_.buffer_capacity();
        budget_.add(static_cast<std::int64_t>(held) - static_cast<std::int64_t>(partial_bytes_));
        partial_bytes_ = held;
        if (reader_.idle() || reader_.discarding()) {
            partial_since_ = kNever;
            set_partial_deadline(kNever);
        } else if (partial_since_ == kNever) {
            partial_since_ = dispatcher::Clock::now();
            set_partial_deadline(partial_since_ + context_.limits.partial_message_timeout);
        }
    }

    void on_event(const ws::Event& event) {
        // Once closing, only the client's close (or a broken frame) still matters.
        const bool ending =
            event.kind == ws::Event::Kind::close || event.kind == ws::Event::Kind::error;
        if (state() != State::open && !ending) {
            return;
        }
        if (!frame_limits_.allow(event, now_ms_, context_.limits)) {
            return on_violation(RemovalReason::rate_limited);
        }
        switch (event.kind) {
            case ws::Event::Kind::message:
                if (v1_ && event.message_type == ws::Opcode::text) {
                    if (auto refresh = v1::parse_refresh(event.data)) {
                        on_heard();
                        return on_refresh(*refresh);
                    }
                }
                on_frame(event.data, held().info);
                break;
            case ws::Event::Kind::ping:
                // Only the latest ping needs its pong (RFC 6455, 5.5.3).
                on_heard();
                occasional().pong.assign(event.data);
                pending_.add(ws::FrameKind::pong);
                pump();
                break;
            case ws::Event::Kind::pong:
                on_heard();
                break;
            case ws::Event::Kind::close:
                on_heard();
                // The client started the close: answer it, then we are done. If it answers
                // ours, we are done too.
                if (state() == State::open) {
                    say_last_word(event.close_code == ws::kNoStatus
                                      ? std::string()
                                      : ws::close_payload(event.close_code, {}));
                }
                read_ended(RemovalReason::peer_closed);
                break;
            case ws::Event::Kind::error:
                // A protocol error, bad UTF-8 or an oversized message: tell the client why.
                if (state() == State::open) {
                    say_last_word(ws::close_payload(event.close_code, event.error));
                }
                read_ended(RemovalReason::read_error);
                break;
        }
    }

    // A shardcast.v1 client's new token: for the same id, it moves the session's expiry and
    // is answered with {"refreshed":...} in the stream; anything else closes with 4005.
    void on_refresh(const v1::Refresh& refresh) {
        const auto now = dispatcher::Clock::now();
        if (refreshed_once_ && now - last_refresh_ < kMinRefreshInterval) {
            return on_refresh_refused("refresh refused: more than one a second");
        }
        refreshed_once_ = true;
        last_refresh_ = now;
        if (!refresh.error.empty()) {
            return on_refresh_refused("refresh refused: " + refresh.error);
        }
        const TokenVerdict verdict =
            context_.verifier.verify(refresh.token, std::chrono::system_clock::now());
        if (verdict.error) {
            return on_refresh_refused("refresh refused: " + std::string(enum_name(*verdict.error)));
        }
        if (verdict.claims.sub != client_id()) {
            return on_refresh_refused("refresh refused: the token is for another client id");
        }
        set_expiry(expiry_of(verdict.claims.exp, context_.verifier.leeway()));
        reply(v1::refreshed(verdict.claims.exp));
    }

    // A v1 control frame owed the client, written ahead of the data that waits.
    void reply(std::string text) {
        occasional().replies.push_back(std::move(text));
        if (!in_flight_.has(ws::FrameKind::reply)) {
            pending_.add(ws::FrameKind::reply);
        }
        pump();
    }

    void notify_gap(dispatcher::GapReason reason,
                    std::uint64_t since,
                    std::string_view epoch) override {
        reply(v1::gap(since, epoch, enum_name(reason)));
    }

    // A close frame written at once, without waiting: the session is about to end. Written
    // only when no other write is in flight, so frames never interleave; a client whose close
    // crosses one of our writes sees the connection end without an answer.
    void say_last_word(const std::string& close) {
        if (!in_flight_.empty() || !upgraded_) {
            return;
        }
        const ws::FrameHeader header = ws::frame_header(ws::Opcode::close, close.size());
        const std::array<net::const_buffer, 2> frame{net::buffer(header.bytes.data(), header.size),
                                                     net::buffer(close)};
        beast::error_code ignored;
        net::write(socket_, frame, ignored);
    }

    // The peer left (end of stream, a reset) or we closed the socket: peer_closed; a socket
    // that failed any other way: read_error.
    static RemovalReason ended_by(const beast::error_code& ec) {
        return is_benign(ec) ? RemovalReason::peer_closed : RemovalReason::read_error;
    }

    void read_ended(RemovalReason reason) {
        if (read_done_) {
            return;
        }
        read_done_ = true;
        on_read_end(reason);
    }

    // --- writing ---------------------------------------------------------------------------
    //
    // One writer, pump(): it alone calls sendmsg. Everything that wants a frame written marks
    // it pending and calls pump(); the session's data it takes itself, a batch at a time.
    // Nothing pump() calls writes or calls pump() (a failed write removes the session, which
    // only cuts the socket), so it is never re-entered.

    std::size_t max_batch() const override { return kMaxFramesPerWrite; }

    void data_ready() override { pump(); }

    void start_ping() override {
        pending_.add(ws::FrameKind::ping);
        pump();
    }

    // Written once no data is left to send before it; success means our close frame is out,
    // and the read loop ends when the client answers, which finishes the close.
    void start_close(std::uint16_t code, std::string_view reason) override {
        occasional().close = ws::close_payload(code, reason);
        pending_.add(ws::FrameKind::close);
        pump();
    }

    // Writes until nothing is owed or a write has to wait for the socket; its completion
    // calls pump() again. Most writes complete inside sendmsg, so the loop goes on at once.
    void pump() {
        if (!upgraded_) {
            return;  // nothing goes out before Beast's 101; on_accept pumps
        }
        const auto keep_alive = self();  // a failed write may remove this session
        while (in_flight_.empty() && socket_.is_open()) {
            const std::size_t batch = take_batch();
            if (batch == 0 && pending_.empty()) {
                break;
            }
            if (!write_once(batch)) {
                return;  // finishing asynchronously
            }
        }
        if (in_flight_.empty()) {
            drop_write_buffers();
        }
    }

    // Nothing in flight: an idle connection keeps no write buffers, nor the rest of
    // Occasional once nothing in it is owed.
    void drop_write_buffers() {
        if (!occasional_) {
            return;
        }
        std::string().swap(occasional_->tail_bytes);
        std::vector<net::const_buffer>().swap(occasional_->tail);
        if (occasional_->holds_nothing()) {
            occasional_.reset();
        }
    }

    Occasional& occasional() {
        if (!occasional_) {
            occasional_ = std::make_unique<Occasional>();
        }
        return *occasional_;
    }
    // For reading: an absent Occasional reads as an empty one.
    const Occasional& held() const { return occasional_ ? *occasional_ : kNothing; }

    // One sendmsg laid out in the shard's write scratch: pong, ping and reply first (small,
    // and owed promptly), then the batch, or a close frame once no data is left to send
    // before it. True when the write is over (done or failed); false when the kernel took
    // only part, whose rest is copied out of the scratch and finished asynchronously.
    bool write_once(std::size_t batch) {
        std::array<iovec, ws::FrameGather::iovec_count(kMaxFrames)> iov;
        ws::FrameGather frames(shard().write_scratch(), iov);
        if (pending_.take(ws::FrameKind::pong)) {
            frames.add(ws::Opcode::pong, held().pong);
            in_flight_.add(ws::FrameKind::pong);
        }
        if (pending_.take(ws::FrameKind::ping)) {
            frames.add(ws::Opcode::ping, {});
            in_flight_.add(ws::FrameKind::ping);
        }
        if (pending_.take(ws::FrameKind::reply)) {
            frames.add(ws::Opcode::text, held().replies.front());
            in_flight_.add(ws::FrameKind::reply);
        }
        if (batch > 0) {
            add_data(frames, batch);
            in_flight_.add(ws::FrameKind::data);
        } else if (pending_.take(ws::FrameKind::close)) {
            frames.add(ws::Opcode::close, held().close);
            in_flight_.add(ws::FrameKind::close);
        }
        const std::span<const iovec> gather = frames.iovecs();
        msghdr message{};
        message.msg_iov = const_cast<iovec*>(gather.data());
        message.msg_iovlen = gather.size();
        ssize_t sent;
        do {
            sent = ::sendmsg(socket_.native_handle(), &message, MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            written(false);
            return true;
        }
        const std::size_t done = sent < 0 ? 0 : static_cast<std::size_t>(sent);
        if (done == frames.bytes()) {
            written(true);
            return true;
        }
        Occasional& rest = occasional();
        frames.rest(done, rest.tail_bytes, rest.tail);
        net::async_write(socket_, rest.tail, [self = self()](beast::error_code ec, std::size_t) {
            self->written(!ec);
            self->pump();
        });
        return false;
    }

    // The batch's messages, bare or, for a shardcast.v1 client, as
    // {"data":<JSON value>,"offset":...,"epoch":...}.
    void add_data(ws::FrameGather& frames, std::size_t batch) const {
        for (std::size_t i = 0; i < batch; ++i) {
            const dispatcher::Content& message = in_flight(i);
            if (v1_) {
                std::array<char, v1::kMaxDataAfter> after;
                const std::string* epoch = in_flight_epoch(i);
                const std::size_t n = v1::data_after(after.data(), in_flight_offset(i),
                                                     epoch != nullptr ? *epoch : shard().epoch());
                frames.add(ws::Opcode::text, v1::kDataBefore, message.json(),
                           std::string_view(after.data(), n));
            } else {
                frames.add(ws::Opcode::text, message.text());
            }
        }
    }

    // The write in flight is over: each kind of frame it carried is settled.
    void written(bool ok) {
        const ws::FrameSet done = std::exchange(in_flight_, {});
        // A ping that arrived during this write has replaced the payload its pong must echo.
        if (done.has(ws::FrameKind::pong) && !pending_.has(ws::FrameKind::pong) && occasional_) {
            occasional_->pong.clear();
        }
        if (done.has(ws::FrameKind::reply)) {
            std::vector<std::string>& replies = occasional_->replies;
            replies.erase(replies.begin());
            if (!replies.empty()) {
                pending_.add(ws::FrameKind::reply);
            }
        }
        if (done.has(ws::FrameKind::data)) {
            batch_written(ok);
        }
        if (done.has(ws::FrameKind::ping)) {
            on_ping_done(ok);
        }
        if (done.has(ws::FrameKind::close) && !ok) {
            abort();
            finish_close();
        }
    }

    // Cuts the socket now. Pending operations complete with errors and are ignored.
    void abort() override {
        beast::error_code ignored;
        Socket& socket = handshake_ ? handshake_->next_layer() : socket_;
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        socket.close(ignored);
    }

    static constexpr dispatcher::Clock::time_point kNever = dispatcher::Clock::time_point::max();
    static inline const Occasional kNothing;

    Socket socket_;
    // Only while Beast answers the upgrade; it holds the socket meanwhile.
    std::unique_ptr<websocket::stream<Socket>> handshake_;
    ws::FrameReader reader_;
    SessionContext& context_;
    PartialBudget& budget_;              // the shard's, for unfinished messages
    const ConnectionLimits::Slot slot_;  // this connection's place in the limits
    FrameLimits frame_limits_;
    std::size_t partial_bytes_ = 0;                         // counted in budget_
    dispatcher::Clock::time_point partial_since_ = kNever;  // the unfinished message's start
    dispatcher::Clock::time_point last_refresh_{};
    std::unique_ptr<Occasional> occasional_;
    std::uint32_t now_ms_ = 0;  // when the current read began, for the limits
    ws::FrameSet pending_;      // owed, not yet written; data is the session's to say
    ws::FrameSet in_flight_;    // carried by the write under way
    bool refreshed_once_ = false;
    bool read_done_ = false;
    const bool v1_;          // shardcast.v1: data goes out as {"data":...}
    bool upgraded_ = false;  // Beast wrote the 101: frames may follow
};

}  // namespace

void hand_off(dispatcher::Shard& shard,
              ClientIdentity identity,
              ConnectionLimits::Slot slot,
              tcp::socket socket,
              UpgradeRequest request,
              SessionContext& context) {
    HttpStats& stats = context.stats;
    // Re-home the descriptor on the shard's io_context: from here on only the shard thread
    // touches this socket.
    beast::error_code ec;
    const auto protocol = socket.local_endpoint(ec).protocol();
    if (ec) {
        return stats.record_drop(DropReason::handoff_failed);  // the client is already gone
    }
    const int fd = socket.release(ec);
    if (ec) {
        return stats.record_drop(DropReason::handoff_failed);
    }
    Socket moved(shard.io_context());
    moved.assign(protocol, fd, ec);
    if (ec) {
        ::close(fd);
        return stats.record_drop(DropReason::handoff_failed);
    }
    auto connection = std::make_shared<WsConnection>(shard, std::move(identity), std::move(slot),
                                                     std::move(moved), context);
    net::post(shard.io_context(), [connection, request = std::move(request)]() mutable {
        connection->run(std::move(request));
    });
}

}  // namespace shardcast::transport
