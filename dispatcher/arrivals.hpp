// Arrivals: the commands a shard has taken from its inbox, in publish order, waiting to be
// delivered. This is where the ordering guarantee is kept: moodycamel's queue orders items
// only per producer, so what is popped is sorted by the stamp each command took as it entered
// the inbox, and a collection only joins the batch once a pass finds every producer empty.
//
// Thread contract: owned by one shard and used only on its thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dispatcher/command.hpp"

namespace shardcast::dispatcher {

class Arrivals {
public:
    // Commands moved out of the inbox per pop, and the most one collect() pops: a flood of
    // producers cannot keep one turn collecting forever. No new collection begins while kMax
    // commands wait undelivered, so a shard that is behind leaves its backlog in the inbox.
    // A collection that never finds the inbox empty keeps popping, kMax a turn, until it
    // does: what it holds counts in the shard's queue depth, which the publish API's
    // admission (429) bounds.
    static constexpr std::size_t kPopChunk = 256;
    static constexpr std::size_t kMax = 64 * 1024;

    // Pops until a pass finds every producer empty, and only then lets what it popped join
    // the batch, in stamp order: once we have seen a command, everything published before it
    // began is visible to the next pass, so both join together and the sort orders them. A
    // collection that reaches kMax pops keeps what it popped and goes on at the next call;
    // under a flood faster than the shard can pop, delivery waits, and never reorders.
    // source: the shard's Inbox, or anything else with its pop_bulk().
    template <class Source>
    void collect(Source& source) {
        if (popped_.empty() && waiting() >= kMax) {
            return;
        }
        if (!pop(source) || popped_.empty()) {
            return;
        }
        compact();
        join_in_stamp_order();
    }

    // The next command to deliver, in stamp order; has_next() first.
    bool has_next() const { return next_ < batch_.size(); }
    Command& next() { return batch_[next_++]; }

    // Once every command of the batch is delivered: drops them (their ids and payloads) now,
    // not at the next collection.
    void release_delivered() {
        if (!has_next()) {
            batch_.clear();
            next_ = 0;
        }
    }

    // Taken from the inbox and not yet delivered: the rest of the batch and a collection
    // still going on.
    std::size_t undelivered() const { return batch_.size() - next_ + popped_.size(); }
    // Commands in the batch not yet delivered (what a collection has joined).
    std::size_t waiting() const { return batch_.size() - next_; }
    // Nothing is waiting or being collected.
    bool empty() const { return !has_next() && popped_.empty(); }
    // When the oldest command taken and not yet delivered was published; !empty() first.
    // The next in the batch, or, while a collection has joined nothing yet, the oldest it
    // popped. Publish times follow stamps to within a producer's own publish call.
    Clock::time_point oldest_enqueued() const;
    // Calls count(command) for each command taken and never delivered, then drops them all;
    // a stopped shard counts what it lost this way.
    template <class Count>
    void discard(Count count) {
        for (std::size_t i = next_; i < batch_.size(); ++i) count(batch_[i]);
        for (const Command& command : popped_) count(command);
        batch_.clear();
        popped_.clear();
        next_ = 0;
    }

private:
    // Pops at most kMax commands into popped_; true once a pass found every producer empty.
    template <class Source>
    bool pop(Source& source) {
        for (std::size_t popped = 0; popped < kMax;) {
            const std::size_t n = source.pop_bulk(popped_, kPopChunk);
            if (n == 0) {
                return true;
            }
            popped += n;
        }
        return false;
    }
    void compact();
    void join_in_stamp_order();

    // Sorted by stamp and delivered from next_. The delivered prefix is dropped once it is as
    // long as the rest, so a backlog that never empties holds at most about twice what is
    // undelivered.
    std::vector<Command> batch_;
    std::size_t next_ = 0;
    // One collection's pops, kept across calls until a pass finds every producer empty.
    std::vector<Command> popped_;
    struct StampOrder {
        std::uint64_t stamp;
        std::size_t index;  // into popped_
    };
    std::vector<StampOrder> order_;  // popped_ sorted by stamp
};

}  // namespace shardcast::dispatcher
