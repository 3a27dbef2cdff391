// Histogram: a log-linear histogram of nanosecond values (latencies, connect times) with
// about 1.5% relative error, in the manner of HdrHistogram. One per Loop, written only by that
// Loop's thread; the main thread merges them after the threads have joined.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace shardcast::loadgen {

class Histogram {
public:
    // Values below kSub are exact; above, each power of two is split into kSub buckets.
    static constexpr std::uint64_t kSub = 64;
    // Values are clamped to 2^42 ns (73 minutes), far beyond any bounded run.
    static constexpr int kMaxBits = 42;

    Histogram() : buckets_(index(max_value()) + 1, 0) {}

    void record(std::int64_t ns) {
        const std::uint64_t v =
            std::min<std::uint64_t>(ns < 0 ? 0 : static_cast<std::uint64_t>(ns), max_value());
        ++buckets_[index(v)];
        ++count_;
        max_ = std::max(max_, v);
        sum_ += v;
    }

    void merge(const Histogram& other) {
        for (std::size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += other.buckets_[i];
        count_ += other.count_;
        max_ = std::max(max_, other.max_);
        sum_ += other.sum_;
    }

    std::uint64_t count() const { return count_; }
    std::uint64_t max() const { return max_; }
    double mean() const {
        return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
    }

    // The value below which a fraction q of the samples lie (midpoint of its bucket); 0 when
    // empty.
    std::uint64_t percentile(double q) const {
        if (count_ == 0) return 0;
        const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_) + 0.5);
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < buckets_.size(); ++i) {
            seen += buckets_[i];
            if (seen >= std::max<std::uint64_t>(rank, 1)) {
                return std::min(midpoint(i), max_);
            }
        }
        return max_;
    }

private:
    static constexpr std::uint64_t max_value() { return (std::uint64_t{1} << kMaxBits) - 1; }

    static std::size_t index(std::uint64_t v) {
        if (v < kSub) return v;
        const int shift = static_cast<int>(std::bit_width(v)) - 7;  // v >> shift lies in [64, 128)
        return kSub + static_cast<std::size_t>(shift) * kSub + ((v >> shift) - kSub);
    }

    static std::uint64_t midpoint(std::size_t i) {
        if (i < kSub) return i;
        const std::size_t shift = (i - kSub) / kSub;
        const std::uint64_t low = (kSub + (i - kSub) % kSub) << shift;
        return low + ((std::uint64_t{1} << shift) >> 1);
    }

    std::vector<std::uint64_t> buckets_;
    std::uint64_t count_ = 0;
    std::uint64_t max_ = 0;
    std::uint64_t sum_ = 0;
};

}  // namespace shardcast::loadgen
