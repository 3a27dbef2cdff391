// ServerFrames: the client's side of WebSocket framing (RFC 6455, section 5) for loadgen. It
// turns the bytes a server sends into messages, pings, pongs and a close, and rejects what a
// strict client must reject; client_frame() builds the masked frames a client sends back.
//
// Written apart from the server's codec (transport/ws_frame.hpp) on purpose: loadgen checks
// the framing of whichever server it drives, so it must not share shardcast's reading of the
// RFC. Text is not checked for UTF-8: every loadgen message is ASCII, and parse_message
// rejects anything else. A plain value with no thread of its own; one per connection.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace shardcast::loadgen {

enum class FrameKind : std::uint8_t { message, ping, pong, close };

class ServerFrames {
public:
    // A message may be this long at most, over all its fragments.
    static constexpr std::uint64_t kMaxMessageBytes = 64u << 20;

    // Hands each whole frame's event in bytes to on(FrameKind, std::string_view payload) and
    // keeps a partial frame for the next call. A payload view lives until on returns. Returns
    // false at the first framing error, leaving error() set; the connection is then unusable.
    template <class Handler>
    bool feed(std::string_view bytes, Handler&& on) {
        while (!partial_.empty()) {
            const std::size_t whole = frame_size(partial_);
            if (whole == kInvalid) return false;
            if (partial_.size() < whole) {
                if (bytes.empty()) return true;
                const std::size_t take = std::min(whole - partial_.size(), bytes.size());
                partial_.append(bytes.data(), take);
                bytes.remove_prefix(take);
                continue;
            }
            if (!dispatch(partial_, on)) return false;
            partial_.clear();
        }
        while (!bytes.empty()) {
            const std::size_t whole = frame_size(bytes);
            if (whole == kInvalid) return false;
            if (bytes.size() < whole) {
                partial_.assign(bytes);
                return true;
            }
            if (!dispatch(bytes.substr(0, whole), on)) return false;
            bytes.remove_prefix(whole);
        }
        return true;
    }

    // Why feed returned false.
    const std::string& error() const { return error_; }

    // The status code of a close frame's payload: 1005 when it carries none.
    static std::uint16_t close_code(std::string_view payload) {
        if (payload.size() < 2) return 1005;
        return static_cast<std::uint16_t>(static_cast<std::uint8_t>(payload[0]) << 8 |
                                          static_cast<std::uint8_t>(payload[1]));
    }

private:
    static constexpr std::size_t kInvalid = static_cast<std::size_t>(-1);

    // A server frame's header size, from its second byte: no mask key, so 2, 4 or 10.
    static std::size_t header_size(std::uint8_t b1) {
        const unsigned length7 = b1 & 0x7F;
        return length7 == 127 ? 10 : length7 == 126 ? 4 : 2;
    }

    // The size of the frame that begins bytes, header included, as far as the bytes tell: the
    // header's size while it is incomplete. kInvalid when the length field is bad.
    std::size_t frame_size(std::string_view bytes) {
        if (bytes.size() < 2) return 2;
        const auto b1 = static_cast<std::uint8_t>(bytes[1]);
        const unsigned length7 = b1 & 0x7F;
        const std::size_t header = header_size(b1);
        if (bytes.size() < header) return header;
        std::uint64_t length = length7;
        if (header > 2) {
            length = 0;
            for (std::size_t i = 2; i < header; ++i) {
                length = length << 8 | static_cast<std::uint8_t>(bytes[i]);
            }
            // The RFC asks for the shortest length encoding.
            if ((header == 4 && length < 126) || (header == 10 && length <= 0xFFFF)) {
                fail("a frame length not in its shortest encoding");
                return kInvalid;
            }
        }
        if (length > kMaxMessageBytes) {
            fail("a frame longer than 64 MiB");
            return kInvalid;
        }
        return header + static_cast<std::size_t>(length);
    }

    // One whole frame.
    template <class Handler>
    bool dispatch(std::string_view frame, Handler& on) {
        const auto b0 = static_cast<std::uint8_t>(frame[0]);
        const auto b1 = static_cast<std::uint8_t>(frame[1]);
        const bool fin = (b0 & 0x80) != 0;
        const unsigned opcode = b0 & 0x0F;
        if ((b0 & 0x70) != 0) return fail("reserved bits set with no extension agreed");
        if ((b1 & 0x80) != 0) return fail("a masked frame from the server");
        const std::string_view payload = frame.substr(header_size(b1));
        if (opcode >= 0x8) {
            if (!fin) return fail("a fragmented control frame");
            if (payload.size() > 125) return fail("a control frame over 125 bytes");
        }
        switch (opcode) {
            case 0x0:  // continuation
                if (!in_message_) return fail("a continuation frame with no message begun");
                if (message_.size() + payload.size() > kMaxMessageBytes) {
                    return fail("a message longer than 64 MiB");
                }
                message_.append(payload);
                if (fin) {
                    in_message_ = false;
                    const std::string message = std::move(message_);
                    message_.clear();
                    on(FrameKind::message, std::string_view(message));
                }
                return true;
            case 0x1:  // text
            case 0x2:  // binary
                if (in_message_) return fail("a new message before the last one's final frame");
                if (fin) {
                    on(FrameKind::message, payload);
                } else {
                    in_message_ = true;
                    message_.assign(payload);
                }
                return true;
            case 0x8:
                if (payload.size() == 1) return fail("a close frame with a 1-byte payload");
                if (!valid_close_code(payload)) return fail("a close frame with an invalid code");
                on(FrameKind::close, payload);
                return true;
            case 0x9:
                on(FrameKind::ping, payload);
                return true;
            case 0xA:
                on(FrameKind::pong, payload);
                return true;
            default:
                return fail("a reserved opcode");
        }
    }

    // RFC 6455, section 7.4: the codes a close frame may carry.
    static bool valid_close_code(std::string_view payload) {
        if (payload.empty()) return true;
        const std::uint16_t code = close_code(payload);
        if (code >= 3000 && code <= 4999) return true;
        return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
    }

    bool fail(const char* why) {
        error_ = why;
        return false;
    }

    std::string partial_;  // the start of a frame that the next bytes complete
    std::string message_;  // the fragments so far of a fragmented message
    bool in_message_ = false;
    std::string error_;
};

// A whole client-to-server frame with FIN set: the header, the mask key, and the payload
// masked with it (RFC 6455, section 5.3). Only for control frames, so the payload is at most
// 125 bytes.
inline std::string client_frame(std::uint8_t opcode,
                                std::string_view payload,
                                std::array<std::uint8_t, 4> key) {
    std::string frame;
    frame.reserve(6 + payload.size());
    frame += static_cast<char>(0x80 | opcode);
    frame += static_cast<char>(0x80 | payload.size());
    for (const std::uint8_t k : key) frame += static_cast<char>(k);
    for (std::size_t i = 0; i < payload.size(); ++i) {
        frame += static_cast<char>(static_cast<std::uint8_t>(payload[i]) ^ key[i % 4]);
    }
    return frame;
}

}  // namespace shardcast::loadgen
