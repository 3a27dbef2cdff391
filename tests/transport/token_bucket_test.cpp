// TokenBucket: a burst at once, then the rate, on a millisecond clock that may wrap.
#include "transport/token_bucket.hpp"

#include <gtest/gtest.h>

namespace shardcast::transport {
namespace {

TEST(TokenBucketTest, GivesTheBurstThenRefillsAtTheRate) {
    TokenBucket bucket(10);
    int taken = 0;
    while (bucket.take(1, 1000, 100, 10)) ++taken;
    EXPECT_EQ(taken, 10);
    EXPECT_FALSE(bucket.take(1, 1005, 100, 10)) << "5 ms at 100/s is half a token";
    EXPECT_TRUE(bucket.take(1, 1010, 100, 10));
    EXPECT_TRUE(bucket.take(5, 1060, 100, 10));
    EXPECT_FALSE(bucket.take(20, 100000, 100, 10)) << "more than the burst never fits";
}

TEST(TokenBucketTest, RefillsAcrossTheClockWrapping) {
    TokenBucket bucket(1);
    ASSERT_TRUE(bucket.take(1, 0xFFFF'FFF0u, 1000, 1));
    EXPECT_FALSE(bucket.take(1, 0xFFFF'FFF0u, 1000, 1));
    EXPECT_TRUE(bucket.take(1, 0x10u, 1000, 1)) << "32 ms later, across the wrap";
}

}  // namespace
}  // namespace shardcast::transport
