// The WebSocket frame codec, server side (RFC 6455, section 5): headers for the frames a server
// writes, and a reader that turns a client's bytes into messages, pings, pongs and a close.
// Plain values with no threads of their own: a FrameReader belongs to one connection and is
// used only on that connection's thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace shardcast::transport::ws {

enum class Opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA
};

// Close codes the reader reports, besides dispatcher::close_code::kTooBig for a message over
// max_message_size (RFC 6455, section 7.4.1).
inline constexpr std::uint16_t kProtocolError = 1002;
inline constexpr std::uint16_t kNoStatus = 1005;  // received only: the close frame had no code
inline constexpr std::uint16_t kInvalidPayload = 1007;

// Bits of the first two header bytes, and the 7-bit lengths that announce a longer one.
inline constexpr std::uint8_t kFin = 0x80;
inline constexpr std::uint8_t kLength16 = 126;
inline constexpr std::uint8_t kLength64 = 127;

// The header of one unmasked server-to-client frame with FIN set: 2, 4 or 10 bytes.
struct FrameHeader {
    std::array<std::uint8_t, 10> bytes{};
    std::uint8_t size = 0;
};

// Writes the header for a payload of payload_size into out, which has room for 10 bytes, and
// returns its size. Inline: the writer calls this once per frame, and most frames are small.
inline std::size_t put_frame_header(std::uint8_t* out, Opcode opcode, std::size_t payload_size) {
    out[0] = kFin | static_cast<std::uint8_t>(opcode);
    if (payload_size < kLength16) {
        out[1] = static_cast<std::uint8_t>(payload_size);
        return 2;
    }
    if (payload_size <= 0xFFFF) {
        out[1] = kLength16;
        out[2] = static_cast<std::uint8_t>(payload_size >> 8);
        out[3] = static_cast<std::uint8_t>(payload_size);
        return 4;
    }
    out[1] = kLength64;
    const auto length = static_cast<std::uint64_t>(payload_size);
    for (int i = 0; i < 8; ++i) {
        out[2 + i] = static_cast<std::uint8_t>(length >> (56 - 8 * i));
    }
    return 10;
}

// The same header as a value, for a frame written on its own.
inline FrameHeader frame_header(Opcode opcode, std::size_t payload_size) {
    FrameHeader header;
    header.size =
        static_cast<std::uint8_t>(put_frame_header(header.bytes.data(), opcode, payload_size));
    return header;
}

// The payload of a close frame: the code in network order, then the reason. A reason longer
// than dispatcher::close_code::kMaxReasonBytes is cut at the last code point boundary that fits.
std::string close_payload(std::uint16_t code, std::string_view reason);

// What a client's frames amount to, one event at a time.
struct Event {
    enum class Kind : std::uint8_t { message, ping, pong, close, error };
    Kind kind;
    Opcode message_type = Opcode::text;  // message: text or binary
    std::string_view data{};             // message/ping/pong payload; close: the reason
    // close: the peer's code (kNoStatus when the frame had none); error: the code to close with
    std::uint16_t close_code = 0;
    std::string_view error{};  // error: what was wrong, for logs (ASCII, fits a close reason)
};

// Incremental parser of client-to-server frames. Feed it whatever the socket returned; it
// calls handler(const Event&) for every complete message (fragments assembled), ping, pong and
// close, in order. Views in an event are valid only during the handler call, which must
// neither feed nor destroy this reader.
//
// A whole unfragmented frame inside the fed bytes is unmasked in place and delivered as a view
// into them. Only what spans reads (a split header, a split payload) and fragmented messages
// are copied, into one string that is empty between messages. Its capacity is kept up to 4 KiB
// for the next message and released above that, so a connection that once sent a big message
// does not hold the buffer while idle.
//
// Not thread-safe: one connection's thread owns the reader.
class FrameReader {
public:
    explicit FrameReader(std::size_t max_message_size) : max_message_size_(max_message_size) {}

    // May unmask in place: bytes is scratch owned by the caller. Returns false once an error
    // event was emitted or a close was seen; the caller stops feeding then, and further calls
    // parse nothing.
    template <class Handler>
    bool feed(std::span<char> bytes, Handler&& handler);

    // No partial frame or message is buffered.
    bool idle() const {
        return !in_payload_ && header_size_ == 0 && message_opcode_ == Opcode::continuation;
    }

    // Heap bytes held for assembly, for tests and memory accounting.
    std::size_t buffer_capacity() const { return assembly_.capacity(); }

    // From now on data frames are skipped unread and no message event comes: a closing
    // connection reads only for the peer's close. The message in progress is dropped at once,
    // or right after the handler when called from one.
    void discard_messages();
    bool discarding() const { return discard_; }

private:
    // Parses from the front of bytes, consuming what it reads, until one event is ready
    // (true) or bytes run out (false).
    bool next(std::span<char>& bytes, Event& event);
    bool read_header(std::span<char>& bytes, Event& event);
    bool check_start(std::uint8_t b0, std::uint8_t b1, Event& event);
    bool start_frame(const std::uint8_t* header, Event& event);
    // The event for a complete frame: a control frame, or the last frame of a message with
    // payload the whole message.
    void deliver(std::string_view payload, Event& event);
    void deliver_close(std::string_view payload, Event& event);
    // Sets an error event and stops the reader; false, for the parsing steps to return.
    bool fail(std::uint16_t code, std::string_view why, Event& event);
    // Drops what the last event viewed in the assembly string.
    void settle();
    // Discarding: passes over a data frame's payload; true when the frame is over.
    bool skip_payload(std::span<char>& bytes);
    void drop_message();

    // The message in progress (message_size_ bytes), then the received part of the current
    // frame when its payload spans reads.
    std::string assembly_;
    std::size_t max_message_size_;
    std::size_t message_size_ = 0;
    std::uint64_t remaining_ = 0;            // payload bytes of the current frame still to arrive
    std::array<std::uint8_t, 14> header_{};  // a header split across reads
    std::array<std::uint8_t, 4> mask_{};
    std::uint8_t header_size_ = 0;
    Opcode frame_opcode_ = Opcode::continuation;
    Opcode message_opcode_ = Opcode::continuation;  // continuation: no message in progress
    bool frame_fin_ = false;
    bool in_payload_ = false;
    bool done_ = false;
    bool discard_ = false;
    bool in_handler_ = false;
};

// Every connection holds one.
static_assert(sizeof(FrameReader) <= 64 + sizeof(std::string));

template <class Handler>
bool FrameReader::feed(std::span<char> bytes, Handler&& handler) {
    Event event{};
    while (!done_ && next(bytes, event)) {
        in_handler_ = true;
        handler(std::as_const(event));
        in_handler_ = false;
        settle();
    }
    return !done_;
}

}  // namespace shardcast::transport::ws
