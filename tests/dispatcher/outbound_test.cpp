// Outbound: copies share the one Payload and its bytes, and the Payload is released exactly
// when the last copy goes, whichever way copies are made, moved or replaced, and whether or
// not the thread keeps freed blocks for reuse.
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
    const std::weak_ptr<const shardcast::dispatcher::Content> watch = payload;
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
    const std::weak_ptr<const shardcast::dispatcher::Content> watch_a = a;
    const std::weak_ptr<const shardcast::dispatcher::Content> watch_b = b;
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

// With a ThreadCache, as on a shard thread, a freed block waits for reuse: the message in it
// must still go when its last Outbound does, and a reused block must carry only its new one.
TEST(OutboundTest, ACachedBlockReleasesItsMessageAndCarriesOnlyTheNextOne) {
    const Outbound::ThreadCache cache;
    Payload first = make_payload("first");
    const std::weak_ptr<const shardcast::dispatcher::Content> watch_first = first;
    const auto then = Clock::now();
    {
        const Outbound a(std::move(first), then);
        const Outbound b = a;
    }
    EXPECT_TRUE(watch_first.expired());

    std::vector<Outbound> many;
    for (int i = 0; i < 100; ++i) {
        many.emplace_back(make_payload("m" + std::to_string(i)), then + std::chrono::seconds(i));
    }
    many.clear();  // all 100 blocks to the cache
    const auto now = Clock::now();
    for (int i = 0; i < 100; ++i) {
        many.emplace_back(make_payload("n" + std::to_string(i)), now);
    }
    for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(many[i].text(), "n" + std::to_string(i));
        EXPECT_EQ(many[i].enqueued(), now);
    }
    // A reused block's count starts from one again: its copy outlives the original.
    const Outbound copy = many.front();
    many.clear();
    EXPECT_EQ(copy.text(), "n0");
}

}  // namespace
}  // namespace shardcast::dispatcher
