// ascii: case-insensitive matches of header values, and tokens in a list, read within the
// value's bounds (each case below has its value at the very end of a heap buffer, so ASan
// sees any read past it, as it saw Beast's iequals do).
#include "transport/ascii.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string_view>

namespace shardcast::transport {
namespace {

// A copy of text in a heap buffer of exactly its size: nothing follows it.
class Exact {
public:
    explicit Exact(std::string_view text) : bytes_(new char[text.size()]), size_(text.size()) {
        std::memcpy(bytes_.get(), text.data(), text.size());
    }
    std::string_view view() const { return {bytes_.get(), size_}; }

private:
    std::unique_ptr<char[]> bytes_;
    std::size_t size_;
};

TEST(AsciiTest, EqualsIgnoresAsciiCaseOnly) {
    EXPECT_TRUE(ascii_iequals(Exact("WebSocket").view(), "websocket"));
    EXPECT_TRUE(ascii_iequals(Exact("100-CONTINUE").view(), "100-continue"));
    EXPECT_FALSE(ascii_iequals(Exact("websockets").view(), "websocket"));
    EXPECT_FALSE(ascii_iequals(Exact("websocke\xd4").view(), "websocket"));
    EXPECT_TRUE(ascii_iequals(Exact("").view(), ""));
}

TEST(AsciiTest, TokenIsFoundAnywhereInTheList) {
    EXPECT_TRUE(has_token(Exact("Upgrade").view(), "upgrade"));
    EXPECT_TRUE(has_token(Exact("keep-alive, Upgrade").view(), "upgrade"));
    EXPECT_TRUE(has_token(Exact("UPGRADE ,close").view(), "upgrade"));
    EXPECT_FALSE(has_token(Exact("keep-alive").view(), "upgrade"));
    EXPECT_FALSE(has_token(Exact("upgrades").view(), "upgrade"));
    EXPECT_FALSE(has_token(Exact("").view(), "upgrade"));
}

}  // namespace
}  // namespace shardcast::transport
