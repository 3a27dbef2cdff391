// HistoryStats: what a shard's History holds and lets go, and what resumes found. Single
// writer, the shard thread; any thread may read.
#pragma once

#include <array>
#include <cstddef>

#include "dispatcher/counters.hpp"
#include "dispatcher/enum_name.hpp"

namespace shardcast::dispatcher {

// Why a resume could not be whole.
enum class GapReason : unsigned char {
    evicted,      // past history.size or history.max_bytes
    expired,      // older than history.ttl
    epoch,        // another epoch: history from before a restart, or another stream
    unavailable,  // no history is kept (history.enabled false, or its store is down)
};
inline constexpr std::size_t kGapReasonCount = enum_count<GapReason>;

// Why a message left history.
enum class EvictionReason : unsigned char { size, memory, expired };
inline constexpr std::size_t kEvictionReasonCount = enum_count<EvictionReason>;

struct HistoryStats {
    Gauge bytes;    // payload bytes held (a broadcast once)
    Gauge entries;  // messages held
    std::array<Counter, kEvictionReasonCount> evicted;
    Counter resumes;                            // sessions that asked to resume
    Counter replayed;                           // messages a resume delivered again
    std::array<Counter, kGapReasonCount> gaps;  // resumes that could not be whole, by reason
};

}  // namespace shardcast::dispatcher
