// History on its own, driven with explicit offsets and times: what since() and all() return,
// which gaps they report, and what each bound (history.size, history.max_bytes, history.ttl)
// evicts, oldest first, with the figures HistoryStats keeps. No shard, no thread, no clock
// but the times the tests pass in.
#include "dispatcher/history.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shardcast::dispatcher {
namespace {

using namespace std::chrono_literals;

// A fixed start for the explicit times: expire() reads no clock.
const Clock::time_point kStart = Clock::time_point{} + 1000h;

HistoryConfig config_with(std::size_t size = 100,
                          std::size_t max_bytes = 1024 * 1024,
                          std::chrono::milliseconds ttl = 1h) {
    HistoryConfig config;
    config.size = size;
    config.max_bytes = max_bytes;
    config.ttl = ttl;
    return config;
}

History::Entry entry(std::uint64_t offset, std::string text, Clock::time_point at = kStart) {
    return {offset, make_payload(std::move(text)), at};
}

std::vector<std::uint64_t> offsets(const History::Replay& replay) {
    std::vector<std::uint64_t> out;
    for (const auto& e : replay.entries) out.push_back(e.offset);
    return out;
}

std::vector<std::string> texts(const History::Replay& replay) {
    std::vector<std::string> out;
    for (const auto& e : replay.entries) out.push_back(e.payload->text());
    return out;
}

std::uint64_t evicted(const HistoryStats& stats, EvictionReason reason) {
    return stats.evicted[enum_index(reason)].load();
}

using Offsets = std::vector<std::uint64_t>;
using Gap = std::optional<GapReason>;

TEST(HistoryTest, SinceReturnsWhatCameAfterItWithSendsAndBroadcastsMergedInOffsetOrder) {
    HistoryStats stats;
    History history(config_with(), stats);
    history.record_send("a", entry(1, "a1"));
    history.record_broadcast("", entry(2, "all2"));
    history.record_send("b", entry(3, "b3"));
    history.record_send("a", entry(4, "a4"));
    history.record_broadcast("", entry(5, "all5"));

    const History::Replay from_start = history.since("a", 0);
    EXPECT_EQ(texts(from_start), (std::vector<std::string>{"a1", "all2", "a4", "all5"}));
    EXPECT_EQ(from_start.gap, Gap{});
    const History::Replay from_two = history.since("a", 2);
    EXPECT_EQ(offsets(from_two), (Offsets{4, 5}));
    EXPECT_EQ(from_two.gap, Gap{});
    EXPECT_EQ(offsets(history.since("b", 2)), (Offsets{3, 5}));
    EXPECT_EQ(offsets(history.since("a", 5)), Offsets{});
}

TEST(HistoryTest, ABroadcastIsSkippedForTheIdItExceptedOnly) {
    HistoryStats stats;
    History history(config_with(), stats);
    history.record_broadcast("a", entry(1, "not for a"));
    history.record_broadcast("", entry(2, "for all"));

    EXPECT_EQ(offsets(history.since("a", 0)), (Offsets{2}));
    EXPECT_EQ(offsets(history.since("b", 0)), (Offsets{1, 2}));
    EXPECT_EQ(offsets(history.all("a")), (Offsets{2}));
}

// history.size is per client: a's sends do not push out b's.
TEST(HistoryTest, SizeEvictsAClientsOldestSendsAndReportsAGapOnlyFromBeforeThem) {
    HistoryStats stats;
    History history(config_with(/*size=*/3), stats);
    history.record_send("b", entry(1, "b1"));
    for (std::uint64_t offset = 2; offset <= 6; ++offset) {
        history.record_send("a", entry(offset, "a"));
    }

    const History::Replay from_start = history.since("a", 0);
    EXPECT_EQ(offsets(from_start), (Offsets{4, 5, 6}));
    EXPECT_EQ(from_start.gap, Gap{GapReason::evicted});
    EXPECT_EQ(history.since("a", 2).gap, Gap{GapReason::evicted}) << "offset 3 is gone";
    const History::Replay after_evicted = history.since("a", 3);
    EXPECT_EQ(offsets(after_evicted), (Offsets{4, 5, 6}));
    EXPECT_EQ(after_evicted.gap, Gap{}) << "the client had everything evicted";
    const History::Replay other = history.since("b", 0);
    EXPECT_EQ(offsets(other), (Offsets{1}));
    EXPECT_EQ(other.gap, Gap{});
    EXPECT_EQ(evicted(stats, EvictionReason::size), 2u);
    EXPECT_EQ(stats.entries.load(), 4);
}

TEST(HistoryTest, SizeEvictsTheOldestBroadcastsAndReportsAGapOnlyFromBeforeThem) {
    HistoryStats stats;
    History history(config_with(/*size=*/2), stats);
    for (std::uint64_t offset = 1; offset <= 4; ++offset) {
        history.record_broadcast("", entry(offset, "all"));
    }

    const History::Replay from_start = history.since("anyone", 0);
    EXPECT_EQ(offsets(from_start), (Offsets{3, 4}));
    EXPECT_EQ(from_start.gap, Gap{GapReason::evicted});
    EXPECT_EQ(history.since("anyone", 1).gap, Gap{GapReason::evicted});
    EXPECT_EQ(history.since("anyone", 2).gap, Gap{});
    EXPECT_EQ(evicted(stats, EvictionReason::size), 2u);
    EXPECT_EQ(stats.entries.load(), 2);
}

TEST(HistoryTest, MaxBytesEvictsTheOldestMessageAcrossClients) {
    HistoryStats stats;
    History history(config_with(/*size=*/100, /*max_bytes=*/10), stats);
    history.record_send("a", entry(1, "aaaa"));
    history.record_send("b", entry(2, "bbbb"));
    history.record_send("a", entry(3, "cccc"));  // 12 bytes: offset 1 goes

    const History::Replay a = history.since("a", 0);
    EXPECT_EQ(offsets(a), (Offsets{3}));
    EXPECT_EQ(a.gap, Gap{GapReason::evicted});
    const History::Replay b = history.since("b", 0);
    EXPECT_EQ(offsets(b), (Offsets{2}));
    EXPECT_EQ(b.gap, Gap{});
    EXPECT_EQ(evicted(stats, EvictionReason::memory), 1u);
    EXPECT_EQ(evicted(stats, EvictionReason::size), 0u);
    EXPECT_EQ(stats.bytes.load(), 8);
    EXPECT_EQ(stats.entries.load(), 2);
}

// A broadcast is for every client of the shard but holds its bytes once.
TEST(HistoryTest, ABroadcastCountsOnceTowardsMaxBytesAndIsEvictedWhenOldest) {
    HistoryStats stats;
    History history(config_with(/*size=*/100, /*max_bytes=*/10), stats);
    history.record_broadcast("", entry(1, "1234"));
    history.record_send("a", entry(2, "5678"));
    EXPECT_EQ(stats.bytes.load(), 8);
    EXPECT_EQ(evicted(stats, EvictionReason::memory), 0u);
    EXPECT_EQ(offsets(history.since("b", 0)), (Offsets{1}));

    history.record_send("b", entry(3, "9abc"));  // 12 bytes: the broadcast goes

    const History::Replay a = history.since("a", 0);
    EXPECT_EQ(offsets(a), (Offsets{2}));
    EXPECT_EQ(a.gap, Gap{GapReason::evicted});
    const History::Replay b = history.since("b", 0);
    EXPECT_EQ(offsets(b), (Offsets{3}));
    EXPECT_EQ(b.gap, Gap{GapReason::evicted});
    EXPECT_EQ(history.since("b", 1).gap, Gap{});
    EXPECT_EQ(evicted(stats, EvictionReason::memory), 1u);
    EXPECT_EQ(stats.bytes.load(), 8);
}

// Past history.ttl means delivered at or before now - ttl.
TEST(HistoryTest, ExpireEvictsWhatIsPastTtlOldestFirstAndReportsExpired) {
    HistoryStats stats;
    History history(config_with(/*size=*/100, /*max_bytes=*/1024, /*ttl=*/60s), stats);
    history.record_send("a", entry(1, "a1", kStart));
    history.record_broadcast("", entry(2, "all2", kStart + 30s));
    history.record_send("a", entry(3, "a3", kStart + 50s));

    history.expire(kStart + 70s);
    const History::Replay first = history.since("a", 0);
    EXPECT_EQ(offsets(first), (Offsets{2, 3}));
    EXPECT_EQ(first.gap, Gap{GapReason::expired});
    EXPECT_EQ(history.since("a", 1).gap, Gap{});
    EXPECT_EQ(evicted(stats, EvictionReason::expired), 1u);

    history.expire(kStart + 90s);
    const History::Replay second = history.since("a", 1);
    EXPECT_EQ(offsets(second), (Offsets{3}));
    EXPECT_EQ(second.gap, Gap{GapReason::expired});
    EXPECT_EQ(history.since("a", 2).gap, Gap{});
    EXPECT_EQ(evicted(stats, EvictionReason::expired), 2u);
    EXPECT_EQ(stats.entries.load(), 1);
}

TEST(HistoryTest, ExpireBeforeTtlEvictsNothing) {
    HistoryStats stats;
    History history(config_with(/*size=*/100, /*max_bytes=*/1024, /*ttl=*/60s), stats);
    history.record_send("a", entry(1, "a1", kStart));
    history.record_broadcast("", entry(2, "all2", kStart));

    history.expire(kStart + 59s);

    const History::Replay replay = history.since("a", 0);
    EXPECT_EQ(offsets(replay), (Offsets{1, 2}));
    EXPECT_EQ(replay.gap, Gap{});
    EXPECT_EQ(evicted(stats, EvictionReason::expired), 0u);
}

// Once a client's messages have all gone and history.ttl more has passed, its mark goes too;
// what it marked is then reported, conservatively, to every resume from before it. The mark
// is stamped with the steady clock when the client empties, so the times here are taken from
// it; the margins are hours.
TEST(HistoryTest, ForgetAfterTtlLeavesAConservativeExpiredGapForEveryResumeFromBefore) {
    HistoryStats stats;
    History history(config_with(/*size=*/100, /*max_bytes=*/1024, /*ttl=*/1h), stats);
    const Clock::time_point start = Clock::now();
    history.record_send("a", entry(1, "a1", start));
    history.record_send("a", entry(2, "a2", start));
    history.expire(start + 2h);  // a's messages all go; its mark stays
    ASSERT_EQ(history.since("a", 0).gap, Gap{GapReason::expired});
    history.forget(start + 30min);
    EXPECT_EQ(history.since("other", 0).gap, Gap{}) << "forgotten before history.ttl passed";

    history.forget(start + 3h);

    EXPECT_EQ(history.since("a", 0).gap, Gap{GapReason::expired});
    EXPECT_EQ(history.since("a", 1).gap, Gap{GapReason::expired});
    EXPECT_EQ(history.since("other", 0).gap, Gap{GapReason::expired});
    EXPECT_EQ(history.since("other", 2).gap, Gap{});
}

TEST(HistoryTest, AllReturnsEverythingHeldWithoutAGap) {
    HistoryStats stats;
    History history(config_with(/*size=*/2), stats);
    history.record_send("a", entry(1, "a1"));
    history.record_send("a", entry(2, "a2"));
    history.record_send("a", entry(3, "a3"));  // a1 goes
    history.record_broadcast("b", entry(4, "not for b"));
    history.record_broadcast("", entry(5, "all5"));
    ASSERT_EQ(history.since("a", 0).gap, Gap{GapReason::evicted});

    const History::Replay all = history.all("a");

    EXPECT_EQ(texts(all), (std::vector<std::string>{"a2", "a3", "not for b", "all5"}));
    EXPECT_EQ(all.gap, Gap{});
    EXPECT_EQ(offsets(history.all("b")), (Offsets{5}));
}

TEST(HistoryTest, StatsHoldWhatIsKeptAndCountWhatLeftByReason) {
    HistoryStats stats;
    History history(config_with(/*size=*/2, /*max_bytes=*/1024, /*ttl=*/60s), stats);
    history.record_send("a", entry(1, "12345", kStart));
    history.record_send("a", entry(2, "12345", kStart));
    history.record_send("a", entry(3, "12345", kStart));  // size: offset 1 goes
    history.record_broadcast("", entry(4, "1234567890", kStart + 1s));
    EXPECT_EQ(stats.bytes.load(), 20);
    EXPECT_EQ(stats.entries.load(), 3);
    EXPECT_EQ(evicted(stats, EvictionReason::size), 1u);

    history.expire(kStart + 60s);  // offsets 2 and 3
    EXPECT_EQ(stats.bytes.load(), 10);
    EXPECT_EQ(stats.entries.load(), 1);
    EXPECT_EQ(evicted(stats, EvictionReason::expired), 2u);

    history.expire(kStart + 61s);  // the broadcast
    EXPECT_EQ(stats.bytes.load(), 0);
    EXPECT_EQ(stats.entries.load(), 0);
    EXPECT_EQ(evicted(stats, EvictionReason::size), 1u);
    EXPECT_EQ(evicted(stats, EvictionReason::memory), 0u);
    EXPECT_EQ(evicted(stats, EvictionReason::expired), 3u);
    EXPECT_EQ(stats.resumes.load(), 0u) << "History counts no resume: its Shard does";
}

}  // namespace
}  // namespace shardcast::dispatcher
