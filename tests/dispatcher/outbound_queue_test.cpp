#include "dispatcher/outbound_queue.hpp"

#include <gtest/gtest.h>

#include <string>

namespace shardcast::dispatcher {
namespace {

Outbound item(std::string text) { return Outbound{make_payload(std::move(text)), Clock::now()}; }

TEST(OutboundQueueTest, StartsEmptyWithoutAllocating) {
    OutboundQueue queue;
    EXPECT_TRUE(queue.empty());
    EXPECT_EQ(queue.bytes(), 0u);
}

TEST(OutboundQueueTest, PopsInPushOrderAcrossGrowth) {
    OutboundQueue queue;
    for (int i = 0; i < 3; ++i) queue.push(item(std::to_string(i)));
    EXPECT_EQ(*queue.pop().payload, "0");  // head moves, so the ring wraps on growth
    for (int i = 3; i < 40; ++i) queue.push(item(std::to_string(i)));
    for (int i = 1; i < 40; ++i) {
        ASSERT_EQ(*queue.pop().payload, std::to_string(i));
    }
    EXPECT_TRUE(queue.empty());
}

TEST(OutboundQueueTest, CountsBytes) {
    OutboundQueue queue;
    queue.push(item("abc"));
    queue.push(item("de"));
    EXPECT_EQ(queue.bytes(), 5u);
    queue.pop();
    EXPECT_EQ(queue.bytes(), 2u);
}

TEST(OutboundQueueTest, ClearReportsDropped) {
    OutboundQueue queue;
    queue.push(item("a"));
    queue.push(item("b"));
    EXPECT_EQ(queue.clear(), 2u);
    EXPECT_TRUE(queue.empty());
    EXPECT_EQ(queue.bytes(), 0u);
}

}  // namespace
}  // namespace shardcast::dispatcher
