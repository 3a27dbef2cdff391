#include "dispatcher/outbound_queue.hpp"

#include <gtest/gtest.h>

#include <string>

namespace shardcast::dispatcher {
namespace {

Outbound item(std::string text) {
    return Outbound(make_payload(std::move(text)), std::chrono::steady_clock::now());
}

TEST(OutboundQueueTest, StartsEmptyWithoutAllocating) {
    OutboundQueue queue;
    EXPECT_TRUE(queue.empty());
    EXPECT_EQ(queue.bytes(), 0u);
}

TEST(OutboundQueueTest, PopsInPushOrderAcrossGrowth) {
    OutboundQueue queue;
    for (int i = 0; i < 3; ++i) queue.push(item(std::to_string(i)));
    EXPECT_EQ(queue.pop().text(), "0");  // head moves, so the ring wraps on growth
    for (int i = 3; i < 40; ++i) queue.push(item(std::to_string(i)));
    for (int i = 1; i < 40; ++i) {
        ASSERT_EQ(queue.pop().text(), std::to_string(i));
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

// The front messages are being written: taking one behind them keeps them first, in order,
// even when the ring has wrapped.
TEST(OutboundQueueTest, TakeRemovesOneMessageAndKeepsTheOthersInOrder) {
    OutboundQueue queue;
    queue.push(item("x"));
    queue.push(item("y"));
    queue.pop();
    queue.pop();  // head now in the middle of the ring
    for (const char* text : {"a", "b", "cc", "d", "e"}) queue.push(item(text));
    EXPECT_EQ(queue.take(2).text(), "cc");
    EXPECT_EQ(queue.bytes(), 4u);
    EXPECT_EQ(queue.at(0).text(), "a");
    EXPECT_EQ(queue.at(1).text(), "b");
    EXPECT_EQ(queue.at(2).text(), "d");
    EXPECT_EQ(queue.take(0).text(), "a");
    for (const char* text : {"b", "d", "e"}) ASSERT_EQ(queue.pop().text(), text);
    EXPECT_TRUE(queue.empty());
}

TEST(OutboundQueueTest, TruncateKeepsTheFrontAndReportsDropped) {
    OutboundQueue queue;
    for (const char* text : {"a", "bb", "ccc"}) queue.push(item(text));
    EXPECT_EQ(queue.truncate(1), 2u);
    EXPECT_EQ(queue.size(), 1u);
    EXPECT_EQ(queue.bytes(), 1u);
    EXPECT_EQ(queue.at(0).text(), "a");
    EXPECT_EQ(queue.truncate(1), 0u);
    EXPECT_EQ(queue.truncate(0), 1u);
    EXPECT_TRUE(queue.empty());
}

}  // namespace
}  // namespace shardcast::dispatcher
