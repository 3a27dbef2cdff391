#include "dispatcher/session.hpp"

#include <algorithm>
#include <atomic>
#include <cassert>

#include "dispatcher/close_code.hpp"
#include "dispatcher/shard.hpp"

namespace shardcast::dispatcher {
namespace {

// One write carries at most this many bytes of messages (but always at least one message),
// so one batch cannot hold the socket for long while the next is waiting.
constexpr std::size_t kMaxBatchBytes = 256 * 1024;

// Removals whose close is preceded by one more write of what the session had queued.
constexpr bool announced(RemovalReason reason) {
    return reason == RemovalReason::disconnected || reason == RemovalReason::replaced ||
           reason == RemovalReason::server_shutdown || reason == RemovalReason::token_expired;
}

// Whether the client is told why, with a close frame, or its socket is just cut: a peer that
// broke the connection, or does not read, cannot be told anything.
constexpr bool told_why(RemovalReason reason) {
    switch (reason) {
        case RemovalReason::peer_closed:
        case RemovalReason::write_error:
        case RemovalReason::read_error:
        case RemovalReason::send_timeout:
        case RemovalReason::handshake_failed:
        case RemovalReason::slow_reader:
            return false;
        default:
            return true;
    }
}

std::uint64_t next_serial() {
    static std::atomic<std::uint64_t> last{0};
    return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

}  // namespace

Session::Session(Shard& shard, std::string client_id)
    : shard_(shard),
      client_id_(std::move(client_id)),
      attached_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count()),
      serial_(next_serial()),
      last_heard_(Clock::now()),
      next_ping_(last_heard_ + shard.config().heartbeat_interval) {}

bool Session::on_shard_thread() const { return shard_.on_shard_thread(); }

bool Session::deliver(const Outbound& message) {
    assert(on_shard_thread());
    const SessionConfig& config = shard_.config();
    ShardStats& stats = shard_.stats();
    if (state_ == State::closing || state_ == State::closed) {
        stats.add_failed(FailureReason::session_closed);
        return true;
    }
    if (replayed(message)) {
        return true;  // the client has it from its resume
    }
    const std::size_t size = message.size();
    // The limit is on what waits: the batch being written is already on its way, and a
    // replay, at the front, has an allowance of its own (deliver_replay). Both are prefixes.
    auto waiting = [this] { return queue_.bytes() - std::max(in_flight_bytes_, replay_bytes_); };
    const std::size_t protected_front = std::max<std::size_t>(in_flight_, replay_left_);
    if (waiting() + size > config.buffer_limit) {
        if (config.overflow == OverflowPolicy::terminate) {
            stats.add_failed(FailureReason::session_closed);
            return false;
        }
        // drop_oldest. A message larger than the whole buffer can never fit: it alone is
        // dropped, not the messages waiting ahead of it.
        if (size > config.buffer_limit) {
            stats.add_failed(FailureReason::overflow_dropped);
            return true;
        }
        // Make room from the front; the write in flight is already on the wire.
        while (queue_.size() > protected_front && waiting() + size > config.buffer_limit) {
            queue_.take(protected_front);
            stats.add_failed(FailureReason::overflow_dropped);
        }
    }
    queue_.push(message);
    if (state_ == State::open && in_flight_ == 0 && !write_requested_ && !resuming_) {
        write_requested_ = true;
        shard_.request_write(shared_from_this());
    }
    return true;
}

void Session::write_queued() {
    assert(on_shard_thread());
    write_requested_ = false;
    if (state_ == State::open && in_flight_ == 0 && !queue_.empty() && !resuming_) {
        data_ready();
    }
}

void Session::deliver_replay(const Outbound& message) {
    assert(on_shard_thread());
    if (state_ == State::closing || state_ == State::closed) {
        shard_.stats().add_failed(FailureReason::session_closed);
        return;
    }
    assert(replay_left_ == queue_.size());  // a replay goes ahead of anything else
    queue_.push(message);
    ++replay_left_;
    replay_bytes_ += message.size();
    if (state_ == State::open && in_flight_ == 0 && !write_requested_ && !resuming_) {
        write_requested_ = true;
        shard_.request_write(shared_from_this());
    }
}

bool Session::finish_resume(std::vector<Outbound> replay, Position through) {
    assert(on_shard_thread());
    assert(in_flight_ == 0);  // nothing is written while resuming
    resuming_ = false;
    replayed_through_ = std::move(through);
    OutboundQueue meanwhile;
    std::swap(meanwhile, queue_);
    for (const Outbound& message : replay) {
        deliver_replay(message);
    }
    while (!meanwhile.empty()) {
        if (!deliver(meanwhile.pop())) {
            return false;
        }
    }
    return true;
}

// One the stream could not number (offset 0) is in no replay.
bool Session::replayed(const Outbound& message) const {
    return message.offset() != 0 && message.offset() <= replayed_through_.offset &&
           message.epoch() != nullptr && replayed_through_.epoch &&
           *message.epoch() == *replayed_through_.epoch;
}

// As many queued messages as the transport puts into one write, up to kMaxBatchBytes.
std::pair<std::size_t, std::size_t> Session::front_batch() const {
    const std::size_t most = std::min(queue_.size(), std::max<std::size_t>(1, max_batch()));
    std::size_t count = 1;
    std::size_t bytes = queue_.at(0).size();
    while (count < most && bytes + queue_.at(count).size() <= kMaxBatchBytes) {
        bytes += queue_.at(count).size();
        ++count;
    }
    return {count, bytes};
}

std::size_t Session::take_batch() {
    assert(on_shard_thread());
    // A resuming session writes nothing, not even a final batch: a client that saw later
    // messages would resume after the ones still missing.
    const bool writable = state_ == State::open || (state_ == State::closing && final_batch_);
    if (!writable || resuming_ || in_flight_ > 0 || queue_.empty()) {
        return 0;
    }
    final_batch_ = false;
    const auto [count, bytes] = front_batch();
    in_flight_ = static_cast<std::uint32_t>(count);
    in_flight_bytes_ = bytes;
    write_started_ = Clock::now();
    return count;
}

void Session::batch_written(bool ok) {
    assert(on_shard_thread());
    if (in_flight_ == 0) {
        return;  // already settled by a send timeout
    }
    if (state_ != State::open) {
        settle_in_flight(ok ? std::nullopt : std::optional(FailureReason::session_closed));
        return;
    }
    if (!ok) {
        settle_in_flight(FailureReason::write_error);
        shard_.remove(*this, RemovalReason::write_error);
        return;
    }
    settle_in_flight(std::nullopt);
}

// Settles the batch that was in flight: each message counted as sent or as the given
// failure, and its bytes released.
void Session::settle_in_flight(std::optional<FailureReason> failure) {
    ShardStats& stats = shard_.stats();
    if (failure) {
        stats.add_failed(*failure, in_flight_);
    } else {
        stats.writes.add();
        stats.sent.add(in_flight_);
        ++socket_writes_;
        messages_sent_ += in_flight_;
    }
    const auto now = Clock::now();
    for (; in_flight_ > 0; --in_flight_) {
        const Outbound done = queue_.pop();
        if (replay_left_ > 0) {
            --replay_left_;
            replay_bytes_ -= done.size();
        }
        if (!failure) {
            shard_.record_latency(now - done.enqueued());
        }
    }
    in_flight_bytes_ = 0;
}

std::optional<RemovalReason> Session::check(Clock::time_point now) const {
    assert(on_shard_thread());
    const SessionConfig& config = shard_.config();
    if (now - last_heard_ > config.heartbeat_timeout) {
        return state_ == State::handshaking ? RemovalReason::handshake_failed
                                            : RemovalReason::heartbeat_timeout;
    }
    if (state_ != State::open) {
        return std::nullopt;
    }
    if (now >= expires_) {
        return RemovalReason::token_expired;
    }
    if (now >= partial_deadline_) {
        return RemovalReason::message_timeout;
    }
    if (in_flight_ > 0 && now - write_started_ > config.send_time_limit) {
        return RemovalReason::send_timeout;
    }
    return std::nullopt;
}

void Session::ping(Clock::time_point now) {
    assert(on_shard_thread());
    assert(ping_due(now));
    ping_in_flight_ = true;
    next_ping_ = now + shard_.config().heartbeat_interval;
    start_ping();
}

void Session::begin_close(RemovalReason reason, std::uint16_t code, std::string_view text) {
    assert(on_shard_thread());
    assert(state_ == State::handshaking || state_ == State::open);
    const bool was_open = state_ == State::open;
    state_ = State::closing;
    close_deadline_ = Clock::now() + shard_.config().close_timeout;
    drop_queue(reason, was_open);
    if (!told_why(reason)) {
        // Nothing useful can be said to this peer: cut the socket.
        abort();
        finish_close();
        return;
    }
    if (was_open) {
        start_close(code, text);
        return;
    }
    // The client may already hold its 101: close properly once the upgrade is done
    // (on_open), or cut the socket if it fails or overruns close_timeout.
    deferred_close_ = std::make_unique<DeferredClose>(DeferredClose{code, std::string(text)});
}

// A close we announce follows one more write: the one in flight, or, when none is, the front
// of the queue as one write takes it (up to 256 messages and 256 KiB), so what the same turn
// delivered just before the close usually still arrives. Everything after that is dropped
// and counted.
void Session::drop_queue(RemovalReason reason, bool was_open) {
    std::size_t kept = in_flight_;
    if (was_open && announced(reason) && in_flight_ == 0 && !queue_.empty()) {
        final_batch_ = true;
        kept = front_batch().first;
    }
    const std::size_t dropped = queue_.truncate(kept);
    replay_left_ = std::min(replay_left_, kept);
    replay_bytes_ = 0;
    for (std::size_t i = 0; i < replay_left_; ++i) {
        replay_bytes_ += queue_.at(i).size();
    }
    shard_.stats().add_failed(reason == RemovalReason::server_shutdown
                                  ? FailureReason::shutdown
                                  : FailureReason::session_closed,
                              dropped);
    // A write stuck past its limit will never complete well: count it now. Any other write
    // in flight is counted by its own completion.
    if (reason == RemovalReason::send_timeout && in_flight_ > 0) {
        settle_in_flight(FailureReason::send_timeout);
    }
}

bool Session::close_overdue(Clock::time_point now) {
    assert(on_shard_thread());
    if (state_ != State::closing || now < close_deadline_) {
        return false;
    }
    abort();
    return true;
}

void Session::finish_close() {
    assert(on_shard_thread());
    if (state_ == State::closed) {
        return;
    }
    state_ = State::closed;
    shard_.forget(*this);
}

void Session::on_open() {
    assert(on_shard_thread());
    if (state_ == State::closing && deferred_close_) {
        const DeferredClose close = std::move(*deferred_close_);
        deferred_close_.reset();
        start_close(close.code, close.text);
        return;
    }
    if (state_ != State::handshaking) {
        return;
    }
    state_ = State::open;
    last_heard_ = Clock::now();
    next_ping_ = last_heard_ + shard_.config().heartbeat_interval;
    if (!queue_.empty() && !resuming_) {
        data_ready();
    }
}

void Session::on_handshake_failed() {
    assert(on_shard_thread());
    if (state_ == State::handshaking) {
        shard_.remove(*this, RemovalReason::handshake_failed);
    } else if (state_ == State::closing) {
        abort();
        finish_close();
    }
}

void Session::on_ping_done(bool ok) {
    assert(on_shard_thread());
    ping_in_flight_ = false;
    if (!ok && state_ == State::open) {
        shard_.remove(*this, RemovalReason::write_error);
    }
}

void Session::on_heard() {
    assert(on_shard_thread());
    last_heard_ = Clock::now();
}

void Session::on_frame(std::string_view data, std::string_view info) {
    assert(on_shard_thread());
    last_heard_ = Clock::now();
    ShardStats& stats = shard_.stats();
    stats.frames_received.add();
    stats.bytes_received.add(data.size());
    if (ClusterLink* link = shard_.link(); link && link->wants_upstream()) {
        link->upstream(client_id_, info, data);
    }
}

void Session::on_violation(RemovalReason reason) {
    assert(on_shard_thread());
    if (state_ == State::open) {
        shard_.remove(*this, reason);
    }
}

void Session::on_refresh_refused(std::string_view why) {
    assert(on_shard_thread());
    if (state_ == State::open) {
        shard_.remove(*this, RemovalReason::refresh_refused, close_code::kRefreshRefused, why);
    }
}

void Session::on_read_end(RemovalReason reason) {
    assert(on_shard_thread());
    switch (state_) {
        case State::handshaking:
        case State::open:
            shard_.remove(*this, reason);
            break;
        case State::closing:
            // The peer answered our close frame (or the socket was cut): we are done.
            abort();
            finish_close();
            break;
        case State::closed:
            break;
    }
}

}  // namespace shardcast::dispatcher
