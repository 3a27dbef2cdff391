// Shard, its clock: one timer per shard checks heartbeats, send-time limits, token expiry and
// closing deadlines, and sweeps for sessions whose socket is gone. Shard thread only.
#include "dispatcher/session.hpp"
#include "dispatcher/shard.hpp"

namespace shardcast::dispatcher {

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

    history_.expire(now);
    if (now >= next_sweep_) {
        history_.forget(now);
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

}  // namespace shardcast::dispatcher
