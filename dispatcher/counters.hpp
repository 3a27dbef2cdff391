// Counter, Gauge and Peak: the single-writer figures a shard keeps. Only the owning thread
// writes one, so no locked instruction is needed; any thread may read it at any time.
#pragma once

#include <atomic>
#include <cstdint>

namespace shardcast::dispatcher {

// A single-writer counter: a relaxed load and store, no locked instruction, because only
// the owning shard thread ever adds to it.
class Counter {
public:
    void add(std::uint64_t n = 1) {
        value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    std::uint64_t load() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> value_{0};
};

// The largest value seen since the last take(); the shard raises it, a reader takes it.
class Peak {
public:
    void observe(std::int64_t v) {
        if (v > value_.load(std::memory_order_relaxed)) value_.store(v, std::memory_order_relaxed);
    }
    std::int64_t take() { return value_.exchange(0, std::memory_order_relaxed); }

private:
    std::atomic<std::int64_t> value_{0};
};

// A single-writer gauge.
class Gauge {
public:
    void set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
    void add(std::int64_t n) { set(load() + n); }
    std::int64_t load() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::int64_t> value_{0};
};

}  // namespace shardcast::dispatcher
