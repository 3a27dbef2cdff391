#include "dispatcher/shard.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cassert>
#include <iterator>

#include "dispatcher/close_code.hpp"
#include "dispatcher/session.hpp"

namespace shardcast::dispatcher {
namespace {

// Commands moved out of the inbox per pop, and the most one turn pops: a flood of producers
// cannot keep one turn collecting forever. No new collection begins while the batch holds
// kMaxBatch undelivered commands, so a shard that is behind leaves its backlog in the inbox.
constexpr std::size_t kPopChunk = 256;
constexpr std::size_t kMaxBatch = 64 * 1024;
// How often a stopping shard looks at its progress.
constexpr std::chrono::milliseconds kStopPollPeriod{5};

std::chrono::milliseconds tick_period_for(const SessionConfig& c) {
    auto shortest = std::min({c.heartbeat_interval, c.heartbeat_timeout, c.send_time_limit,
                              c.close_timeout, c.cleanup_interval});
    return std::clamp(shortest / 8, std::chrono::milliseconds{5}, std::chrono::milliseconds{500});
}

// A shard's scratch buffer, allocated on first use so a shard that never reads or writes
// holds none.
std::span<char> scratch(std::unique_ptr<char[]>& buffer, std::size_t size) {
    if (!buffer) {
        buffer = std::make_unique_for_overwrite<char[]>(size);
    }
    return {buffer.get(), size};
}

std::uint16_t close_code_for(RemovalReason reason) {
    switch (reason) {
        case RemovalReason::replaced:
            return close_code::kReplaced;
        case RemovalReason::overflow:
            return close_code::kPolicyViolation;
        case RemovalReason::heartbeat_timeout:
            return close_code::kHeartbeatTimeout;
        case RemovalReason::send_timeout:
            return close_code::kSendTimeout;
        case RemovalReason::server_shutdown:
            return close_code::kGoingAway;
        case RemovalReason::token_expired:
            return close_code::kTokenExpired;
        case RemovalReason::refresh_refused:
            return close_code::kRefreshRefused;
        default:
            return close_code::kNormal;
    }
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
    const Inbox::PushResult result = inbox_.push(std::move(command));
    if (result.schedule_drain) {
        boost::asio::post(io_context_, [this] { drain(); });
    }
    return result.queued;
}

// One turn: take everything visible, order it by stamp, deliver up to the budget, and
// come back through the io_context if more is left so socket I/O is never starved.
void Shard::drain() {
    assert(on_shard_thread());
    collect();
    for (std::size_t budget = config_.drain_budget; next_ < batch_.size() && budget > 0; --budget) {
        deliver(batch_[next_]);
        batch_[next_].payload.reset();  // release the message now, not at the end of the batch
        ++next_;
    }
    stats_.collected.set(static_cast<std::int64_t>(batch_.size() - next_ + arrivals_.size()));
    end_turn_writes();
    if (next_ < batch_.size() || !arrivals_.empty()) {
        boost::asio::post(io_context_, [this] { drain(); });
        return;
    }
    batch_.clear();
    next_ = 0;
    if (inbox_.finish_drain()) {
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

void Shard::flush_write_requests() {
    for (const auto& session : write_requests_) {
        session->write_queued();
    }
    write_requests_.clear();
}

// Pops until a pass finds every producer empty, and only then lets what it popped join the
// batch. That is what makes ordering hold across producers: once we have seen a command,
// everything published before it began is visible to the next pass, so both join the batch
// together and the sort orders them. A collection that reaches kMaxBatch pops in one turn
// keeps its arrivals and goes on in the next turn, after socket I/O has had its turn: under
// a flood faster than the shard can pop, delivery waits, and never reorders.
void Shard::collect() {
    if (arrivals_.empty() && batch_.size() - next_ >= kMaxBatch) {
        return;
    }
    if (!pop_arrivals() || arrivals_.empty()) {
        return;
    }
    // Each compaction moves at most as many commands as it drops: one move per delivery.
    if (next_ > 0 && next_ >= batch_.size() - next_) {
        batch_.erase(batch_.begin(), batch_.begin() + static_cast<std::ptrdiff_t>(next_));
        next_ = 0;
    }
    append_in_stamp_order();
    stats_.queue_depth_peak.observe(static_cast<std::int64_t>(batch_.size() - next_));
}

// Pops at most kMaxBatch commands into arrivals_; true once a pass found every producer empty.
bool Shard::pop_arrivals() {
    for (std::size_t popped = 0; popped < kMaxBatch;) {
        const std::size_t n = inbox_.pop_bulk(arrivals_, kPopChunk);
        if (n == 0) {
            return true;
        }
        popped += n;
    }
    return false;
}

// One producer's commands arrive in stamp order; several producers' come grouped by
// producer. Sorting 16-byte keys and moving each command once costs far less than sorting
// the commands themselves, which std::sort swaps many times each.
void Shard::append_in_stamp_order() {
    const auto by_stamp = [](const Command& a, const Command& b) { return a.stamp < b.stamp; };
    const std::size_t first_new = batch_.size();
    if (std::is_sorted(arrivals_.begin(), arrivals_.end(), by_stamp)) {
        std::move(arrivals_.begin(), arrivals_.end(), std::back_inserter(batch_));
    } else {
        order_.clear();
        for (std::size_t i = 0; i < arrivals_.size(); ++i) {
            order_.push_back({arrivals_[i].stamp, i});
        }
        std::sort(order_.begin(), order_.end(),
                  [](const StampOrder& a, const StampOrder& b) { return a.stamp < b.stamp; });
        for (const StampOrder& key : order_) {
            batch_.push_back(std::move(arrivals_[key.index]));
        }
    }
    arrivals_.clear();
    // A producer may take its stamp, then be preempted before it enqueues: its command can
    // arrive a turn after a later-stamped one that is still waiting here.
    const auto first = batch_.begin() + static_cast<std::ptrdiff_t>(next_);
    const auto middle = batch_.begin() + static_cast<std::ptrdiff_t>(first_new);
    if (first != middle && middle->stamp < std::prev(middle)->stamp) {
        std::inplace_merge(first, middle, batch_.end(), by_stamp);
    }
}

// A send, or a broadcast on shard 0: what this shard counts as published, and as failed
// when it is never delivered. Every shard sees every broadcast; shard 0 alone counts it.
bool Shard::counts(const Command& command) const {
    return command.kind == Command::Kind::send ||
           (command.kind == Command::Kind::broadcast && index_ == 0);
}

void Shard::deliver(Command& command) {
    if (counts(command)) {
        stats_.add_published(command.origin);
        // Once the sessions are closing, a message reaches nobody here or elsewhere.
        if (phase_ == Phase::closing || phase_ == Phase::stopped) {
            stats_.add_failed(FailureReason::shutdown);
            return;
        }
    }
    switch (command.kind) {
        case Command::Kind::send: {
            auto it = sessions_.find(command.client_id);
            const bool held_here = it != sessions_.end();
            const bool forward = forwards(command, held_here);
            if (held_here) {
                // Moved when nothing else needs it: a copy is a locked increment and a
                // locked decrement on a count the producer's core last wrote.
                deliver_to(it->second,
                           Outbound(forward ? command.payload : std::move(command.payload),
                                    command.enqueued));
            }
            if (forward) {
                if (!link_->forward(command.client_id, command.payload)) {
                    stats_.add_failed(FailureReason::bus_unavailable);
                }
            } else if (!held_here) {
                stats_.add_failed(FailureReason::no_session);
            }
            break;
        }
        case Command::Kind::broadcast: {
            // Shard 0 alone hands a broadcast to the other nodes.
            if (index_ == 0 && link_ && command.origin != PublishKind::bus &&
                !link_->forward_broadcast(command.payload, command.client_id)) {
                stats_.add_failed(FailureReason::bus_unavailable);
            }
            const Outbound message(command.payload, command.enqueued);
            for (const auto& [id, list] : sessions_) {
                if (command.client_id.empty() || id != command.client_id) {
                    deliver_to(list, message);
                }
            }
            break;
        }
        case Command::Kind::disconnect: {
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
            if (forwards(command, held_here)) {
                link_->forward_disconnect(command.client_id, command.close_code, reason);
            }
            break;
        }
        case Command::Kind::claim:
            replace_older(command);
            break;
    }
    remove_overflowed();
}

// Whether a send or disconnect must also reach other nodes: never for what came from them;
// otherwise when the id is not held here, or always when an id may hold sessions on
// several nodes at once (on_duplicate: allow).
bool Shard::forwards(const Command& command, bool held_here) const {
    return link_ != nullptr && command.origin != PublishKind::bus &&
           (!held_here || config_.session.on_duplicate == DuplicatePolicy::allow);
}

// Another node attached a session of this id: the local ones attached before it lose.
// Times come from different hosts' clocks; a tie goes to the node the claim says.
void Shard::replace_older(const Command& claim) {
    auto it = sessions_.find(claim.client_id);
    if (it == sessions_.end()) {
        return;
    }
    SessionList older;
    for (const auto& session : it->second) {
        const std::int64_t since = session->attached_ns();
        if (since < claim.claim_since_ns ||
            (since == claim.claim_since_ns && claim.claim_wins_ties)) {
            older.push_back(session);
        }
    }
    for (const auto& session : older) {
        remove(*session, RemovalReason::replaced);
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

Shard::Attach Shard::attach(std::shared_ptr<Session> session) {
    assert(on_shard_thread());
    if (phase_ != Phase::running) {
        return Attach::stopping;
    }
    const bool replace = config_.session.on_duplicate == DuplicatePolicy::replace;
    auto it = sessions_.find(session->client_id());
    SessionList old;
    if (it != sessions_.end()) {
        if (replace) {
            old = it->second;
        } else if (it->second.size() >= config_.session.max_per_client) {
            return Attach::too_many;
        }
    }
    // The new session joins before the old ones leave, so the id never looks released.
    SessionList& list = sessions_[session->client_id()];
    const bool first = list.empty();
    list.push_back(session);
    stats_.sessions.add(1);
    stats_.connections.add();
    for (const auto& s : old) {
        remove(*s, RemovalReason::replaced);
    }
    if (link_) {
        if (first) {
            link_->held(session->client_id());
        }
        if (replace) {
            link_->claim(session->client_id(), session->attached_ns());
        }
    }
    return Attach::attached;
}

void Shard::remove(Session& session, RemovalReason reason) {
    remove(session, reason, close_code_for(reason), enum_name(reason));
}

void Shard::remove(Session& session,
                   RemovalReason reason,
                   std::uint16_t code,
                   std::string_view text) {
    assert(on_shard_thread());
    auto it = sessions_.find(session.client_id());
    if (it == sessions_.end()) {
        return;  // already removed: every removal happens once
    }
    SessionList& list = it->second;
    auto pos =
        std::find_if(list.begin(), list.end(), [&](const auto& s) { return s.get() == &session; });
    if (pos == list.end()) {
        return;
    }
    std::shared_ptr<Session> owned = std::move(*pos);
    list.erase(pos);
    if (list.empty()) {
        sessions_.erase(it);
        if (link_) {
            link_->released(session.client_id());
        }
    }
    stats_.sessions.add(-1);
    stats_.add_cleaned(reason);
    closing_.emplace(&session, std::move(owned));
    session.begin_close(reason, code, text);
}

void Shard::forget(Session& session) {
    assert(on_shard_thread());
    closing_.erase(&session);
}

ClientInfo Shard::lookup(std::string_view client_id) const {
    assert(on_shard_thread());
    ClientInfo info{std::string(client_id), false, 0, index_};
    auto it = sessions_.find(client_id);
    if (it != sessions_.end()) {
        info.sessions = it->second.size();
        info.online = info.sessions > 0;
        for (const auto& session : it->second) {
            info.messages_sent += session->messages_sent();
            info.socket_writes += session->socket_writes();
        }
    }
    return info;
}

std::span<char> Shard::read_scratch() {
    assert(on_shard_thread());
    return scratch(read_scratch_, 64 * 1024);
}

std::span<char> Shard::write_scratch() {
    assert(on_shard_thread());
    return scratch(write_scratch_, kWriteScratchBytes);
}

std::size_t Shard::session_count() const {
    return static_cast<std::size_t>(stats_.sessions.load());
}

void Shard::schedule_tick() {
    tick_timer_.expires_after(tick_period_);
    tick_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) {
            tick();
        }
    });
}

// Heartbeats, send-time limits and closing deadlines, all checked from one timer per
// shard instead of timers per session.
void Shard::tick() {
    const auto now = Clock::now();
    stats_.last_turn_ns.store(now.time_since_epoch().count(), std::memory_order_relaxed);

    std::vector<std::pair<std::shared_ptr<Session>, RemovalReason>> expired;
    std::vector<std::shared_ptr<Session>> ping_due;
    for (const auto& [id, list] : sessions_) {
        for (const auto& session : list) {
            if (auto reason = session->check(now)) {
                expired.emplace_back(session, *reason);
            } else if (session->ping_due(now)) {
                ping_due.push_back(session);
            }
        }
    }
    for (const auto& [session, reason] : expired) {
        remove(*session, reason);
    }
    // Pinged after the walk, never inside it: a ping whose write fails at once removes its
    // session, which edits the map.
    for (const auto& session : ping_due) {
        session->ping(now);
    }

    std::vector<std::shared_ptr<Session>> overdue;
    for (const auto& [ptr, session] : closing_) {
        if (session->close_overdue(now)) {
            overdue.push_back(session);
        }
    }
    for (const auto& session : overdue) {
        session->finish_close();
    }

    if (now >= next_sweep_) {
        sweep();
        next_sweep_ = now + config_.session.cleanup_interval;
    }
    schedule_tick();
}

// A safety net: a session still in the map whose socket is gone should have been removed
// by its failing read or write. Counted apart so a leak in that logic is visible.
void Shard::sweep() {
    std::vector<std::shared_ptr<Session>> dead;
    for (const auto& [id, list] : sessions_) {
        for (const auto& session : list) {
            if (session->state() == Session::State::open && !session->socket_open()) {
                dead.push_back(session);
            }
        }
    }
    for (const auto& session : dead) {
        stats_.sweep_removed.add();
        remove(*session, RemovalReason::peer_closed);
    }
}

void Shard::begin_stop(Clock::time_point deadline) {
    boost::asio::post(io_context_, [this, deadline] {
        if (phase_ != Phase::running) {
            return;
        }
        phase_ = Phase::draining;
        stop_deadline_ = deadline;
        advance_stop();
    });
}

bool Shard::all_idle() const {
    for (const auto& [id, list] : sessions_) {
        for (const auto& session : list) {
            if (!session->idle()) {
                return false;
            }
        }
    }
    return true;
}

// Draining: keep delivering until the inbox and every session are empty or the deadline
// passes. Closing: every session got 1001; wait for the closing handshakes (each bounded
// by close_timeout). Then report stopped.
void Shard::advance_stop() {
    const auto now = Clock::now();
    if (phase_ == Phase::draining) {
        const bool drained =
            inbox_.size_approx() == 0 && arrivals_.empty() && next_ == batch_.size() && all_idle();
        if (drained || now >= stop_deadline_) {
            phase_ = Phase::closing;
            std::vector<std::shared_ptr<Session>> all;
            for (const auto& [id, list] : sessions_) {
                all.insert(all.end(), list.begin(), list.end());
            }
            for (const auto& session : all) {
                remove(*session, RemovalReason::server_shutdown);
            }
        }
    }
    if (phase_ == Phase::closing && closing_.empty()) {
        phase_ = Phase::stopped;
        stopped_.set_value();  // last touch of shared state: the waiter may join next
        return;
    }
    stop_timer_.expires_after(kStopPollPeriod);
    stop_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) {
            advance_stop();
        }
    });
}

bool Shard::wait_stopped(Clock::time_point until) {
    return stopped_future_.wait_until(until) == std::future_status::ready;
}

void Shard::join() {
    work_.reset();
    io_context_.stop();
    if (thread_.joinable()) {
        thread_.join();
    }
    // Whatever is still in the batch, the arrivals or the inbox will never be delivered.
    const auto undelivered = [this](auto first, auto last) {
        stats_.add_failed(FailureReason::shutdown,
                          static_cast<std::uint64_t>(std::count_if(
                              first, last, [this](const Command& c) { return counts(c); })));
    };
    undelivered(batch_.begin() + static_cast<std::ptrdiff_t>(next_), batch_.end());
    batch_.clear();
    next_ = 0;
    do {
        undelivered(arrivals_.begin(), arrivals_.end());
        arrivals_.clear();
    } while (inbox_.pop_bulk(arrivals_, kPopChunk) > 0);
    stats_.collected.set(0);
}

}  // namespace shardcast::dispatcher
