#include "dispatcher/router.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace shardcast::dispatcher {
namespace {

TEST(RouterTest, SameIdAlwaysMapsToSameShard) {
    Router router(8);
    EXPECT_EQ(router.shard_of("user-42"), router.shard_of(std::string("user-") + "42"));
}

TEST(RouterTest, HashIsStableAcrossBuilds) {
    // FNV-1a 64 of "a": a published constant, so a change of hash would break this.
    EXPECT_EQ(stable_hash("a"), 0xaf63dc4c8601ec8cull);
    EXPECT_EQ(stable_hash(""), 14695981039346656037ull);
}

TEST(RouterTest, SpreadsIdsOverAllShards) {
    Router router(4);
    std::vector<int> counts(4, 0);
    for (int i = 0; i < 4000; ++i) {
        ++counts[router.shard_of("client-" + std::to_string(i))];
    }
    for (int c : counts) {
        EXPECT_GT(c, 800) << "a shard got far less than its share";
    }
}

TEST(RouterTest, OneShardTakesEverything) {
    Router router(1);
    EXPECT_EQ(router.shard_of("x"), 0u);
    EXPECT_EQ(router.shard_of("y"), 0u);
}

}  // namespace
}  // namespace shardcast::dispatcher
