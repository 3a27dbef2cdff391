// Outbound: copies share the one Payload and its bytes, and the Payload is released exactly
// when the last copy goes, whichever way copies are made, moved or replaced.
#include "dispatcher/outbound.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace shardcast::dispatcher {
namespace {

using Clock = std::chrono::steady_clock;

TEST(OutboundTest, CopiesShareTheBytesAndTheLastOneReleasesThem) {
    Payload payload = make_payload("hello");
    const std::weak_ptr<const std::string> watch = payload;
    const auto enqueued = Clock::now();
    std::vector<Outbound> copies;
    {
        const Outbound first(std::move(payload), enqueued);
        for (int i = 0; i < 3; ++i) copies.push_back(first);
    }
    EXPECT_EQ(watch.use_count(), 1);  // one atomic reference, however many copies
    for (const Outbound& copy : copies) {
        EXPECT_EQ(&copy.text(), &copies.front().text());
        EXPECT_EQ(copy.text(), "hello");
        EXPECT_EQ(copy.size(), 5u);
        EXPECT_EQ(copy.enqueued(), enqueued);
    }
    copies.pop_back();
    copies.pop_back();
    EXPECT_FALSE(watch.expired());
    copies.pop_back();
    EXPECT_TRUE(watch.expired());
}

TEST(OutboundTest, MoveLeavesTheSourceEmptyAndAssignmentReleasesTheOldPayload) {
    Payload a = make_payload("a");
    Payload b = make_payload("b");
    const std::weak_ptr<const std::string> watch_a = a;
    const std::weak_ptr<const std::string> watch_b = b;
    Outbound held(std::move(a), Clock::now());
    Outbound moved(std::move(held));
    EXPECT_TRUE(held.empty());
    EXPECT_EQ(moved.text(), "a");

    moved = Outbound(std::move(b), Clock::now());
    EXPECT_TRUE(watch_a.expired());
    EXPECT_EQ(moved.text(), "b");

    Outbound other = moved;
    other = moved;  // assigning another copy of the same message keeps it alive
    EXPECT_FALSE(watch_b.expired());
    moved = Outbound();
    EXPECT_FALSE(watch_b.expired());
    other = Outbound();
    EXPECT_TRUE(watch_b.expired());
}

}  // namespace
}  // namespace shardcast::dispatcher
