// LatencyHistogram: delivery latency (enqueue to write completion) of one shard, in fixed
// buckets. One writer, the shard thread; readers on any thread see a slightly torn but
// never corrupt view, which is what a scrape-time read can accept.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "dispatcher/shard_stats.hpp"

namespace shardcast::dispatcher {

class LatencyHistogram {
public:
    // Upper bounds in seconds, as Prometheus "le" buckets (the last, +Inf, is implicit).
    static constexpr std::array<double, 16> kBounds = {
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
        0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};

    void record(std::chrono::nanoseconds latency) {
        const double seconds = std::chrono::duration<double>(latency).count();
        std::size_t i = 0;
        while (i < kBounds.size() && seconds > kBounds[i]) ++i;
        buckets_[i].add();
        sum_ns_.add(static_cast<std::uint64_t>(latency.count() < 0 ? 0 : latency.count()));
    }

    // Non-cumulative count of bucket i; i == kBounds.size() is the overflow bucket.
    std::uint64_t bucket(std::size_t i) const { return buckets_[i].load(); }
    std::uint64_t count() const {
        std::uint64_t n = 0;
        for (const auto& b : buckets_) n += b.load();
        return n;
    }
    double sum_seconds() const { return static_cast<double>(sum_ns_.load()) / 1e9; }

private:
    std::array<Counter, kBounds.size() + 1> buckets_;
    Counter sum_ns_;
};

}  // namespace shardcast::dispatcher
