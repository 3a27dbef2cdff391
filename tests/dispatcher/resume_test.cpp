// Resume on one shard, with in-memory sessions: what a session that asks for what its client
// missed is given (the messages after its offset, in order, ahead of anything later), the
// gaps it is told of, the counters, and the offsets that make it possible. One shard, so every
// offset the tests expect is the count of what the shard has delivered.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "dispatcher/dispatcher.hpp"
#include "tests/support/sink_session.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::dispatcher {
namespace {

using test::SinkSession;
using test::wait_until;
using namespace std::chrono_literals;

DispatcherConfig one_shard() {
    DispatcherConfig config;
    config.shards = 1;
    return config;
}

// Messages the shard holds in history, once every publish so far has been delivered.
bool holds(Dispatcher& d, std::int64_t messages) {
    return wait_until([&] { return d.shard(0).stats().history.entries.load() == messages; }, 5s);
}

std::uint64_t gaps(const Shard& shard, GapReason reason) {
    return shard.stats().history.gaps[enum_index(reason)].load();
}

using Offsets = std::vector<std::uint64_t>;
using Texts = std::vector<std::string>;

// The client has offset 1 and resumes: targeted sends and broadcasts after it come back in
// offset order; another client's send and a broadcast that excepted this client do not.
TEST(ResumeTest, ResumeInTheSameEpochReplaysWhatCameAfterSinceInOffsetOrder) {
    Dispatcher d(one_shard());
    d.start();
    d.send("a", make_payload("a1"));
    d.broadcast(make_payload("all2"));
    d.send("b", make_payload("b3"));
    d.send("a", make_payload("a4"));
    d.broadcast(make_payload("not for a 5"), "a");
    d.send("a", make_payload("a6"));
    ASSERT_TRUE(holds(d, 6)) << "the publishes were never delivered";

    auto a = SinkSession::open_resumed(d.shard(0), "a", 1, d.shard(0).epoch());
    d.send("a", make_payload("end"));  // anything the replay sent twice comes before it

    ASSERT_TRUE(wait_until([&] { return a->received_count() >= 4; }, 5s));
    EXPECT_EQ(a->received(), (Texts{"all2", "a4", "a6", "end"}));
    EXPECT_EQ(a->offsets(), (Offsets{2, 4, 6, 7}));
    EXPECT_TRUE(a->gaps().empty());
    d.stop(1s);
}

// The seam: what was delivered before the attach comes from history, what is delivered after
// it goes to the session, and the replay is queued first. Nothing twice, nothing missing.
TEST(ResumeTest, TheReplayIsQueuedAheadOfWhatIsDeliveredAfterTheAttach) {
    Dispatcher d(one_shard());
    d.start();
    for (int i = 1; i <= 5; ++i) d.send("a", make_payload("m" + std::to_string(i)));
    ASSERT_TRUE(holds(d, 5));

    auto a = SinkSession::open_resumed(d.shard(0), "a", 3, d.shard(0).epoch());
    d.send("a", make_payload("m6"));
    d.broadcast(make_payload("m7"));

    ASSERT_TRUE(wait_until([&] { return a->received_count() == 4; }, 5s));
    EXPECT_EQ(a->received(), (Texts{"m4", "m5", "m6", "m7"}));
    EXPECT_EQ(a->offsets(), (Offsets{4, 5, 6, 7}));
    EXPECT_EQ(d.shard(0).stats().history.replayed.load(), 2u);
    d.stop(1s);
}

// The same seam with a producer publishing throughout, before the attach and after it: the
// client gets every message after since exactly once, in order, wherever the attach falls.
TEST(ResumeTest, AResumeWhileMessagesFlowGetsEachMessageAfterSinceOnceAndInOrder) {
    DispatcherConfig config = one_shard();
    config.history.size = 1'000'000;
    Dispatcher d(config);
    d.start();
    constexpr std::int64_t kSince = 100;
    constexpr std::int64_t kAfterAttach = 1000;  // delivered after the attach, at least
    const HistoryStats& history = d.shard(0).stats().history;
    std::atomic<bool> stop{false};
    std::uint64_t published = 0;
    // Kept at most 64 messages ahead of the shard, so the run stays short.
    std::thread producer([&] {
        while (!stop.load()) {
            if (static_cast<std::int64_t>(published) - history.entries.load() < 64) {
                d.send("a", make_payload(std::to_string(++published)));
            } else {
                std::this_thread::yield();
            }
        }
    });
    const bool flowing = wait_until([&] { return history.entries.load() >= kSince; }, 10s);

    auto a = SinkSession::open_resumed(d.shard(0), "a", kSince, d.shard(0).epoch());
    const std::int64_t at_attach = history.entries.load();
    const bool flowed_on =
        wait_until([&] { return history.entries.load() >= at_attach + kAfterAttach; }, 10s);
    stop = true;
    producer.join();
    ASSERT_TRUE(flowing && flowed_on) << "the producer's messages were not delivered";
    d.send("a", make_payload("end"));  // anything sent twice comes before it

    Texts texts;
    Offsets offsets;
    for (std::uint64_t n = kSince + 1; n <= published + 1; ++n) {
        texts.push_back(n <= published ? std::to_string(n) : "end");
        offsets.push_back(n);
    }
    EXPECT_TRUE(wait_until([&] { return a->received_count() >= texts.size(); }, 30s))
        << a->received_count() << " of " << texts.size();
    EXPECT_EQ(a->received(), texts);
    EXPECT_EQ(a->offsets(), offsets);
    EXPECT_TRUE(a->gaps().empty());
    d.stop(1s);
}

// Offsets from another epoch mean nothing here: everything held is sent, behind the gap.
TEST(ResumeTest, ResumeFromAnotherEpochGetsAnEpochGapThenEverythingHeld) {
    Dispatcher d(one_shard());
    d.start();
    d.send("a", make_payload("a1"));
    d.broadcast(make_payload("all2"));
    d.send("a", make_payload("a3"));
    ASSERT_TRUE(holds(d, 3));
    ASSERT_NE(d.shard(0).epoch(), "0123456789abcdef");

    auto a = SinkSession::open_resumed(d.shard(0), "a", 2, "0123456789abcdef");
    d.send("a", make_payload("end"));

    ASSERT_TRUE(wait_until([&] { return a->received_count() >= 4; }, 5s));
    EXPECT_EQ(a->gaps(), std::vector<GapReason>{GapReason::epoch});
    EXPECT_EQ(a->received(), (Texts{"a1", "all2", "a3", "end"}));
    EXPECT_EQ(a->offsets(), (Offsets{1, 2, 3, 4}));
    d.stop(1s);
}

TEST(ResumeTest, WithoutHistoryAResumeGetsAnUnavailableGapAndNothingReplayed) {
    DispatcherConfig config = one_shard();
    config.history.enabled = false;
    Dispatcher d(config);
    d.start();
    d.send("a", make_payload("lost"));
    ASSERT_TRUE(wait_until(
        [&] {
            return d.shard(0).stats().failed[enum_index(FailureReason::no_session)].load() == 1;
        },
        5s));

    auto a = SinkSession::open_resumed(d.shard(0), "a", 0, d.shard(0).epoch());
    d.send("a", make_payload("live"));

    ASSERT_TRUE(wait_until([&] { return a->received_count() >= 1; }, 5s));
    EXPECT_EQ(a->gaps(), std::vector<GapReason>{GapReason::unavailable});
    EXPECT_EQ(a->received(), Texts{"live"});
    EXPECT_EQ(a->offsets(), Offsets{0});  // nothing is kept: nothing has a position
    EXPECT_EQ(d.shard(0).stats().history.replayed.load(), 0u);
    EXPECT_EQ(d.shard(0).stats().history.entries.load(), 0);
    d.stop(1s);
}

TEST(ResumeTest, ResumeFromBeforeAnEvictedMessageGetsAnEvictedGapThenWhatIsLeft) {
    DispatcherConfig config = one_shard();
    config.history.size = 2;
    Dispatcher d(config);
    d.start();
    for (int i = 1; i <= 4; ++i) d.send("a", make_payload("m" + std::to_string(i)));
    ASSERT_TRUE(wait_until(
        [&] {
            return d.shard(0).stats().history.evicted[enum_index(EvictionReason::size)].load() == 2;
        },
        5s));

    auto a = SinkSession::open_resumed(d.shard(0), "a", 1, d.shard(0).epoch());
    d.send("a", make_payload("end"));

    ASSERT_TRUE(wait_until([&] { return a->received_count() >= 3; }, 5s));
    EXPECT_EQ(a->gaps(), std::vector<GapReason>{GapReason::evicted});
    EXPECT_EQ(a->received(), (Texts{"m3", "m4", "end"}));
    d.stop(1s);
}

TEST(ResumeTest, CountersCountEachResumeTheMessagesReplayedAndTheGapsByReason) {
    Dispatcher d(one_shard());
    d.start();
    for (int i = 1; i <= 3; ++i) d.send("a", make_payload("a" + std::to_string(i)));
    d.send("b", make_payload("b4"));
    ASSERT_TRUE(holds(d, 4));
    Shard& shard = d.shard(0);

    auto a = SinkSession::open_resumed(shard, "a", 1, shard.epoch());  // a2, a3
    auto b = SinkSession::open_resumed(shard, "b", 0, "another");      // gap, b4
    auto c = SinkSession::open_resumed(shard, "c", 4, shard.epoch());  // nothing

    ASSERT_TRUE(wait_until([&] { return a->received_count() == 2; }, 5s));
    ASSERT_TRUE(wait_until([&] { return b->received_count() == 1; }, 5s));
    const HistoryStats& stats = shard.stats().history;
    EXPECT_EQ(stats.resumes.load(), 3u);
    EXPECT_EQ(stats.replayed.load(), 3u);
    EXPECT_EQ(gaps(shard, GapReason::epoch), 1u);
    EXPECT_EQ(gaps(shard, GapReason::evicted), 0u);
    EXPECT_EQ(gaps(shard, GapReason::expired), 0u);
    EXPECT_EQ(gaps(shard, GapReason::unavailable), 0u);
    EXPECT_EQ(c->received_count(), 0u);
    d.stop(1s);
}

// Every send and broadcast the shard delivers takes the next offset, so each client sees its
// own increase, with holes where the other's messages went.
TEST(ResumeTest, OffsetsIncreaseAlongEachClientsStreamAcrossSendsAndBroadcasts) {
    Dispatcher d(one_shard());
    d.start();
    auto a = SinkSession::open(d.shard(0), "a");
    auto b = SinkSession::open(d.shard(0), "b");

    d.send("a", make_payload("a1"));
    d.broadcast(make_payload("all2"));
    d.send("b", make_payload("b3"));
    d.broadcast(make_payload("not for a 4"), "a");
    d.send("a", make_payload("a5"));

    ASSERT_TRUE(wait_until([&] { return a->received_count() == 3; }, 5s));
    ASSERT_TRUE(wait_until([&] { return b->received_count() == 3; }, 5s));
    EXPECT_EQ(a->offsets(), (Offsets{1, 2, 5}));
    EXPECT_EQ(b->offsets(), (Offsets{2, 3, 4}));
    d.stop(1s);
}

}  // namespace
}  // namespace shardcast::dispatcher
