// The Inbox on its own: the stamps that give publishes their order, and the flag that wakes
// the shard once per burst. The test thread plays the shard; producers are plain threads.
#include "dispatcher/inbox.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace shardcast::dispatcher {
namespace {

Command to(std::string client_id) {
    Command command;
    command.client_id = std::move(client_id);
    return command;
}

// Everything in the inbox, in the order it pops.
std::vector<Command> pop_all(Inbox& inbox) {
    std::vector<Command> out;
    while (inbox.pop_bulk(out, 64) > 0) {
    }
    return out;
}

// Each push runs on a new thread, started after the previous one was joined: a push that
// returned before another began has the smaller stamp, whichever thread made it.
TEST(InboxTest, StampsFollowPushOrderAcrossThreads) {
    Inbox inbox;
    for (int i = 0; i < 8; ++i) {
        std::thread([&inbox, i] { inbox.push(to(std::to_string(i))); }).join();
    }
    // Popped grouped by producer, in no particular order: read each push's stamp by its id.
    const std::vector<Command> popped = pop_all(inbox);
    ASSERT_EQ(popped.size(), 8u);
    std::vector<std::uint64_t> stamps(8);
    for (const Command& c : popped) stamps[std::stoul(c.client_id)] = c.stamp;
    for (std::size_t i = 1; i < stamps.size(); ++i) {
        EXPECT_LT(stamps[i - 1], stamps[i]) << "push " << i;
    }
}

// Producers racing: every push takes its own stamp, and each producer's stamps rise with its
// pushes.
TEST(InboxTest, ConcurrentPushesTakeDistinctStampsRisingPerProducer) {
    constexpr int kProducers = 4;
    constexpr int kPushes = 2000;
    Inbox inbox;
    std::latch start(kProducers);
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers.emplace_back([&, p] {
            start.arrive_and_wait();
            for (int i = 0; i < kPushes; ++i) {
                inbox.push(to(std::to_string(p) + ":" + std::to_string(i)));
            }
        });
    }
    for (auto& t : producers) t.join();

    const std::vector<Command> popped = pop_all(inbox);
    ASSERT_EQ(popped.size(), static_cast<std::size_t>(kProducers * kPushes));
    std::set<std::uint64_t> stamps;
    std::vector<std::vector<std::uint64_t>> per_producer(kProducers,
                                                         std::vector<std::uint64_t>(kPushes));
    for (const Command& c : popped) {
        stamps.insert(c.stamp);
        const std::size_t colon = c.client_id.find(':');
        const int p = std::stoi(c.client_id.substr(0, colon));
        const int i = std::stoi(c.client_id.substr(colon + 1));
        per_producer[p][i] = c.stamp;
    }
    EXPECT_EQ(stamps.size(), popped.size()) << "two pushes took the same stamp";
    EXPECT_EQ(*stamps.rbegin(), popped.size() - 1);
    for (int p = 0; p < kProducers; ++p) {
        EXPECT_TRUE(std::is_sorted(per_producer[p].begin(), per_producer[p].end()))
            << "producer " << p;
    }
}

TEST(InboxTest, OnlyTheFirstPushOfABurstIsToldToScheduleADrain) {
    Inbox inbox;
    const Inbox::PushResult first = inbox.push(to("a"));
    EXPECT_TRUE(first.queued);
    EXPECT_TRUE(first.schedule_drain);
    for (int i = 0; i < 3; ++i) {
        const Inbox::PushResult next = inbox.push(to("a"));
        EXPECT_TRUE(next.queued);
        EXPECT_FALSE(next.schedule_drain);
    }
}

// However the producers interleave, one of them flips the flag: one wake-up per burst.
TEST(InboxTest, OnlyOneOfManyConcurrentProducersIsToldToScheduleADrain) {
    constexpr int kProducers = 4;
    constexpr int kPushes = 1000;
    Inbox inbox;
    std::latch start(kProducers);
    std::atomic<int> told{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers.emplace_back([&] {
            start.arrive_and_wait();
            for (int i = 0; i < kPushes; ++i) {
                if (inbox.push(to("a")).schedule_drain) told.fetch_add(1);
            }
        });
    }
    for (auto& t : producers) t.join();
    EXPECT_EQ(told.load(), 1);
}

// The shard popped everything: nothing is left for another turn, and the next push must wake
// the shard again.
TEST(InboxTest, FinishDrainWithNothingLeftIsFalseAndTheNextPushSchedules) {
    Inbox inbox;
    ASSERT_TRUE(inbox.push(to("a")).schedule_drain);
    pop_all(inbox);
    EXPECT_FALSE(inbox.finish_drain());
    EXPECT_TRUE(inbox.push(to("a")).schedule_drain);
}

// A push after the last pop found the flag still set and posted nothing: the shard itself
// must drain again, and keeps the flag set so the next push does not post another drain.
TEST(InboxTest, FinishDrainWithACommandLeftUnscheduledIsTrueAndTheNextPushDoesNotSchedule) {
    Inbox inbox;
    ASSERT_TRUE(inbox.push(to("a")).schedule_drain);
    pop_all(inbox);
    ASSERT_FALSE(inbox.push(to("late")).schedule_drain);
    EXPECT_TRUE(inbox.finish_drain());
    EXPECT_FALSE(inbox.push(to("later")).schedule_drain);
    EXPECT_EQ(pop_all(inbox).size(), 2u);
}

TEST(InboxTest, FinishDrainOnAnInboxNeverPushedIsFalse) {
    Inbox inbox;
    EXPECT_FALSE(inbox.finish_drain());
    EXPECT_TRUE(inbox.push(to("a")).schedule_drain);
}

TEST(InboxTest, PopBulkOnAnEmptyInboxReturnsZeroAndAppendsNothing) {
    Inbox inbox;
    std::vector<Command> out;
    out.push_back(to("already there"));
    EXPECT_EQ(inbox.pop_bulk(out, 16), 0u);
    EXPECT_EQ(out.size(), 1u);
    inbox.push(to("a"));
    pop_all(inbox);
    EXPECT_EQ(inbox.pop_bulk(out, 16), 0u);
    EXPECT_EQ(out.size(), 1u);
}

TEST(InboxTest, PopBulkAppendsAtMostMaxInPushOrder) {
    Inbox inbox;
    for (int i = 0; i < 5; ++i) inbox.push(to(std::to_string(i)));
    std::vector<Command> out;
    EXPECT_EQ(inbox.pop_bulk(out, 3), 3u);
    EXPECT_EQ(inbox.pop_bulk(out, 3), 2u);
    ASSERT_EQ(out.size(), 5u);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(out[i].client_id, std::to_string(i));
}

}  // namespace
}  // namespace shardcast::dispatcher
