// The WebSocket frame codec: server frame headers, close payloads, and the reader fed client
// frames built here, whole, split at every point and in random chunks.
#include "transport/ws_frame.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace shardcast::transport::ws {
namespace {

constexpr std::array<std::uint8_t, 4> kKey{0x37, 0xFA, 0x21, 0x3D};

// How to write one client frame; opcode may be any 4-bit value.
struct Frame {
    Opcode opcode = Opcode::text;
    bool fin = true;
    bool masked = true;
    std::uint8_t rsv = 0;  // bits 0x70 of the first byte
    std::array<std::uint8_t, 4> key = kKey;
};

// The header of a client frame that claims length payload bytes, with the shortest encoding.
std::string client_header(const Frame& frame, std::uint64_t length) {
    std::string header;
    header += static_cast<char>((frame.fin ? 0x80 : 0) | frame.rsv |
                                static_cast<std::uint8_t>(frame.opcode));
    const char mask_bit = frame.masked ? static_cast<char>(0x80) : 0;
    if (length < 126) {
        header += static_cast<char>(mask_bit | static_cast<char>(length));
    } else if (length <= 0xFFFF) {
        header += static_cast<char>(mask_bit | 126);
        header += static_cast<char>(length >> 8);
        header += static_cast<char>(length & 0xFF);
    } else {
        header += static_cast<char>(mask_bit | 127);
        for (int shift = 56; shift >= 0; shift -= 8) {
            header += static_cast<char>((length >> shift) & 0xFF);
        }
    }
    if (frame.masked) {
        header.append(frame.key.begin(), frame.key.end());
    }
    return header;
}

// A whole client frame, its payload masked with frame.key unless frame.masked is false.
std::string client_frame(const Frame& frame, std::string_view payload) {
    std::string bytes = client_header(frame, payload.size());
    for (std::size_t i = 0; i < payload.size(); ++i) {
        const std::uint8_t key = frame.masked ? frame.key[i % 4] : 0;
        bytes += static_cast<char>(static_cast<std::uint8_t>(payload[i]) ^ key);
    }
    return bytes;
}

std::string close_frame(std::string_view payload) {
    return client_frame({.opcode = Opcode::close}, payload);
}

// An event with its views copied out, so it outlives the handler call.
struct Seen {
    Event::Kind kind;
    Opcode type = Opcode::text;
    std::string data{};
    std::uint16_t code = 0;

    friend bool operator==(const Seen&, const Seen&) = default;
};

void PrintTo(const Seen& seen, std::ostream* os) {
    static constexpr std::array<const char*, 5> kKinds{"message", "ping", "pong", "close", "error"};
    *os << kKinds[static_cast<std::size_t>(seen.kind)] << " type " << static_cast<int>(seen.type)
        << " code " << seen.code << " data[" << seen.data.size() << "] \""
        << seen.data.substr(0, 40) << (seen.data.size() > 40 ? "...\"" : "\"");
}

Seen text(std::string data) { return {.kind = Event::Kind::message, .data = std::move(data)}; }
Seen binary(std::string data) {
    return {.kind = Event::Kind::message, .type = Opcode::binary, .data = std::move(data)};
}
Seen ping(std::string data) { return {.kind = Event::Kind::ping, .data = std::move(data)}; }
Seen pong(std::string data) { return {.kind = Event::Kind::pong, .data = std::move(data)}; }
Seen closed(std::uint16_t code, std::string reason = {}) {
    return {.kind = Event::Kind::close, .data = std::move(reason), .code = code};
}
Seen failed(std::uint16_t code) { return {.kind = Event::Kind::error, .code = code}; }

// A reader and everything it reported. Each feed hands the reader its own scratch copy, as a
// socket read would.
struct Recorder {
    explicit Recorder(std::size_t max_message_size = 1 << 20) : reader(max_message_size) {}

    bool feed(std::string bytes) {
        return reader.feed(std::span<char>(bytes.data(), bytes.size()),
                           [this](const Event& event) { record(event); });
    }

    // Feeds bytes in pieces ending at each cut, then the rest; the result of the last feed.
    bool feed_in_pieces(std::string_view bytes, const std::vector<std::size_t>& cuts) {
        std::size_t from = 0;
        for (const std::size_t cut : cuts) {
            feed(std::string(bytes.substr(from, cut - from)));
            from = cut;
        }
        return feed(std::string(bytes.substr(from)));
    }

    void record(const Event& event) {
        Seen seen{.kind = event.kind, .code = event.close_code};
        if (event.kind == Event::Kind::error) {
            EXPECT_FALSE(event.error.empty());
            EXPECT_EQ(close_payload(event.close_code, event.error).substr(2), event.error)
                << "the error text should fit a close reason as it is";
        } else {
            seen.data = std::string(event.data);
        }
        if (event.kind == Event::Kind::message) {
            seen.type = event.message_type;
        }
        events.push_back(std::move(seen));
    }

    FrameReader reader;
    std::vector<Seen> events;
};

std::vector<Seen> events_of(std::string_view bytes, std::size_t max_message_size = 1 << 20) {
    Recorder recorder(max_message_size);
    recorder.feed(std::string(bytes));
    return recorder.events;
}

std::string bytes_of(const FrameHeader& header) {
    return std::string(reinterpret_cast<const char*>(header.bytes.data()), header.size);
}

std::string random_bytes(std::size_t size, std::mt19937& random) {
    std::uniform_int_distribution<int> byte(0, 255);
    std::string bytes(size, '\0');
    for (char& c : bytes) {
        c = static_cast<char>(byte(random));
    }
    return bytes;
}

std::array<std::uint8_t, 4> random_key(std::mt19937& random) {
    std::uniform_int_distribution<int> byte(0, 255);
    return {static_cast<std::uint8_t>(byte(random)), static_cast<std::uint8_t>(byte(random)),
            static_cast<std::uint8_t>(byte(random)), static_cast<std::uint8_t>(byte(random))};
}

const std::size_t kEmptyCapacity = std::string().capacity();

// --- frame_header ------------------------------------------------------------------------

TEST(FrameHeaderTest, UsesTwoBytesUpTo125) {
    EXPECT_EQ(bytes_of(frame_header(Opcode::text, 0)), std::string("\x81\x00", 2));
    EXPECT_EQ(bytes_of(frame_header(Opcode::text, 125)), "\x81\x7D");
}

TEST(FrameHeaderTest, UsesASixteenBitLengthFrom126To65535) {
    EXPECT_EQ(bytes_of(frame_header(Opcode::binary, 126)), std::string("\x82\x7E\x00\x7E", 4));
    EXPECT_EQ(bytes_of(frame_header(Opcode::binary, 65535)), "\x82\x7E\xFF\xFF");
}

TEST(FrameHeaderTest, UsesASixtyFourBitLengthFrom65536) {
    EXPECT_EQ(bytes_of(frame_header(Opcode::text, 65536)),
              std::string("\x81\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10));
    EXPECT_EQ(bytes_of(frame_header(Opcode::text, std::size_t{0x0123456789ABCDEF})),
              "\x81\x7F\x01\x23\x45\x67\x89\xAB\xCD\xEF");
}

TEST(FrameHeaderTest, SetsFinAndTheOpcodeOfControlFrames) {
    EXPECT_EQ(bytes_of(frame_header(Opcode::ping, 0)), std::string("\x89\x00", 2));
    EXPECT_EQ(bytes_of(frame_header(Opcode::pong, 3)), "\x8A\x03");
    EXPECT_EQ(bytes_of(frame_header(Opcode::close, 2)), "\x88\x02");
}

// --- close_payload -----------------------------------------------------------------------

TEST(ClosePayloadTest, PutsTheCodeInNetworkOrderBeforeTheReason) {
    EXPECT_EQ(close_payload(1000, "bye"),
              "\x03\xE8"
              "bye");
    EXPECT_EQ(close_payload(4001, ""), "\x0F\xA1");
}

TEST(ClosePayloadTest, CutsALongReasonTo123Bytes) {
    const std::string reason(200, 'x');
    const std::string payload = close_payload(1008, reason);
    EXPECT_EQ(payload.size(), 125u);
    EXPECT_EQ(payload.substr(2), reason.substr(0, 123));
}

TEST(ClosePayloadTest, CutsALongReasonAtACodePointBoundary) {
    // 122 bytes, then a two-byte "é" that would straddle the limit.
    const std::string reason = std::string(122, 'x') + "\xC3\xA9" + "tail";
    EXPECT_EQ(close_payload(1000, reason).substr(2), std::string(122, 'x'));
    // 120 bytes, then a four-byte code point that ends past it.
    const std::string emoji = std::string(120, 'x') + "\xF0\x9F\x98\x80";
    EXPECT_EQ(close_payload(1000, emoji).substr(2), std::string(120, 'x'));
    // 119 bytes and the four-byte code point end exactly at 123.
    const std::string fits = std::string(119, 'x') + "\xF0\x9F\x98\x80" + "y";
    EXPECT_EQ(close_payload(1000, fits).substr(2), fits.substr(0, 123));
}

// --- FrameReader: delivery ---------------------------------------------------------------

TEST(FrameReaderTest, DeliversAMaskedTextFrameInOneFeed) {
    Recorder recorder;
    EXPECT_TRUE(recorder.feed(client_frame({.opcode = Opcode::text}, "hello")));
    EXPECT_EQ(recorder.events, std::vector{text("hello")});
}

TEST(FrameReaderTest, DeliversAWholeFrameAsAViewIntoTheFedBytes) {
    FrameReader reader(1 << 20);
    std::string bytes = client_frame({.opcode = Opcode::binary}, std::string(300, 'z'));
    const char* begin = bytes.data();
    const char* end = bytes.data() + bytes.size();
    bool seen = false;
    reader.feed(std::span<char>(bytes.data(), bytes.size()), [&](const Event& event) {
        seen = true;
        EXPECT_EQ(event.data, std::string(300, 'z'));
        EXPECT_GE(event.data.data(), begin);
        EXPECT_LE(event.data.data() + event.data.size(), end);
    });
    EXPECT_TRUE(seen);
    EXPECT_EQ(reader.buffer_capacity(), kEmptyCapacity) << "a whole frame is never copied";
}

TEST(FrameReaderTest, DeliversAFrameFedOneByteAtATimeAsOneEvent) {
    for (const std::size_t size : {5, 200, 70000}) {
        const std::string payload(size, 'a');
        const std::string bytes = client_frame({.opcode = Opcode::text}, payload);
        Recorder recorder;
        for (const char c : bytes) {
            EXPECT_TRUE(recorder.feed(std::string(1, c)));
        }
        EXPECT_EQ(recorder.events, std::vector{text(payload)}) << "payload of " << size;
    }
}

TEST(FrameReaderTest, DeliversTheSameEventsWhereverTheBytesAreSplit) {
    std::mt19937 random(7);
    const std::string long_text(300, 'q');
    const std::string bytes =
        client_frame({.opcode = Opcode::text}, "hello") +
        client_frame({.opcode = Opcode::binary, .key = random_key(random)},
                     random_bytes(200, random)) +
        client_frame({.opcode = Opcode::text, .fin = false}, "caf\xC3") +
        client_frame({.opcode = Opcode::ping, .key = random_key(random)}, "are you there") +
        client_frame({.opcode = Opcode::continuation, .fin = false, .key = random_key(random)},
                     "\xA9" + long_text) +
        client_frame({.opcode = Opcode::continuation}, "!") +
        client_frame({.opcode = Opcode::pong}, "") + close_frame(close_payload(1000, "done"));
    const std::vector<Seen> whole = events_of(bytes);
    ASSERT_EQ(whole.size(), 6u);
    EXPECT_EQ(whole[2], ping("are you there"));
    EXPECT_EQ(whole[3], text("caf\xC3\xA9" + long_text + "!"));
    EXPECT_EQ(whole[5], closed(1000, "done"));

    for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
        Recorder recorder;
        EXPECT_FALSE(recorder.feed_in_pieces(bytes, {cut}));
        ASSERT_EQ(recorder.events, whole) << "split at " << cut;
    }
    for (std::size_t first = 0; first < 40; ++first) {
        for (std::size_t second = first; second <= bytes.size(); second += 7) {
            Recorder recorder;
            recorder.feed_in_pieces(bytes, {first, second});
            ASSERT_EQ(recorder.events, whole) << "split at " << first << " and " << second;
        }
    }
    Recorder byte_by_byte;
    std::vector<std::size_t> cuts(bytes.size());
    for (std::size_t i = 0; i < cuts.size(); ++i) {
        cuts[i] = i;
    }
    byte_by_byte.feed_in_pieces(bytes, cuts);
    EXPECT_EQ(byte_by_byte.events, whole);
}

TEST(FrameReaderTest, DeliversAPingBetweenFragmentsBeforeTheMessage) {
    const std::string bytes = client_frame({.opcode = Opcode::text, .fin = false}, "Hel") +
                              client_frame({.opcode = Opcode::ping}, "p") +
                              client_frame({.opcode = Opcode::continuation, .fin = false}, "lo, ") +
                              client_frame({.opcode = Opcode::pong}, "q") +
                              client_frame({.opcode = Opcode::continuation}, "world");
    EXPECT_EQ(events_of(bytes), (std::vector{ping("p"), pong("q"), text("Hello, world")}));
}

TEST(FrameReaderTest, AcceptsACodePointSplitAcrossFragments) {
    const std::string bytes = client_frame({.opcode = Opcode::text, .fin = false}, "\xF0\x9F") +
                              client_frame({.opcode = Opcode::continuation, .fin = false}, "\x98") +
                              client_frame({.opcode = Opcode::continuation}, "\x80!");
    EXPECT_EQ(events_of(bytes), std::vector{text("\xF0\x9F\x98\x80!")});
}

TEST(FrameReaderTest, DeliversABinaryMessageWithTypeBinary) {
    const std::string invalid_as_text("\xFF\x00\xC0", 3);
    EXPECT_EQ(events_of(client_frame({.opcode = Opcode::binary}, invalid_as_text)),
              std::vector{binary(invalid_as_text)});
    const std::string fragmented = client_frame({.opcode = Opcode::binary, .fin = false}, "\xFF") +
                                   client_frame({.opcode = Opcode::continuation}, "\xFE");
    EXPECT_EQ(events_of(fragmented), std::vector{binary("\xFF\xFE")});
}

TEST(FrameReaderTest, DeliversEmptyMessagesAndControlFrames) {
    const std::string bytes = client_frame({.opcode = Opcode::text}, "") +
                              client_frame({.opcode = Opcode::ping}, "") +
                              client_frame({.opcode = Opcode::binary, .fin = false}, "") +
                              client_frame({.opcode = Opcode::continuation}, "");
    EXPECT_EQ(events_of(bytes), (std::vector{text(""), ping(""), binary("")}));
}

TEST(FrameReaderTest, DeliversAControlFrameOf125Bytes) {
    const std::string payload(125, 'p');
    EXPECT_EQ(events_of(client_frame({.opcode = Opcode::ping}, payload)),
              std::vector{ping(payload)});
}

TEST(FrameReaderTest, AcceptsAMessageOfExactlyMaxMessageSize) {
    const std::string bytes = client_frame({.opcode = Opcode::text, .fin = false}, "123456") +
                              client_frame({.opcode = Opcode::continuation}, "7890");
    EXPECT_EQ(events_of(bytes, 10), std::vector{text("1234567890")});
    EXPECT_EQ(events_of(client_frame({.opcode = Opcode::binary}, "1234567890"), 10),
              std::vector{binary("1234567890")});
}

TEST(FrameReaderTest, RoundTripsAOneMebibyteMessageInRandomChunks) {
    std::mt19937 random(2024);
    const std::string payload = random_bytes(std::size_t{1} << 20, random);
    std::string bytes;
    std::size_t pings = 0;
    for (std::size_t at = 0; at < payload.size();) {
        const std::size_t size = std::min<std::size_t>(
            payload.size() - at, std::uniform_int_distribution<std::size_t>(0, 150000)(random));
        const Opcode opcode = at == 0 ? Opcode::binary : Opcode::continuation;
        const bool fin = at + size == payload.size();
        bytes += client_frame({.opcode = opcode, .fin = fin, .key = random_key(random)},
                              std::string_view(payload).substr(at, size));
        at += size;
        if (!fin && random() % 3 == 0) {
            bytes += client_frame({.opcode = Opcode::ping, .key = random_key(random)},
                                  std::to_string(pings++));
        }
    }
    Recorder recorder(payload.size());
    for (std::size_t at = 0; at < bytes.size();) {
        const std::size_t size = std::uniform_int_distribution<std::size_t>(1, 70000)(random);
        EXPECT_TRUE(recorder.feed(bytes.substr(at, size)));
        at += size;
    }
    ASSERT_EQ(recorder.events.size(), pings + 1);
    for (std::size_t i = 0; i < pings; ++i) {
        EXPECT_EQ(recorder.events[i], ping(std::to_string(i)));
    }
    const Seen& message = recorder.events.back();
    EXPECT_EQ(message.kind, Event::Kind::message);
    EXPECT_EQ(message.type, Opcode::binary);
    EXPECT_TRUE(message.data == payload) << "the reassembled message differs";
    EXPECT_TRUE(recorder.reader.idle());
}

TEST(FrameReaderTest, RoundTripsALargeTextMessageWithCodePointsSplitEverywhere) {
    std::mt19937 random(11);
    std::string payload;
    while (payload.size() < 300000) {
        payload += "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
    }
    std::string bytes;
    for (std::size_t at = 0; at < payload.size();) {
        const std::size_t size = std::min<std::size_t>(
            payload.size() - at, std::uniform_int_distribution<std::size_t>(1, 5000)(random));
        bytes += client_frame({.opcode = at == 0 ? Opcode::text : Opcode::continuation,
                               .fin = at + size == payload.size(),
                               .key = random_key(random)},
                              std::string_view(payload).substr(at, size));
        at += size;
    }
    Recorder recorder(payload.size());
    for (std::size_t at = 0; at < bytes.size();) {
        const std::size_t size = std::uniform_int_distribution<std::size_t>(1, 9000)(random);
        recorder.feed(bytes.substr(at, size));
        at += size;
    }
    ASSERT_EQ(recorder.events.size(), 1u);
    EXPECT_EQ(recorder.events[0].type, Opcode::text);
    EXPECT_TRUE(recorder.events[0].data == payload) << "the reassembled message differs";
}

// --- FrameReader: protocol errors ----------------------------------------------------------

TEST(FrameReaderTest, RejectsInvalidUtf8TextWith1007) {
    EXPECT_EQ(events_of(client_frame({.opcode = Opcode::text}, "\xC0\xAF")),
              std::vector{failed(1007)});
    const std::string truncated = client_frame({.opcode = Opcode::text, .fin = false}, "ok \xE2") +
                                  client_frame({.opcode = Opcode::continuation}, "\x82");
    EXPECT_EQ(events_of(truncated), std::vector{failed(1007)});
}

TEST(FrameReaderTest, RejectsAnUnmaskedFrameWith1002) {
    EXPECT_EQ(events_of(client_frame({.opcode = Opcode::text, .masked = false}, "hi")),
              std::vector{failed(1002)});
}

TEST(FrameReaderTest, RejectsAnUnmaskedFrameFromItsFirstTwoBytes) {
    Recorder recorder;
    EXPECT_TRUE(recorder.feed("\x82"));
    EXPECT_FALSE(recorder.feed("\x7F"));  // unmasked, a 64-bit length would follow
    EXPECT_EQ(recorder.events, std::vector{failed(1002)});
}

TEST(FrameReaderTest, RejectsReservedBitsWith1002) {
    for (const std::uint8_t rsv : std::initializer_list<std::uint8_t>{0x40, 0x20, 0x10, 0x70}) {
        EXPECT_EQ(events_of(client_frame({.opcode = Opcode::text, .rsv = rsv}, "x")),
                  std::vector{failed(1002)})
            << "rsv " << int{rsv};
    }
}

TEST(FrameReaderTest, RejectsUnknownOpcodesWith1002) {
    for (const std::uint8_t opcode :
         std::initializer_list<std::uint8_t>{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
        EXPECT_EQ(events_of(client_frame({.opcode = static_cast<Opcode>(opcode)}, "x")),
                  std::vector{failed(1002)})
            << "opcode " << int{opcode};
    }
}

TEST(FrameReaderTest, RejectsAControlFrameOver125BytesWith1002) {
    for (const Opcode opcode : {Opcode::ping, Opcode::pong, Opcode::close}) {
        EXPECT_EQ(events_of(client_frame({.opcode = opcode}, std::string(126, 'x'))),
                  std::vector{failed(1002)});
    }
}

TEST(FrameReaderTest, RejectsAFragmentedControlFrameWith1002) {
    for (const Opcode opcode : {Opcode::ping, Opcode::pong, Opcode::close}) {
        EXPECT_EQ(events_of(client_frame({.opcode = opcode, .fin = false}, "x")),
                  std::vector{failed(1002)});
    }
}

TEST(FrameReaderTest, RejectsAContinuationWithoutAMessageWith1002) {
    EXPECT_EQ(events_of(client_frame({.opcode = Opcode::continuation}, "x")),
              std::vector{failed(1002)});
    const std::string after_a_message = client_frame({.opcode = Opcode::text}, "a") +
                                        client_frame({.opcode = Opcode::continuation}, "b");
    EXPECT_EQ(events_of(after_a_message), (std::vector{text("a"), failed(1002)}));
}

TEST(FrameReaderTest, RejectsANewMessageInsideAFragmentedOneWith1002) {
    for (const Opcode opcode : {Opcode::text, Opcode::binary}) {
        const std::string bytes = client_frame({.opcode = Opcode::text, .fin = false}, "a") +
                                  client_frame({.opcode = opcode}, "b");
        EXPECT_EQ(events_of(bytes), std::vector{failed(1002)});
    }
}

TEST(FrameReaderTest, RejectsASixtyFourBitLengthWithTheTopBitSetWith1002) {
    const std::string header =
        client_header({.opcode = Opcode::binary}, (std::uint64_t{1} << 63) | 5);
    EXPECT_EQ(events_of(header, SIZE_MAX), std::vector{failed(1002)});
}

TEST(FrameReaderTest, RejectsAnOversizedFrameFromItsHeaderWith1009) {
    Recorder recorder(1000);
    EXPECT_FALSE(recorder.feed(client_header({.opcode = Opcode::text}, 1001)));
    EXPECT_EQ(recorder.events, std::vector{failed(1009)});

    Recorder huge(1000);
    EXPECT_FALSE(huge.feed(client_header({.opcode = Opcode::binary}, std::uint64_t{1} << 40)));
    EXPECT_EQ(huge.events, std::vector{failed(1009)});
    EXPECT_EQ(huge.reader.buffer_capacity(), kEmptyCapacity) << "nothing was buffered";
}

TEST(FrameReaderTest, RejectsOversizedFragmentsWith1009) {
    Recorder recorder(10);
    EXPECT_TRUE(recorder.feed(client_frame({.opcode = Opcode::text, .fin = false}, "123456")));
    // The second fragment's header alone puts the message over the limit.
    EXPECT_FALSE(recorder.feed(client_header({.opcode = Opcode::continuation}, 5)));
    EXPECT_EQ(recorder.events, std::vector{failed(1009)});
    EXPECT_EQ(recorder.reader.buffer_capacity(), kEmptyCapacity) << "released after the error";
}

// --- FrameReader: close ----------------------------------------------------------------------

TEST(FrameReaderTest, DeliversCloseWithCodeAndReason) {
    Recorder recorder;
    EXPECT_FALSE(recorder.feed(close_frame(close_payload(4000, "see you"))));
    EXPECT_EQ(recorder.events, std::vector{closed(4000, "see you")});
}

TEST(FrameReaderTest, DeliversCloseWithoutPayloadAs1005) {
    EXPECT_EQ(events_of(close_frame("")), std::vector{closed(1005)});
}

TEST(FrameReaderTest, RejectsCloseWithAOneBytePayloadWith1002) {
    EXPECT_EQ(events_of(close_frame("\x03")), std::vector{failed(1002)});
}

TEST(FrameReaderTest, RejectsCloseCodesAPeerMayNotSendWith1002) {
    for (const std::uint16_t code : std::initializer_list<std::uint16_t>{
             0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
        EXPECT_EQ(events_of(close_frame(close_payload(code, ""))), std::vector{failed(1002)})
            << "code " << code;
    }
}

TEST(FrameReaderTest, AcceptsCloseCodesAPeerMaySend) {
    for (const std::uint16_t code : std::initializer_list<std::uint16_t>{
             1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999}) {
        EXPECT_EQ(events_of(close_frame(close_payload(code, "r"))), std::vector{closed(code, "r")})
            << "code " << code;
    }
}

TEST(FrameReaderTest, RejectsACloseReasonThatIsNotUtf8With1007) {
    EXPECT_EQ(events_of(close_frame(close_payload(1000, "\xED\xA0\x80"))),
              std::vector{failed(1007)});
}

TEST(FrameReaderTest, AcceptsACloseBetweenFragments) {
    const std::string bytes = client_frame({.opcode = Opcode::text, .fin = false}, "never") +
                              close_frame(close_payload(1001, "")) +
                              client_frame({.opcode = Opcode::continuation}, " finished");
    EXPECT_EQ(events_of(bytes), std::vector{closed(1001)});
}

// --- FrameReader: state ----------------------------------------------------------------------

TEST(FrameReaderTest, StopsAfterAnError) {
    Recorder recorder;
    const std::string bytes = client_frame({.opcode = Opcode::text, .masked = false}, "bad") +
                              client_frame({.opcode = Opcode::text}, "good");
    EXPECT_FALSE(recorder.feed(bytes));
    EXPECT_FALSE(recorder.feed(client_frame({.opcode = Opcode::text}, "later")));
    EXPECT_EQ(recorder.events, std::vector{failed(1002)});
}

TEST(FrameReaderTest, StopsAfterAClose) {
    Recorder recorder;
    const std::string bytes = client_frame({.opcode = Opcode::text}, "first") + close_frame("") +
                              client_frame({.opcode = Opcode::text}, "after the close");
    EXPECT_FALSE(recorder.feed(bytes));
    EXPECT_FALSE(recorder.feed(client_frame({.opcode = Opcode::text}, "later")));
    EXPECT_EQ(recorder.events, (std::vector{text("first"), closed(1005)}));
}

TEST(FrameReaderTest, IsIdleOnlyBetweenMessages) {
    Recorder recorder;
    EXPECT_TRUE(recorder.reader.idle());

    const std::string frame = client_frame({.opcode = Opcode::text}, "hello");
    recorder.feed(frame.substr(0, 1));
    EXPECT_FALSE(recorder.reader.idle()) << "mid-header";
    recorder.feed(frame.substr(1, 7));
    EXPECT_FALSE(recorder.reader.idle()) << "mid-payload";
    recorder.feed(frame.substr(8));
    EXPECT_TRUE(recorder.reader.idle()) << "after the message";

    recorder.feed(client_frame({.opcode = Opcode::text, .fin = false}, "hel"));
    EXPECT_FALSE(recorder.reader.idle()) << "mid-message";
    recorder.feed(client_frame({.opcode = Opcode::ping}, ""));
    EXPECT_FALSE(recorder.reader.idle()) << "a ping does not end the message";
    recorder.feed(client_frame({.opcode = Opcode::continuation}, "lo"));
    EXPECT_TRUE(recorder.reader.idle());
    EXPECT_EQ(recorder.events, (std::vector{text("hello"), ping(""), text("hello")}));
}

TEST(FrameReaderTest, TakesAnEmptyFeedAnywhere) {
    FrameReader reader(1024);
    int events = 0;
    auto count = [&](const Event&) { ++events; };
    EXPECT_TRUE(reader.feed({}, count));
    std::string frame = client_frame({.opcode = Opcode::text}, "hi");
    EXPECT_TRUE(reader.feed(std::span<char>(frame.data(), 1), count));
    EXPECT_TRUE(reader.feed({}, count));
    EXPECT_TRUE(reader.feed(std::span<char>(frame.data() + 1, 6), count));
    EXPECT_TRUE(reader.feed({}, count));
    EXPECT_EQ(events, 0);
    EXPECT_TRUE(reader.feed(std::span<char>(frame.data() + 7, frame.size() - 7), count));
    EXPECT_EQ(events, 1);
}

TEST(FrameReaderTest, ReleasesTheBufferAfterALargeMessage) {
    Recorder recorder;
    const std::string payload(100000, 'b');
    const std::string frame = client_frame({.opcode = Opcode::binary}, payload);
    recorder.feed(frame.substr(0, 5000));
    EXPECT_GT(recorder.reader.buffer_capacity(), kEmptyCapacity) << "the split frame is copied";
    recorder.feed(frame.substr(5000));
    EXPECT_EQ(recorder.events, std::vector{binary(payload)});
    EXPECT_EQ(recorder.reader.buffer_capacity(), kEmptyCapacity);
}

// --- FrameReader: discarding (a closing connection) ----------------------------------------

TEST(FrameReaderTest, DiscardingDropsTheMessageInProgressAndBuffersNoMore) {
    Recorder recorder;
    const std::string first(60000, 'a');
    recorder.feed(client_frame({.opcode = Opcode::binary, .fin = false}, first));
    EXPECT_GE(recorder.reader.buffer_capacity(), first.size());

    recorder.reader.discard_messages();
    EXPECT_EQ(recorder.reader.buffer_capacity(), kEmptyCapacity);
    const std::string rest =
        client_frame({.opcode = Opcode::continuation, .fin = false}, std::string(100000, 'b'));
    recorder.feed(rest.substr(0, 50000));
    EXPECT_EQ(recorder.reader.buffer_capacity(), kEmptyCapacity) << "a split data frame is skipped";
    recorder.feed(rest.substr(50000) + client_frame({.opcode = Opcode::continuation}, "end") +
                  client_frame({.opcode = Opcode::text}, "whole"));
    EXPECT_TRUE(recorder.events.empty());
}

TEST(FrameReaderTest, DiscardingStillDeliversControlFramesAndChecksFraming) {
    Recorder recorder;
    recorder.reader.discard_messages();
    const std::string close = close_frame(close_payload(1000, "bye"));
    recorder.feed(client_frame({.opcode = Opcode::text}, "dropped") +
                  client_frame({.opcode = Opcode::ping}, "p") + close.substr(0, 5));
    recorder.feed(close.substr(5));
    EXPECT_EQ(recorder.events, (std::vector{ping("p"), closed(1000, "bye")}));

    Recorder broken;
    broken.reader.discard_messages();
    broken.feed(client_frame({.opcode = Opcode::continuation}, "no message"));
    EXPECT_EQ(broken.events, std::vector{failed(1002)});
}

TEST(FrameReaderTest, DiscardingFromAHandlerTakesEffectAfterIt) {
    FrameReader reader(1 << 20);
    std::vector<std::string> messages;
    std::string bytes = client_frame({.opcode = Opcode::text}, "seen") +
                        client_frame({.opcode = Opcode::text}, "not seen");
    reader.feed(std::span<char>(bytes.data(), bytes.size()), [&](const Event& event) {
        messages.emplace_back(event.data);
        reader.discard_messages();
    });
    EXPECT_EQ(messages, std::vector<std::string>{"seen"});
}

TEST(FrameReaderTest, FitsInAConnection) {
    EXPECT_LE(sizeof(FrameReader), 64 + sizeof(std::string));
    EXPECT_EQ(FrameReader(1024).buffer_capacity(), kEmptyCapacity);
}

}  // namespace
}  // namespace shardcast::transport::ws
