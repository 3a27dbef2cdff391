// Sink: the stand-in for one client socket in the strategy benchmark. Every strategy writes
// through the same Sink, so they differ only in how they get messages to it.
//
// A write models one send()/sendmsg() on a socket: a fixed cost per call (the kernel's TCP
// path, which a profile of the server shows dominates a small send) plus a cost per byte.
// Both are CPU work, dependent FNV-1a steps, never a sleep: a socket write keeps a core busy.
// A gather write hands several messages to one call, as the transport's one sendmsg per
// batch does, and pays the fixed cost once. The sink counts messages and calls separately, and
// flags any call that overlaps another on the same sink: the corruption a real socket
// suffers, which every strategy that claims safety must never allow.
//
// Thread contract: write() may be called from any thread. Overlapping calls are what it
// detects, so every field is atomic and an overlap is counted, never undefined. The readers
// are safe from any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

namespace shardcast::bench {

// What one write call costs. The defaults, and how they were chosen: strategies_bench.cpp.
struct SinkCost {
    int rounds = 0;      // passes of FNV-1a over every byte written
    int call_steps = 0;  // FNV-1a steps paid once per call, whatever it carries
};

class alignas(64) Sink {
public:
    explicit Sink(SinkCost cost) : cost_(cost) {}
    Sink(const Sink&) = delete;
    Sink& operator=(const Sink&) = delete;

    // One call carrying one message.
    void write(std::string_view message) { write(std::span<const std::string_view>(&message, 1)); }

    // One call carrying every message in order: one overlap check, the fixed cost once, and
    // the per-byte work over all of them.
    void write(std::span<const std::string_view> messages) {
        if (writing_.exchange(true, std::memory_order_acquire)) {
            flag_violation();
        }
        // The work is seeded with the previous result and stored, so it cannot be elided;
        // each step depends on the last, so it cannot be vectorised away either.
        std::uint64_t h = checksum_.load(std::memory_order_relaxed);
        for (int i = 0; i < cost_.call_steps; ++i) {
            h = (h ^ static_cast<std::uint64_t>(i)) * kFnvPrime;
        }
        std::size_t bytes = 0;
        for (const std::string_view message : messages) {
            for (int r = 0; r < cost_.rounds; ++r) {
                for (const char c : message) {
                    h = (h ^ static_cast<unsigned char>(c)) * kFnvPrime;
                }
            }
            bytes += message.size();
        }
        checksum_.store(h, std::memory_order_relaxed);
        // Single-writer counters, like the shards' own: a relaxed load and store. An overlap
        // may lose a count, but it is itself counted above.
        bump(messages_, messages.size());
        bump(writes_, 1);
        bump(bytes_, bytes);
        writing_.store(false, std::memory_order_release);
    }

    // For callers that detect an overlap of their own (a second write started while one is
    // in flight), so all overlaps land in one count.
    void flag_violation() { violations_.fetch_add(1, std::memory_order_relaxed); }

    std::uint64_t messages() const { return messages_.load(std::memory_order_relaxed); }
    std::uint64_t writes() const { return writes_.load(std::memory_order_relaxed); }
    std::uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
    std::uint64_t violations() const { return violations_.load(std::memory_order_relaxed); }

private:
    static constexpr std::uint64_t kFnvPrime = 0x100000001b3ULL;

    static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
        counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }

    const SinkCost cost_;
    std::atomic<bool> writing_{false};
    std::atomic<std::uint64_t> checksum_{0xcbf29ce484222325ULL};
    std::atomic<std::uint64_t> messages_{0};
    std::atomic<std::uint64_t> writes_{0};
    std::atomic<std::uint64_t> bytes_{0};
    std::atomic<std::uint64_t> violations_{0};
};

// One sink per session; a deque because a Sink never moves.
using Sinks = std::deque<Sink>;

inline std::uint64_t total_messages(const Sinks& sinks) {
    std::uint64_t n = 0;
    for (const Sink& s : sinks) n += s.messages();
    return n;
}

inline std::uint64_t total_writes(const Sinks& sinks) {
    std::uint64_t n = 0;
    for (const Sink& s : sinks) n += s.writes();
    return n;
}

inline std::uint64_t total_violations(const Sinks& sinks) {
    std::uint64_t n = 0;
    for (const Sink& s : sinks) n += s.violations();
    return n;
}

// The baselines find a session by id the way a server's session registry does. The map is
// filled before any producer starts and only read after, so lookups need no lock, as with
// a Java ConcurrentHashMap's get().
struct IdHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class T>
using IdMap = std::unordered_map<std::string, T*, IdHash, std::equal_to<>>;

}  // namespace shardcast::bench
