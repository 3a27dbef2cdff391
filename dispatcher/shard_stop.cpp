// Shard, its stop: drain until the deadline, close every session with 1001, wait for the
// closing handshakes, and count what never got delivered.
#include <boost/asio/post.hpp>

#include "dispatcher/forwarding.hpp"
#include "dispatcher/session.hpp"
#include "dispatcher/shard.hpp"

namespace shardcast::dispatcher {
namespace {

// How often a stopping shard looks at its progress.
constexpr std::chrono::milliseconds kStopPollPeriod{5};

}  // namespace

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
        const bool drained = inbox_.size_approx() == 0 && arrivals_.empty() && all_idle();
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
        // Nothing is written any more. The sessions' last references go now, while the
        // transport that made them (and that their connections point into) still exists.
        write_requests_.clear();
        overflowed_.clear();
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
    // Whatever was taken from the inbox, or is still in it, will never be delivered.
    std::uint64_t lost = 0;
    const auto count = [&](const Command& c) { lost += counts(c, index_) ? 1 : 0; };
    arrivals_.discard(count);
    std::vector<Command> left;
    while (inbox_.pop_bulk(left, Arrivals::kPopChunk) > 0) {
        for (const Command& c : left) count(c);
        left.clear();
    }
    stats_.add_failed(FailureReason::shutdown, lost);
    stats_.collected.set(0);
}

}  // namespace shardcast::dispatcher
