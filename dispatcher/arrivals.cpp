#include "dispatcher/arrivals.hpp"

#include <algorithm>
#include <iterator>

namespace shardcast::dispatcher {

// Drops the delivered front once it is as long as the rest: each compaction moves at most as
// many commands as it drops, one move per delivery.
void Arrivals::compact() {
    if (next_ > 0 && next_ >= batch_.size() - next_) {
        batch_.erase(batch_.begin(), batch_.begin() + static_cast<std::ptrdiff_t>(next_));
        next_ = 0;
    }
}

// The scan runs only while a collection spans turns, a flood the shard cannot pop to the
// end of; a turn that joined its collection reads the head of the batch.
Clock::time_point Arrivals::oldest_enqueued() const {
    if (has_next()) {
        return batch_[next_].enqueued;
    }
    Clock::time_point oldest = Clock::time_point::max();
    for (const Command& command : popped_) {
        oldest = std::min(oldest, command.enqueued);
    }
    return oldest;
}

// One producer's commands arrive in stamp order; several producers' come grouped by
// producer. Sorting 16-byte keys and moving each command once costs far less than sorting
// the commands themselves, which std::sort swaps many times each.
void Arrivals::join_in_stamp_order() {
    const auto by_stamp = [](const Command& a, const Command& b) { return a.stamp < b.stamp; };
    const std::size_t first_new = batch_.size();
    if (std::is_sorted(popped_.begin(), popped_.end(), by_stamp)) {
        std::move(popped_.begin(), popped_.end(), std::back_inserter(batch_));
    } else {
        order_.clear();
        for (std::size_t i = 0; i < popped_.size(); ++i) {
            order_.push_back({popped_[i].stamp, i});
        }
        std::sort(order_.begin(), order_.end(),
                  [](const StampOrder& a, const StampOrder& b) { return a.stamp < b.stamp; });
        for (const StampOrder& key : order_) {
            batch_.push_back(std::move(popped_[key.index]));
        }
    }
    popped_.clear();
    // A producer may take its stamp, then be preempted before it enqueues: its command can
    // arrive a collection after a later-stamped one that is still waiting here.
    const auto first = batch_.begin() + static_cast<std::ptrdiff_t>(next_);
    const auto middle = batch_.begin() + static_cast<std::ptrdiff_t>(first_new);
    if (first != middle && middle->stamp < std::prev(middle)->stamp) {
        std::inplace_merge(first, middle, batch_.end(), by_stamp);
    }
}

}  // namespace shardcast::dispatcher
