// ShardStats: counters and gauges of one shard. Each field has exactly one writer, the
// shard thread; any thread may read them (stats API, metrics scrape, log summary).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "dispatcher/counters.hpp"
#include "dispatcher/failure_reason.hpp"
#include "dispatcher/history_stats.hpp"
#include "dispatcher/publish_kind.hpp"
#include "dispatcher/removal_reason.hpp"

namespace shardcast::dispatcher {

struct ShardStats {
    std::array<Counter, kPublishKindCount> published;  // commands drained, by origin
    Counter sent;                                      // frames fully written to a socket
    Counter writes;  // socket writes that completed them: sent / writes frames per write
    std::array<Counter, kFailureReasonCount> failed;
    std::array<Counter, kRemovalReasonCount> cleaned;
    Counter connections;      // sessions ever attached
    Counter frames_received;  // frames clients sent (content is dropped)
    Counter bytes_received;
    Counter refused_too_many;  // upgrades refused: the id already has max_per_client sessions
    Counter refused_stopping;  // upgrades refused: the shard is stopping
    Counter sweep_removed;     // sessions the cleanup sweep found dead: should stay 0
    Gauge sessions;            // sessions in the shard's map
    Gauge outbound_bytes;      // bytes of the messages its sessions hold, each message once
    Peak queue_depth_peak;     // most commands one drain turn found waiting
    Gauge collected;           // commands taken from the inbox and not yet delivered
    std::atomic<std::int64_t> last_turn_ns{0};  // steady clock of the shard's last tick
    Counter held;  // sends for an id with no session here, kept in history for it
    // Drain turns a producer scheduled because the shard had none pending: each wakes the
    // thread (an eventfd write and a context switch when it sleeps). Per publish, this is
    // what a producer costs beyond its command.
    Counter wakeups;
    HistoryStats history;

    void add_published(PublishKind k) { published[static_cast<std::size_t>(k)].add(); }
    void add_failed(FailureReason r, std::uint64_t n = 1) {
        failed[static_cast<std::size_t>(r)].add(n);
    }
    void add_cleaned(RemovalReason r) { cleaned[static_cast<std::size_t>(r)].add(); }
    std::uint64_t failed_total() const {
        std::uint64_t sum = 0;
        for (const auto& c : failed) sum += c.load();
        return sum;
    }
    std::uint64_t cleaned_total() const {
        std::uint64_t sum = 0;
        for (const auto& c : cleaned) sum += c.load();
        return sum;
    }
};

// The counters of every shard added up: the one sum behind /api/v1/stats, /metrics and the
// summary line. A snapshot of relaxed loads, taken by any thread while traffic flows.
struct StatsTotals {
    std::array<std::uint64_t, kPublishKindCount> published{};
    std::array<std::uint64_t, kFailureReasonCount> failed{};
    std::array<std::uint64_t, kRemovalReasonCount> cleaned{};
    std::uint64_t sent = 0;
    std::uint64_t writes = 0;
    std::uint64_t connections = 0;
    std::uint64_t frames_received = 0;
    std::uint64_t refused_too_many = 0;
    std::uint64_t refused_stopping = 0;
    std::uint64_t sweep_removed = 0;
    std::uint64_t held = 0;
    std::uint64_t resumes = 0;
    std::uint64_t replayed = 0;
    std::array<std::uint64_t, kGapReasonCount> gaps{};
    std::array<std::uint64_t, kEvictionReasonCount> history_evicted{};
    std::int64_t history_bytes = 0;
    std::int64_t history_entries = 0;
    std::int64_t sessions = 0;
    std::int64_t outbound_bytes = 0;

    void add(const ShardStats& s) {
        for (std::size_t i = 0; i < published.size(); ++i) published[i] += s.published[i].load();
        for (std::size_t i = 0; i < failed.size(); ++i) failed[i] += s.failed[i].load();
        for (std::size_t i = 0; i < cleaned.size(); ++i) cleaned[i] += s.cleaned[i].load();
        sent += s.sent.load();
        writes += s.writes.load();
        connections += s.connections.load();
        frames_received += s.frames_received.load();
        refused_too_many += s.refused_too_many.load();
        refused_stopping += s.refused_stopping.load();
        sweep_removed += s.sweep_removed.load();
        held += s.held.load();
        resumes += s.history.resumes.load();
        replayed += s.history.replayed.load();
        for (std::size_t i = 0; i < gaps.size(); ++i) gaps[i] += s.history.gaps[i].load();
        for (std::size_t i = 0; i < history_evicted.size(); ++i) {
            history_evicted[i] += s.history.evicted[i].load();
        }
        history_bytes += s.history.bytes.load();
        history_entries += s.history.entries.load();
        sessions += s.sessions.load();
        outbound_bytes += s.outbound_bytes.load();
    }
    std::uint64_t failed_total() const { return sum(failed); }
    std::uint64_t cleaned_total() const { return sum(cleaned); }

private:
    template <std::size_t N>
    static std::uint64_t sum(const std::array<std::uint64_t, N>& values) {
        std::uint64_t total = 0;
        for (std::uint64_t v : values) total += v;
        return total;
    }
};

}  // namespace shardcast::dispatcher
