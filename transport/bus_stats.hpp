// BusStats: the cluster bus's counters. Written by shard threads, the bus thread and the NATS
// client's threads; read by the metrics scrape and /api/v1/stats.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "dispatcher/enum_name.hpp"

namespace shardcast::transport {

// What a bus message carries.
enum class BusKind : unsigned char { send, broadcast, claim, disconnect, upstream };
inline constexpr std::size_t kBusKindCount = enum_count<BusKind>;

// Why a message from the bus was not delivered.
enum class BusReceiveError : unsigned char { invalid_utf8, bad_header, slow_consumer, stopping };
inline constexpr std::size_t kBusReceiveErrorCount = enum_count<BusReceiveError>;

// Many writers: every add is an atomic increment.
class SharedCounter {
public:
    void add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
    std::uint64_t load() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> value_{0};
};

// The cluster's history stream (HistoryStream), as the stats and the scrape see it.
struct HistoryStreamStats {
    std::atomic<bool> enabled{false};
    std::atomic<bool> available{false};  // the stream answers, and messages are stored
    SharedCounter stored;                // messages the stream acknowledged
    SharedCounter unstored;              // delivered live without being stored
    SharedCounter fetches;               // resumes looked up in the stream
    SharedCounter fetch_errors;          // lookups the stream did not answer
    SharedCounter epochs;                // epoch markers this node wrote
    // Stored copies that arrived after a higher sequence (SequenceOrder): overtaken, put back
    // in place by the reorder window; late, after the higher one had gone out already.
    SharedCounter overtaken;
    SharedCounter late;

    std::string epoch() const {
        std::lock_guard lock(mutex_);
        return epoch_;
    }
    void set_epoch(std::string epoch) {
        std::lock_guard lock(mutex_);
        epoch_ = std::move(epoch);
    }

private:
    mutable std::mutex mutex_;  // scrapes and epoch changes only
    std::string epoch_;
};

struct BusStats {
    std::atomic<bool> connected{false};
    std::array<SharedCounter, kBusKindCount> out;      // handed to NATS, by kind
    std::array<SharedCounter, kBusKindCount> in;       // received and accepted, by kind
    std::array<SharedCounter, kBusKindCount> refused;  // not handed over: bus down or backed up
    std::array<SharedCounter, kBusReceiveErrorCount> receive_errors;
    SharedCounter publish_errors;  // handed over, but the NATS client failed to publish
    SharedCounter reconnects;
    std::atomic<std::int64_t> subscriptions{0};  // client subjects subscribed, plus broadcast
    HistoryStreamStats history;

    static std::size_t index(BusKind k) { return static_cast<std::size_t>(k); }
    static std::size_t index(BusReceiveError e) { return static_cast<std::size_t>(e); }
};

}  // namespace shardcast::transport
