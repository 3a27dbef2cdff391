#include "dispatcher/outbound_queue.hpp"

#include <cassert>
#include <utility>

namespace shardcast::dispatcher {

void OutboundQueue::push(Outbound item) {
    if (count_ == ring_.size()) {
        grow();
    }
    bytes_ += item.size();
    ring_[slot(count_)] = std::move(item);
    ++count_;
}

Outbound OutboundQueue::pop() { return take(0); }

Outbound OutboundQueue::take(std::size_t index) {
    assert(index < count_);
    Outbound item = std::move(ring_[slot(index)]);
    for (std::size_t i = index; i > 0; --i) {
        ring_[slot(i)] = std::move(ring_[slot(i - 1)]);
    }
    ring_[slot(0)] = {};
    head_ = slot(1);
    --count_;
    bytes_ -= item.size();
    if (count_ == 0) {
        head_ = 0;
    }
    return item;
}

std::size_t OutboundQueue::truncate(std::size_t keep) {
    if (keep == 0) {
        return clear();
    }
    std::size_t dropped = 0;
    while (count_ > keep) {
        Outbound& last = ring_[slot(count_ - 1)];
        bytes_ -= last.size();
        last = {};
        --count_;
        ++dropped;
    }
    return dropped;
}

std::size_t OutboundQueue::clear() {
    std::size_t dropped = count_;
    // Release the slots too: a session that was flooded should not keep its peak memory.
    std::vector<Outbound>().swap(ring_);
    head_ = count_ = bytes_ = 0;
    return dropped;
}

void OutboundQueue::grow() {
    std::vector<Outbound> bigger(ring_.empty() ? 4 : ring_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i) {
        bigger[i] = std::move(ring_[slot(i)]);
    }
    ring_ = std::move(bigger);
    head_ = 0;
}

}  // namespace shardcast::dispatcher
