// QueueDelay: when the oldest command a shard has not yet delivered was published, so that
// publish admission can ask how long the shard's backlog has waited (publish.max_queue_delay)
// with one load and a clock read, without stopping the shard.
//
// Thread contract: age() from any thread. start() only from the producer whose push woke an
// idle shard (Inbox::PushResult::schedule_drain); oldest() and clear() only from the shard
// thread. A producer writes only while the shard has nothing scheduled, the shard only while
// it does, and the Inbox's wake-up flag orders the two: the shard clears before it drops the
// flag, a producer starts after it raises it, so the slot has one writer at a time.
#pragma once

#include <atomic>
#include <cstdint>

#include "dispatcher/command.hpp"

namespace shardcast::dispatcher {

class QueueDelay {
public:
    // How long the oldest undelivered command had waited at now; zero with nothing waiting.
    // Relaxed: the value is a time compared with another, never a pointer to data, so it
    // needs no ordering with other memory; a reader that sees it a turn late only moves
    // one 429 decision by that turn.
    Clock::duration age(Clock::time_point now) const {
        const std::int64_t since = since_ns_.load(std::memory_order_relaxed);
        if (since == kNone) {
            return Clock::duration::zero();
        }
        const Clock::duration waited = now.time_since_epoch() - Clock::duration(since);
        return waited > Clock::duration::zero() ? waited : Clock::duration::zero();
    }

    // Producer: its command, published at enqueued, begins the shard's backlog. Until the
    // shard's next turn, nothing else would tell a reader that this shard is waiting.
    void start(Clock::time_point enqueued) { store(enqueued); }
    // Shard thread, at the end of a turn: the oldest command still undelivered.
    void oldest(Clock::time_point enqueued) { store(enqueued); }
    // Shard thread: everything taken has been delivered.
    void clear() { since_ns_.store(kNone, std::memory_order_relaxed); }

private:
    // The steady clock counts from boot, so no real publish time is 0.
    static constexpr std::int64_t kNone = 0;

    void store(Clock::time_point t) {
        since_ns_.store(static_cast<std::int64_t>(t.time_since_epoch().count()),
                        std::memory_order_relaxed);
    }

    std::atomic<std::int64_t> since_ns_{kNone};
};

}  // namespace shardcast::dispatcher
