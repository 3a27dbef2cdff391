// The forwarding rules, row by row of their truth tables: each test fixes the inputs a rule
// depends on and walks every value of the rest.
#include "dispatcher/forwarding.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <string>

#include "dispatcher/enum_name.hpp"

namespace shardcast::dispatcher {
namespace {

constexpr std::array kKinds{Command::Kind::send, Command::Kind::broadcast,
                            Command::Kind::disconnect, Command::Kind::claim};
// The commands forwards() is asked about: sends and disconnects.
constexpr std::array kTargeted{Command::Kind::send, Command::Kind::disconnect};
constexpr std::array kOrigins{PublishKind::send, PublishKind::broadcast, PublishKind::batch,
                              PublishKind::bus};
// Everything published on this node, by any API.
constexpr std::array kLocalOrigins{PublishKind::send, PublishKind::broadcast, PublishKind::batch};
constexpr std::array kPolicies{DuplicatePolicy::replace, DuplicatePolicy::allow};
constexpr std::array kShards{std::size_t{0}, std::size_t{1}, std::size_t{7}};

Command command(Command::Kind kind, PublishKind origin) {
    Command c;
    c.kind = kind;
    c.origin = origin;
    c.client_id = "a";
    return c;
}

std::string trace(Command::Kind kind, PublishKind origin) {
    return "kind " + std::to_string(static_cast<int>(kind)) + ", origin " +
           std::string(enum_name(origin));
}

TEST(ForwardingTest, CountsASendOnEveryShard) {
    for (PublishKind origin : kOrigins) {
        for (std::size_t shard : kShards) {
            SCOPED_TRACE(trace(Command::Kind::send, origin) + ", shard " + std::to_string(shard));
            EXPECT_TRUE(counts(command(Command::Kind::send, origin), shard));
        }
    }
}

// Every shard sees every broadcast; shard 0 alone counts it, so it is counted once.
TEST(ForwardingTest, CountsABroadcastOnShardZeroOnly) {
    for (PublishKind origin : kOrigins) {
        for (std::size_t shard : kShards) {
            SCOPED_TRACE(trace(Command::Kind::broadcast, origin) + ", shard " +
                         std::to_string(shard));
            EXPECT_EQ(counts(command(Command::Kind::broadcast, origin), shard), shard == 0);
        }
    }
}

TEST(ForwardingTest, CountsNoDisconnectOrClaim) {
    for (Command::Kind kind : {Command::Kind::disconnect, Command::Kind::claim}) {
        for (PublishKind origin : kOrigins) {
            for (std::size_t shard : kShards) {
                SCOPED_TRACE(trace(kind, origin) + ", shard " + std::to_string(shard));
                EXPECT_FALSE(counts(command(kind, origin), shard));
            }
        }
    }
}

TEST(ForwardingTest, ForwardsNothingWithoutALink) {
    for (Command::Kind kind : kKinds) {
        for (PublishKind origin : kOrigins) {
            for (bool held : {false, true}) {
                for (DuplicatePolicy policy : kPolicies) {
                    SCOPED_TRACE(trace(kind, origin));
                    EXPECT_FALSE(forwards(command(kind, origin), held, /*linked=*/false, policy));
                }
            }
        }
    }
}

// What came from another node is delivered here only: forwarding it again would loop.
TEST(ForwardingTest, ForwardsNothingThatCameFromTheBus) {
    for (Command::Kind kind : kTargeted) {
        for (bool held : {false, true}) {
            for (DuplicatePolicy policy : kPolicies) {
                SCOPED_TRACE(trace(kind, PublishKind::bus) + ", held " + std::to_string(held));
                EXPECT_FALSE(
                    forwards(command(kind, PublishKind::bus), held, /*linked=*/true, policy));
            }
        }
    }
}

TEST(ForwardingTest, ForwardsAnIdNotHeldHere) {
    for (Command::Kind kind : kTargeted) {
        for (PublishKind origin : kLocalOrigins) {
            for (DuplicatePolicy policy : kPolicies) {
                SCOPED_TRACE(trace(kind, origin));
                EXPECT_TRUE(
                    forwards(command(kind, origin), /*held_here=*/false, /*linked=*/true, policy));
            }
        }
    }
}

// Under replace an id has its sessions on one node at most: held here, nowhere else.
TEST(ForwardingTest, KeepsAnIdHeldHereWhenNewSessionsReplaceOlderOnes) {
    for (Command::Kind kind : kTargeted) {
        for (PublishKind origin : kLocalOrigins) {
            SCOPED_TRACE(trace(kind, origin));
            EXPECT_FALSE(forwards(command(kind, origin), /*held_here=*/true, /*linked=*/true,
                                  DuplicatePolicy::replace));
        }
    }
}

// Under allow an id may hold sessions on several nodes at once: held here, maybe elsewhere too.
TEST(ForwardingTest, ForwardsAnIdHeldHereWhenItMayHoldSessionsOnSeveralNodes) {
    for (Command::Kind kind : kTargeted) {
        for (PublishKind origin : kLocalOrigins) {
            SCOPED_TRACE(trace(kind, origin));
            EXPECT_TRUE(forwards(command(kind, origin), /*held_here=*/true, /*linked=*/true,
                                 DuplicatePolicy::allow));
        }
    }
}

TEST(ForwardingTest, ForwardsABroadcastFromShardZeroOnly) {
    for (PublishKind origin : kLocalOrigins) {
        for (std::size_t shard : kShards) {
            SCOPED_TRACE(trace(Command::Kind::broadcast, origin) + ", shard " +
                         std::to_string(shard));
            EXPECT_EQ(forwards_broadcast(command(Command::Kind::broadcast, origin), shard, true),
                      shard == 0);
        }
    }
}

TEST(ForwardingTest, ForwardsNoBroadcastWithoutALink) {
    for (PublishKind origin : kOrigins) {
        for (std::size_t shard : kShards) {
            SCOPED_TRACE(trace(Command::Kind::broadcast, origin) + ", shard " +
                         std::to_string(shard));
            EXPECT_FALSE(forwards_broadcast(command(Command::Kind::broadcast, origin), shard,
                                            /*linked=*/false));
        }
    }
}

TEST(ForwardingTest, ForwardsNoBroadcastThatCameFromTheBus) {
    for (std::size_t shard : kShards) {
        SCOPED_TRACE("shard " + std::to_string(shard));
        EXPECT_FALSE(forwards_broadcast(command(Command::Kind::broadcast, PublishKind::bus), shard,
                                        /*linked=*/true));
    }
}

}  // namespace
}  // namespace shardcast::dispatcher
