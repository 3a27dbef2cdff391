// Inbox: a shard's multi-producer queue of Commands and its wake-up flag.
// push() is safe from any thread and never blocks; everything else runs on the shard thread.
#pragma once

#include <concurrentqueue/concurrentqueue.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <vector>

#include "dispatcher/command.hpp"

namespace shardcast::dispatcher {

class Inbox {
public:
    struct PushResult {
        bool queued = false;          // false only when the queue could not allocate
        bool schedule_drain = false;  // true for the one producer that must wake the shard
    };

    // Any thread. Stamps the command, enqueues it and tells the caller whether it must
    // post a drain: only the producer that flips the flag from false does, so a burst of
    // publishes costs the shard one wake-up, not one per message.
    PushResult push(Command&& command) {
        command.stamp = next_stamp_.fetch_add(1, std::memory_order_relaxed);
        if (!queue_.enqueue(std::move(command))) {
            return {};
        }
        // acq_rel: our enqueue is visible to the shard before it can see the flag.
        return {true, !scheduled_.exchange(true, std::memory_order_acq_rel)};
    }

    // Shard thread. Appends up to max commands to out; 0 means every producer looked empty.
    std::size_t pop_bulk(std::vector<Command>& out, std::size_t max) {
        return queue_.try_dequeue_bulk(std::back_inserter(out), max);
    }

    // Shard thread, at the end of a drain turn. Returns true when commands arrived after the
    // last pop and no producer has posted a drain for them, so the shard must drain again.
    bool finish_drain() {
        // Both sides use read-modify-writes on the flag: either a producer's exchange comes
        // after ours and sees false (it posts), or ours reads its true and then sees its
        // command below (we drain). No wake-up is lost.
        scheduled_.exchange(false, std::memory_order_acq_rel);
        if (queue_.size_approx() == 0) {
            return false;
        }
        return !scheduled_.exchange(true, std::memory_order_acq_rel);
    }

    // Any thread; approximate by nature.
    std::size_t size_approx() const { return queue_.size_approx(); }

private:
    moodycamel::ConcurrentQueue<Command> queue_;
    std::atomic<std::uint64_t> next_stamp_{0};
    std::atomic<bool> scheduled_{false};
};

}  // namespace shardcast::dispatcher
