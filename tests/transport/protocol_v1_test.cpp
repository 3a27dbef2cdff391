// shardcast.v1: which client frames are refresh requests, and what the server answers.
#include "transport/protocol_v1.hpp"

#include <gtest/gtest.h>

#include <string>

namespace shardcast::transport::v1 {
namespace {

TEST(ProtocolV1Test, RefreshIsAnObjectWithOneStringMember) {
    const auto refresh = parse_refresh(R"( {"refresh":"a.b.c"} )");
    ASSERT_TRUE(refresh);
    EXPECT_EQ(refresh->token, "a.b.c");
    EXPECT_TRUE(refresh->error.empty());
}

TEST(ProtocolV1Test, OtherFramesAreData) {
    EXPECT_FALSE(parse_refresh("hello"));
    EXPECT_FALSE(parse_refresh(R"({"chat":"refresh"})"));
    EXPECT_FALSE(parse_refresh(R"(["refresh"])"));
    EXPECT_FALSE(parse_refresh(R"({"refresh":)")) << "not JSON: data";
}

TEST(ProtocolV1Test, AMalformedRefreshIsStillARefreshAndSaysWhy) {
    const auto number = parse_refresh(R"({"refresh":5})");
    ASSERT_TRUE(number);
    EXPECT_TRUE(number->token.empty());
    EXPECT_FALSE(number->error.empty());
    const auto extra = parse_refresh(R"({"refresh":"a","more":1})");
    ASSERT_TRUE(extra);
    EXPECT_FALSE(extra->error.empty());
}

TEST(ProtocolV1Test, RefreshedNamesTheNewExpiry) {
    EXPECT_EQ(refreshed(1796641992), R"({"refreshed":{"exp":1796641992}})");
    EXPECT_EQ(refreshed(std::nullopt), R"({"refreshed":{"exp":null}})");
}

}  // namespace
}  // namespace shardcast::transport::v1
