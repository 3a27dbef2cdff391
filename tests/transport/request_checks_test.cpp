// request_checks: folded header lines and framing the server will not read two ways.
#include "transport/request_checks.hpp"

#include <gtest/gtest.h>

namespace shardcast::transport {
namespace {

TEST(RequestChecksTest, FindsObsoleteLineFolding) {
    EXPECT_TRUE(has_obs_fold("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n"));
    EXPECT_TRUE(has_obs_fold("GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n"));
    EXPECT_TRUE(has_obs_fold("GET / HTTP/1.1\r\n Host: x\r\n\r\n"));
    EXPECT_FALSE(has_obs_fold("GET / HTTP/1.1\r\nHost: x\r\nX-A: a b\r\n\r\n"));
}

TEST(RequestChecksTest, HeadEndsAtTheFirstBlankLineWithinTheLimit) {
    EXPECT_EQ(head_size("GET / HTTP/1.1\r\n\r\nbody\r\n\r\n", 100), 18u);
    EXPECT_EQ(head_size("GET / HTTP/1.1\r\n\r\n", 18), 18u);
    EXPECT_FALSE(head_size("GET / HTTP/1.1\r\n\r\n", 17)) << "the blank line ends past the limit";
    EXPECT_FALSE(head_size("GET / HTTP/1.1\r\n\r", 100));
    EXPECT_FALSE(head_size("", 100));
}

TEST(RequestChecksTest, OnlyChunkedAloneIsATransferCodingTheServerReads) {
    EXPECT_FALSE(check_framing("", false, true));
    EXPECT_FALSE(check_framing("chunked", true, false));
    EXPECT_FALSE(check_framing(" Chunked ", true, false));
    EXPECT_EQ(check_framing("xchunked", true, true)->status, 501u);
    EXPECT_EQ(check_framing("gzip, chunked", true, false)->status, 501u);
    EXPECT_EQ(check_framing("chunked, chunked", true, false)->status, 400u);
    EXPECT_EQ(check_framing("chunked", true, true)->status, 400u) << "both headers";
    EXPECT_EQ(check_framing("", true, false)->status, 400u) << "an empty coding list";
}

TEST(RequestChecksTest, UnknownCodingIsEchoedAsPrintableAscii) {
    const auto refused = check_framing("chunk\xf4z", true, false);
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 501u);
    EXPECT_NE(refused->message.find("\"chunk%F4z\""), std::string::npos) << refused->message;
}

}  // namespace
}  // namespace shardcast::transport
