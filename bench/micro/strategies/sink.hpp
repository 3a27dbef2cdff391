// Sink: the stand-in for one client socket in the strategy benchmark. Every strategy writes
// through the same Sink, so they differ only in how they get a message to it. A write costs
// a fixed amount of CPU work (rounds of FNV-1a over the payload), counts what it wrote, and
// flags any write that overlaps another on the same sink: the corruption a real socket
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
#include <string>
#include <string_view>
#include <unordered_map>

namespace shardcast::bench {

class alignas(64) Sink {
public:
    explicit Sink(int rounds) : rounds_(rounds) {}
    Sink(const Sink&) = delete;
    Sink& operator=(const Sink&) = delete;

    void write(const std::string& bytes) {
        if (writing_.exchange(true, std::memory_order_acquire)) {
            flag_violation();
        }
        // The work is seeded with the previous result and stored, so it cannot be elided.
        std::uint64_t h = checksum_.load(std::memory_order_relaxed);
        for (int r = 0; r < rounds_; ++r) {
            for (const char c : bytes) {
                h = (h ^ static_cast<unsigned char>(c)) * kFnvPrime;
            }
        }
        checksum_.store(h, std::memory_order_relaxed);
        // Single-writer counters, like the shards' own: a relaxed load and store. An overlap
        // may lose a count, but it is itself counted above.
        messages_.store(messages_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        bytes_.store(bytes_.load(std::memory_order_relaxed) + bytes.size(),
                     std::memory_order_relaxed);
        writing_.store(false, std::memory_order_release);
    }

    // For callers that detect an overlap of their own (a second write started while one is
    // in flight), so all overlaps land in one count.
    void flag_violation() { violations_.fetch_add(1, std::memory_order_relaxed); }

    std::uint64_t messages() const { return messages_.load(std::memory_order_relaxed); }
    std::uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
    std::uint64_t violations() const { return violations_.load(std::memory_order_relaxed); }

private:
    static constexpr std::uint64_t kFnvPrime = 0x100000001b3ULL;

    const int rounds_;
    std::atomic<bool> writing_{false};
    std::atomic<std::uint64_t> checksum_{0xcbf29ce484222325ULL};
    std::atomic<std::uint64_t> messages_{0};
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
