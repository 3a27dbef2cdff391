// StreamCheck: what one WebSocket connection received from one publisher, as sequence
// numbers, so that loss, reordering and duplicates can be told apart. Written by the thread
// of the connection's Loop; read by the main thread once that Loop has stopped.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace shardcast::loadgen {

class StreamCheck {
public:
    // Skipped sequence numbers are remembered up to this many; beyond it the connection has
    // plainly failed, and loss is still counted, through untracked_.
    static constexpr std::size_t kMaxHoles = 4096;

    void on_seq(std::uint64_t seq) {
        if (received_ == 0) {
            first_ = seq;
            next_ = seq + 1;
            received_ = 1;
            return;
        }
        if (seq == next_) {
            ++next_;
            ++received_;
        } else if (seq > next_) {
            add_holes(next_, seq);
            next_ = seq + 1;
            ++received_;
        } else if (seq < first_) {
            // Arrived after later ones: everything between it and the old first is now a hole.
            ++reordered_;
            add_holes(seq + 1, first_);
            first_ = seq;
            ++received_;
        } else if (auto it = std::lower_bound(holes_.begin(), holes_.end(), seq);
                   it != holes_.end() && *it == seq) {
            ++reordered_;
            holes_.erase(it);
            ++received_;
        } else {
            ++duplicates_;
        }
    }

    std::uint64_t received() const { return received_; }
    std::uint64_t reordered() const { return reordered_; }
    std::uint64_t duplicates() const { return duplicates_; }
    // One past the highest sequence number received; 0 if none was.
    std::uint64_t end() const { return received_ == 0 ? 0 : next_; }

    // How many of the sequence numbers in [from, to) were not received.
    std::uint64_t missing(std::uint64_t from, std::uint64_t to) const {
        if (from >= to) return 0;
        if (received_ == 0) return to - from;
        std::uint64_t n = 0;
        if (from < first_) n += std::min(to, first_) - from;
        if (to > next_) n += to - std::max(from, next_);
        const auto lo = std::lower_bound(holes_.begin(), holes_.end(), from);
        const auto hi = std::lower_bound(holes_.begin(), holes_.end(), to);
        n += static_cast<std::uint64_t>(hi - lo);
        // Untracked holes lie somewhere in [first_, next_); count them all when the range
        // covers that span, the only case in which they are known to belong to it.
        if (from <= first_ && to >= next_) n += untracked_;
        return n;
    }

private:
    void add_holes(std::uint64_t from, std::uint64_t to) {
        for (std::uint64_t s = from; s < to; ++s) {
            if (holes_.size() >= kMaxHoles) {
                untracked_ += to - s;
                break;
            }
            holes_.insert(std::upper_bound(holes_.begin(), holes_.end(), s), s);
        }
    }

    std::uint64_t first_ = 0;
    std::uint64_t next_ = 0;
    std::uint64_t received_ = 0;
    std::uint64_t reordered_ = 0;
    std::uint64_t duplicates_ = 0;
    std::uint64_t untracked_ = 0;
    std::vector<std::uint64_t> holes_;  // sorted
};

}  // namespace shardcast::loadgen
