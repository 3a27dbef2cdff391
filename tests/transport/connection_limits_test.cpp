// ConnectionLimits: slots in all and per address, given back when a slot is destroyed.
#include "transport/connection_limits.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace shardcast::transport {
namespace {

namespace ip = boost::asio::ip;
using Verdict = ConnectionLimits::Verdict;

TEST(ConnectionLimitsTest, RefusesPastTheTotalAndGivesSlotsBack) {
    ConnectionLimits limits(2, 0);
    auto a = limits.acquire(ip::make_address("10.0.0.1"));
    auto b = limits.acquire(ip::make_address("10.0.0.2"));
    EXPECT_EQ(limits.acquire(ip::make_address("10.0.0.3")).verdict, Verdict::server_full);
    EXPECT_EQ(limits.total(), 2u);
    a.slot = {};
    EXPECT_EQ(limits.total(), 1u);
    EXPECT_EQ(limits.acquire(ip::make_address("10.0.0.3")).verdict, Verdict::admitted);
}

TEST(ConnectionLimitsTest, RefusesPastThePerAddressLimitOnlyForThatAddress) {
    ConnectionLimits limits(0, 2);
    std::vector<ConnectionLimits::Slot> held;
    for (int i = 0; i < 2; ++i) {
        auto grant = limits.acquire(ip::make_address("203.0.113.5"));
        ASSERT_EQ(grant.verdict, Verdict::admitted);
        held.push_back(std::move(grant.slot));
    }
    EXPECT_EQ(limits.acquire(ip::make_address("203.0.113.5")).verdict, Verdict::address_full);
    EXPECT_EQ(limits.acquire(ip::make_address("::ffff:203.0.113.5")).verdict, Verdict::address_full)
        << "the IPv4-mapped form is the same address";
    EXPECT_EQ(limits.acquire(ip::make_address("203.0.113.6")).verdict, Verdict::admitted);
    EXPECT_EQ(limits.total(), 2u) << "refused and released grants hold nothing";
    held.pop_back();
    EXPECT_EQ(limits.acquire(ip::make_address("203.0.113.5")).verdict, Verdict::admitted);
}

TEST(ConnectionLimitsTest, AMovedSlotIsReleasedOnce) {
    ConnectionLimits limits(1, 1);
    auto grant = limits.acquire(ip::make_address("10.0.0.1"));
    ConnectionLimits::Slot moved = std::move(grant.slot);
    EXPECT_FALSE(grant.slot);
    EXPECT_TRUE(moved);
    grant.slot = {};
    EXPECT_EQ(limits.total(), 1u);
    moved = {};
    EXPECT_EQ(limits.total(), 0u);
}

}  // namespace
}  // namespace shardcast::transport
