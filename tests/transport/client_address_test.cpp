// client_address: whom a request is from, a proxy's word taken only when it is trusted.
#include "transport/client_address.hpp"

#include <gtest/gtest.h>

namespace shardcast::transport {
namespace {

namespace ip = boost::asio::ip;

ip::address at(const char* text) { return ip::make_address(text); }

std::vector<Cidr> trusting(std::initializer_list<const char*> ranges) {
    std::vector<Cidr> cidrs;
    for (const char* range : ranges) cidrs.push_back(*parse_cidr(range));
    return cidrs;
}

TEST(CidrTest, ParsesRangesAndSingleAddresses) {
    EXPECT_TRUE(parse_cidr("10.0.0.0/8")->contains(at("10.200.3.4")));
    EXPECT_FALSE(parse_cidr("10.0.0.0/8")->contains(at("11.0.0.1")));
    EXPECT_TRUE(parse_cidr("127.0.0.1")->contains(at("127.0.0.1")));
    EXPECT_FALSE(parse_cidr("127.0.0.1")->contains(at("127.0.0.2")));
    EXPECT_TRUE(parse_cidr("fd00::/8")->contains(at("fd12::1")));
    EXPECT_TRUE(parse_cidr("0.0.0.0/0")->contains(at("8.8.8.8")));
}

TEST(CidrTest, AnIpv4RangeMatchesItsIpv4MappedIpv6Form) {
    EXPECT_TRUE(parse_cidr("10.0.0.0/8")->contains(at("::ffff:10.1.2.3")));
    EXPECT_FALSE(parse_cidr("10.0.0.0/8")->contains(at("::1")));
}

TEST(CidrTest, RefusesMalformedRangesAndHostBitsPastThePrefix) {
    EXPECT_FALSE(parse_cidr("10.0.0.1/8")) << "host bits set: 10.0.0.0/8 or /32 was meant";
    EXPECT_FALSE(parse_cidr("10.0.0.0/33"));
    EXPECT_FALSE(parse_cidr("10.0.0.0/"));
    EXPECT_FALSE(parse_cidr("10.0.0/8"));
    EXPECT_FALSE(parse_cidr("nowhere"));
}

TEST(ClientAddressTest, AnUntrustedPeerIsTheClientWhateverItsHeadersSay) {
    EXPECT_EQ(
        client_address(at("198.51.100.7"), "203.0.113.5", "203.0.113.9", trusting({"10.0.0.0/8"})),
        at("198.51.100.7"));
}

TEST(ClientAddressTest, ATrustedProxyNamesTheClientInXForwardedFor) {
    const auto proxies = trusting({"10.0.0.0/8"});
    EXPECT_EQ(client_address(at("10.0.0.2"), "203.0.113.5", "", proxies), at("203.0.113.5"));
    // The right-most entry that is not a proxy of ours: a client cannot prepend its way out.
    EXPECT_EQ(client_address(at("10.0.0.2"), "1.2.3.4, 203.0.113.5, 10.9.9.9", "", proxies),
              at("203.0.113.5"));
}

TEST(ClientAddressTest, XRealIpCountsWhenThereIsNoXForwardedFor) {
    EXPECT_EQ(client_address(at("10.0.0.2"), "", " 203.0.113.9 ", trusting({"10.0.0.0/8"})),
              at("203.0.113.9"));
}

TEST(ClientAddressTest, GarbageInTheChainStopsAtTheLastAddressKnownGood) {
    const auto proxies = trusting({"10.0.0.0/8"});
    EXPECT_EQ(client_address(at("10.0.0.2"), "203.0.113.5, not-an-address", "", proxies),
              at("10.0.0.2"));
    EXPECT_EQ(client_address(at("10.0.0.2"), "bogus, 10.0.0.3", "", proxies), at("10.0.0.3"));
}

}  // namespace
}  // namespace shardcast::transport
