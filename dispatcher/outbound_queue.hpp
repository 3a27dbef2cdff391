// OutboundQueue: the messages waiting for one session's socket, bounded by bytes.
// Owned by its session and used only on the session's shard thread.
#pragma once

#include <cstddef>
#include <vector>

#include "dispatcher/outbound.hpp"

namespace shardcast::dispatcher {

// A ring over a vector that starts empty: an idle session owns no buffer, and a busy
// one reuses its slots instead of allocating per message as a deque would.
class OutboundQueue {
public:
    bool empty() const { return count_ == 0; }
    std::size_t size() const { return count_; }
    std::size_t bytes() const { return bytes_; }

    void push(Outbound item);
    Outbound pop();  // precondition: !empty()
    // The i-th message from the front (i < size()).
    const Outbound& at(std::size_t i) const { return ring_[slot(i)]; }
    // Removes the message at index (< size()), keeping the order of the others: the messages
    // before it are being written and must stay at the front.
    Outbound take(std::size_t index);
    // Drops every message after the first keep; returns how many were dropped.
    std::size_t truncate(std::size_t keep);
    // Drops everything and returns how many messages were dropped.
    std::size_t clear();

private:
    // Where the i-th message from the front lives. The ring's size is a power of two (4,
    // then doubling), so wrapping is a mask: a division here showed in fan-out profiles.
    std::size_t slot(std::size_t i) const { return (head_ + i) & (ring_.size() - 1); }
    void grow();

    std::vector<Outbound> ring_;
    std::size_t head_ = 0;
    std::size_t count_ = 0;
    std::size_t bytes_ = 0;
};

}  // namespace shardcast::dispatcher
