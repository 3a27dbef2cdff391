// Shard, the data path: publish into the inbox, the drain turn, and delivery to sessions
// (and, in a cluster, over the link). Sessions, ticks and the stop live in shard_*.cpp.
#include "dispatcher/shard.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cassert>

#include "dispatcher/forwarding.hpp"
#include "dispatcher/session.hpp"

namespace shardcast::dispatcher {
namespace {

std::chrono::milliseconds tick_period_for(const SessionConfig& c) {
    auto shortest = std::min({c.heartbeat_interval, c.heartbeat_timeout, c.send_time_limit,
                              c.close_timeout, c.cleanup_interval});
    return std::clamp(shortest / 8, std::chrono::milliseconds{5}, std::chrono::milliseconds{500});
}

}  // namespace

Shard::Shard(std::size_t index, const DispatcherConfig& config)
    : index_(index),
      config_(config),
      work_(io_context_.get_executor()),
      tick_timer_(io_context_),
      stop_timer_(io_context_),
      write_delay_timer_(io_context_),
      tick_period_(tick_period_for(config.session)) {}

Shard::~Shard() { join(); }

void Shard::start() {
    const auto now = Clock::now();
    stats_.last_turn_ns.store(now.time_since_epoch().count(), std::memory_order_relaxed);
    next_sweep_ = now + config_.session.cleanup_interval;
    // The timer is armed before the thread exists, so no other thread touches it.
    schedule_tick();
    thread_ = std::thread([this] {
        const Outbound::ThreadCache cache;
        io_context_.run();
    });
}

bool Shard::publish(Command&& command) {
    const Clock::time_point enqueued = command.enqueued;
    const Inbox::PushResult result = inbox_.push(std::move(command));
    if (result.schedule_drain) {
        // The shard had nothing scheduled, so this command begins its backlog. Stored before
        // the post: the turn it schedules overwrites it, never the other way round.
        queue_delay_.start(enqueued);
        // Counted on the shard's thread, the only writer of its stats: this turn wakes it,
        // where the turns drain() posts itself do not.
        boost::asio::post(io_context_, [this] {
            stats_.wakeups.add();
            drain();
        });
    }
    return result.queued;
}

// One turn: take everything visible, in stamp order, deliver up to the budget, and come back
// through the io_context if more is left so socket I/O is never starved.
void Shard::drain() {
    assert(on_shard_thread());
    const Clock::time_point began = Clock::now();
    arrivals_.collect(inbox_);
    stats_.queue_depth_peak.observe(static_cast<std::int64_t>(arrivals_.waiting()));
    for (std::size_t budget = config_.drain_budget; arrivals_.has_next() && budget > 0; --budget) {
        Command& command = arrivals_.next();
        deliver(command);
        command.payload.reset();  // release the message now, not at the end of the batch
    }
    stats_.collected.set(static_cast<std::int64_t>(arrivals_.undelivered()));
    end_turn_writes();
    release_acks();
    cut_slow_readers();
    if (!arrivals_.empty()) {
        queue_delay_.oldest(arrivals_.oldest_enqueued());
        boost::asio::post(io_context_, [this] { drain(); });
        return;
    }
    arrivals_.release_delivered();
    // Cleared before the inbox drops its wake-up flag: a producer that wakes the shard after
    // that starts the next backlog after this store, so its start is never lost.
    queue_delay_.clear();
    if (inbox_.finish_drain()) {
        // Commands came in after this turn's last pop found the inbox empty, so none has
        // waited longer than the turn; no producer writes while the flag is ours again.
        queue_delay_.oldest(began);
        boost::asio::post(io_context_, [this] { drain(); });
    }
}

// Corking: everything this turn queued for a session leaves in one write. With a write
// delay, the first request arms one timer for the shard and every session that asks before
// it fires joins that flush: one timer per shard, not one per session.
void Shard::end_turn_writes() {
    if (write_requests_.empty() || write_delay_armed_) {
        return;
    }
    if (config_.session.write_delay.count() == 0) {
        flush_write_requests();
        return;
    }
    write_delay_armed_ = true;
    write_delay_timer_.expires_after(config_.session.write_delay);
    write_delay_timer_.async_wait([this](boost::system::error_code ec) {
        write_delay_armed_ = false;
        if (!ec) {
            flush_write_requests();
        }
    });
}

// After the turn's writes have started: an ack tells its producer the messages before it
// are on their clients' sockets or queued behind them, not still in the inbox.
void Shard::release_acks() {
    for (const auto& ack : taken_acks_) {
        ack->taken();
    }
    taken_acks_.clear();
}

void Shard::flush_write_requests() {
    for (const auto& session : write_requests_) {
        session->write_queued();
    }
    write_requests_.clear();
}

void Shard::deliver(Command& command) {
    if (counts(command, index_)) {
        stats_.add_published(command.origin);
        // Once the sessions are closing, a message reaches nobody here or elsewhere.
        if (phase_ == Phase::closing || phase_ == Phase::stopped) {
            stats_.add_failed(FailureReason::shutdown);
            return;
        }
    }
    switch (command.kind) {
        case Command::Kind::send:
            deliver_send(command);
            break;
        case Command::Kind::broadcast:
            deliver_broadcast(command);
            break;
        case Command::Kind::disconnect:
            deliver_disconnect(command);
            break;
        case Command::Kind::claim:
            replace_older(command);
            break;
        case Command::Kind::resumed:
            finish_resume(command);
            break;
        case Command::Kind::ack:
            // Once the sessions are closing, what came before the ack reached no one.
            if (phase_ == Phase::running || phase_ == Phase::draining) {
                taken_acks_.push_back(std::move(command.ack));
            }
            break;
    }
    remove_overflowed();
}

Position Shard::position_for(const Command& command) {
    if (sequenced_) {
        return command.position;
    }
    if (!keeps_history()) {
        return {};  // no resume without history: frames carry no offset
    }
    return {++offset_, nullptr};
}

// To the id's sessions here, and over the link when other nodes may hold it. Kept in history
// either way, so a client away now gets it when it resumes. In a sequenced cluster, what is
// accepted here goes to the stream first and is delivered when it comes back (an echo).
void Shard::deliver_send(Command& command) {
    if (sequenced_ && command.origin != PublishKind::bus) {
        if (!link_->forward(command.client_id, command.payload)) {
            stats_.add_failed(FailureReason::bus_unavailable);
        }
        return;
    }
    auto it = sessions_.find(command.client_id);
    const bool held_here = it != sessions_.end();
    const bool forward =
        forwards(command, held_here, link_ != nullptr, config_.session.on_duplicate);
    Position position = position_for(command);
    if (keeps_history()) {
        history_.record_send(command.client_id, {position.offset, command.payload, Clock::now()});
    }
    if (held_here) {
        // Moved when nothing else needs it: a copy is a locked increment and a locked
        // decrement on a count the producer's core last wrote.
        deliver_to(it->second,
                   Outbound(forward ? command.payload : std::move(command.payload),
                            command.enqueued, &stats_.outbound_bytes, std::move(position)));
    }
    if (forward) {
        if (!link_->forward(command.client_id, command.payload)) {
            stats_.add_failed(FailureReason::bus_unavailable);
        }
    } else if (!held_here && !command.echo) {  // an echo's live copy went to the other nodes
        if (keeps_history()) {
            stats_.held.add();
        } else {
            stats_.add_failed(FailureReason::no_session);
        }
    }
}

void Shard::deliver_broadcast(const Command& command) {
    if (sequenced_ && command.origin != PublishKind::bus) {
        if (index_ == 0 && !link_->forward_broadcast(command.payload, command.client_id)) {
            stats_.add_failed(FailureReason::bus_unavailable);
        }
        return;
    }
    if (forwards_broadcast(command, index_, link_ != nullptr) &&
        !link_->forward_broadcast(command.payload, command.client_id)) {
        stats_.add_failed(FailureReason::bus_unavailable);
    }
    Position position = position_for(command);
    if (keeps_history()) {
        history_.record_broadcast(command.client_id,
                                  {position.offset, command.payload, Clock::now()});
    }
    const Outbound message(command.payload, command.enqueued, &stats_.outbound_bytes,
                           std::move(position));
    for (const auto& [id, list] : sessions_) {
        if (command.client_id.empty() || id != command.client_id) {
            deliver_to(list, message);
        }
    }
}

void Shard::deliver_disconnect(const Command& command) {
    const std::string_view reason =
        command.payload ? std::string_view(*command.payload) : std::string_view{};
    auto it = sessions_.find(command.client_id);
    const bool held_here = it != sessions_.end();
    if (held_here) {
        const SessionList doomed = it->second;
        for (const auto& session : doomed) {
            remove(*session, RemovalReason::disconnected, command.close_code, reason);
        }
    }
    if (forwards(command, held_here, link_ != nullptr, config_.session.on_duplicate)) {
        link_->forward_disconnect(command.client_id, command.close_code, reason);
    }
}

void Shard::deliver_to(const SessionList& sessions, const Outbound& message) {
    for (const auto& session : sessions) {
        if (!session->deliver(message)) {
            overflowed_.push_back(session);
        }
    }
}

// Sessions that overflowed are removed after the delivery loop, never inside it: removal
// edits the map the loop is walking.
void Shard::remove_overflowed() {
    for (const auto& session : overflowed_) {
        remove(*session, RemovalReason::overflow);
    }
    overflowed_.clear();
}

// The memory a shard's messages hold is bounded by cutting the clients that hold it up, the
// most behind first, not by refusing every producer: a client that does not read must not
// cost the others their messages. Slowness is judged by bytes waiting for the client.
void Shard::cut_slow_readers() {
    const std::size_t limit = config_.max_outbound_bytes;
    auto excess = [&] { return stats_.outbound_bytes.load() - static_cast<std::int64_t>(limit); };
    if (limit == 0 || excess() <= 0) {
        return;
    }
    std::vector<std::shared_ptr<Session>> behind;
    for (const auto& [id, list] : sessions_) {
        for (const auto& session : list) {
            if (session->queued_bytes() > 0) behind.push_back(session);
        }
    }
    std::sort(behind.begin(), behind.end(),
              [](const auto& a, const auto& b) { return a->queued_bytes() > b->queued_bytes(); });
    for (const auto& session : behind) {
        if (excess() <= 0) {
            break;
        }
        remove(*session, RemovalReason::slow_reader);
    }
}

}  // namespace shardcast::dispatcher
