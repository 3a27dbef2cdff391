// loadgen's client-side frame reader: server frames built here by hand, fed whole, a byte at a
// time and in random chunks; every framing rule a strict client enforces; and the masked
// control frames loadgen writes back.
#include "bench/loadgen/server_frames.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace shardcast::loadgen {
namespace {

// One server frame: first byte as given, unmasked, length in its shortest encoding unless
// length_bytes forces a longer one (2 for 16 bits, 8 for 64).
std::string frame(std::uint8_t first, std::string_view payload, int length_bytes = 0) {
    std::string out(1, static_cast<char>(first));
    const std::uint64_t n = payload.size();
    if (length_bytes == 0) length_bytes = n < 126 ? 0 : n <= 0xFFFF ? 2 : 8;
    out += static_cast<char>(length_bytes == 0 ? n : length_bytes == 2 ? 126 : 127);
    for (int i = length_bytes - 1; i >= 0; --i) out += static_cast<char>(n >> (8 * i));
    out += payload;
    return out;
}

std::string text(std::string_view payload) { return frame(0x81, payload); }

struct Event {
    FrameKind kind;
    std::string payload;
    bool operator==(const Event&) const = default;
};

struct Fed {
    bool ok = true;
    std::vector<Event> events;
    std::string error;
};

// Feeds bytes in pieces of the given sizes (the last piece takes the rest).
Fed feed(std::string_view bytes, const std::vector<std::size_t>& pieces = {}) {
    ServerFrames reader;
    Fed fed;
    auto on = [&](FrameKind kind, std::string_view payload) {
        fed.events.push_back({kind, std::string(payload)});
    };
    for (std::size_t piece : pieces) {
        if (!fed.ok || bytes.empty()) break;
        piece = std::min(piece, bytes.size());
        fed.ok = reader.feed(bytes.substr(0, piece), on);
        bytes.remove_prefix(piece);
    }
    if (fed.ok) fed.ok = reader.feed(bytes, on);
    fed.error = reader.error();
    return fed;
}

std::string error_of(std::string_view bytes) {
    const Fed fed = feed(bytes);
    EXPECT_FALSE(fed.ok);
    return fed.error;
}

TEST(ServerFramesTest, EveryLengthEncodingArrivesWholeHoweverTheBytesAreSplit) {
    const std::string medium(300, 'm');
    const std::string large(70'000, 'L');
    const std::string stream = text("a") + text("") + text(medium) + frame(0x82, large) +
                               frame(0x89, "pi") + frame(0x8A, "po") + text("z");
    const std::vector<Event> expected{{FrameKind::message, "a"},    {FrameKind::message, ""},
                                      {FrameKind::message, medium}, {FrameKind::message, large},
                                      {FrameKind::ping, "pi"},      {FrameKind::pong, "po"},
                                      {FrameKind::message, "z"}};

    EXPECT_EQ(feed(stream).events, expected);
    EXPECT_EQ(feed(stream, std::vector<std::size_t>(stream.size(), 1)).events, expected);
    std::mt19937 rng(7);
    for (int run = 0; run < 20; ++run) {
        std::vector<std::size_t> pieces;
        for (std::size_t total = 0; total < stream.size();) {
            pieces.push_back(std::uniform_int_distribution<std::size_t>(1, 3000)(rng));
            total += pieces.back();
        }
        const Fed fed = feed(stream, pieces);
        ASSERT_TRUE(fed.ok) << fed.error;
        EXPECT_EQ(fed.events, expected) << "run " << run;
    }
}

TEST(ServerFramesTest, AFragmentedMessageIsJoinedAroundTheControlFramesBetweenItsParts) {
    const std::string stream =
        frame(0x01, "he") + frame(0x89, "") + frame(0x00, "ll") + frame(0x80, "o") + text("!");
    const Fed fed = feed(stream, std::vector<std::size_t>(stream.size(), 1));
    ASSERT_TRUE(fed.ok) << fed.error;
    EXPECT_EQ(fed.events, (std::vector<Event>{{FrameKind::ping, ""},
                                              {FrameKind::message, "hello"},
                                              {FrameKind::message, "!"}}));
}

TEST(ServerFramesTest, ACloseFrameCarriesItsCode) {
    const Fed fed = feed(frame(0x88, std::string("\x03\xf0"
                                                 "bye",
                                                 5)) +
                         frame(0x88, ""));
    ASSERT_TRUE(fed.ok) << fed.error;
    ASSERT_EQ(fed.events.size(), 2u);
    EXPECT_EQ(ServerFrames::close_code(fed.events[0].payload), 1008);
    EXPECT_EQ(ServerFrames::close_code(fed.events[1].payload), 1005);
}

TEST(ServerFramesTest, WhatAStrictClientRejectsIsAnErrorThatNamesTheRule) {
    EXPECT_EQ(error_of(frame(0xC1, "x")), "reserved bits set with no extension agreed");
    std::string masked = text("x");
    masked[1] = static_cast<char>(masked[1] | 0x80);
    EXPECT_EQ(error_of(masked + "keys"), "a masked frame from the server");
    EXPECT_EQ(error_of(frame(0x81, "short", 2)), "a frame length not in its shortest encoding");
    EXPECT_EQ(error_of(frame(0x81, std::string(300, 'x'), 8)),
              "a frame length not in its shortest encoding");
    EXPECT_EQ(error_of(std::string("\x81\x7f\x00\x00\x00\x00\x10\x00\x00\x00", 10)),
              "a frame longer than 64 MiB");
    EXPECT_EQ(error_of(frame(0x89, std::string(126, 'p'))), "a control frame over 125 bytes");
    EXPECT_EQ(error_of(frame(0x09, "p")), "a fragmented control frame");
    EXPECT_EQ(error_of(frame(0x80, "x")), "a continuation frame with no message begun");
    EXPECT_EQ(error_of(frame(0x01, "a") + text("b")),
              "a new message before the last one's final frame");
    EXPECT_EQ(error_of(frame(0x83, "x")), "a reserved opcode");
    EXPECT_EQ(error_of(frame(0x8B, "")), "a reserved opcode");
    EXPECT_EQ(error_of(frame(0x88, "\x03")), "a close frame with a 1-byte payload");
    EXPECT_EQ(error_of(frame(0x88, "\x03\xed")), "a close frame with an invalid code");  // 1005
    EXPECT_EQ(error_of(frame(0x88, std::string("\x00\x00", 2))),
              "a close frame with an invalid code");
}

TEST(ServerFramesTest, EventsBeforeAnErrorAreKeptAndNothingAfterIt) {
    const Fed fed = feed(text("one") + frame(0xC1, "bad") + text("two"));
    EXPECT_FALSE(fed.ok);
    EXPECT_EQ(fed.events, (std::vector<Event>{{FrameKind::message, "one"}}));
}

TEST(ServerFramesTest, AClientFrameIsMaskedWithItsKey) {
    const std::string out = client_frame(0xA, "ping!", {0x01, 0x02, 0x03, 0x04});
    ASSERT_EQ(out.size(), 2u + 4u + 5u);
    EXPECT_EQ(static_cast<std::uint8_t>(out[0]), 0x8A);  // FIN, pong
    EXPECT_EQ(static_cast<std::uint8_t>(out[1]), 0x85);  // masked, 5 bytes
    EXPECT_EQ(out.substr(2, 4), std::string("\x01\x02\x03\x04", 4));
    std::string unmasked;
    for (std::size_t i = 0; i < 5; ++i) {
        unmasked += static_cast<char>(out[6 + i] ^ out[2 + i % 4]);
    }
    EXPECT_EQ(unmasked, "ping!");
}

}  // namespace
}  // namespace shardcast::loadgen
