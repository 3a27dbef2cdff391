// QueueDelay on its own: the age of a backlog from the time its oldest command was
// published, zero with nothing waiting. Times are made up, so nothing here waits.
#include "dispatcher/queue_delay.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace shardcast::dispatcher {
namespace {

using namespace std::chrono_literals;

// Any time well after boot: a steady clock's zero means "nothing waiting".
const Clock::time_point kT0 = Clock::time_point(1h);

TEST(QueueDelayTest, NothingWaitingHasNoAge) {
    const QueueDelay delay;
    EXPECT_EQ(delay.age(kT0), Clock::duration::zero());
}

TEST(QueueDelayTest, AgeCountsFromTheCommandThatBeganTheBacklog) {
    QueueDelay delay;
    delay.start(kT0);
    EXPECT_EQ(delay.age(kT0 + 25ms), 25ms);
}

// The shard moves the mark forward as it delivers: the age is the oldest still waiting.
TEST(QueueDelayTest, AgeFollowsTheOldestStillUndelivered) {
    QueueDelay delay;
    delay.start(kT0);
    delay.oldest(kT0 + 20ms);
    EXPECT_EQ(delay.age(kT0 + 25ms), 5ms);
}

TEST(QueueDelayTest, ClearedMeansNothingWaits) {
    QueueDelay delay;
    delay.start(kT0);
    delay.clear();
    EXPECT_EQ(delay.age(kT0 + 1s), Clock::duration::zero());
}

// A reader's clock can trail the publish time the shard stored after it read the clock.
TEST(QueueDelayTest, AReaderBehindTheMarkSeesNoAgeRatherThanANegativeOne) {
    QueueDelay delay;
    delay.start(kT0 + 1ms);
    EXPECT_EQ(delay.age(kT0), Clock::duration::zero());
}

}  // namespace
}  // namespace shardcast::dispatcher
