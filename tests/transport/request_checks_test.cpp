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

}  // namespace
}  // namespace shardcast::transport
