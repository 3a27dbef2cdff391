// The WebSocket frame codec: server frame headers, close payloads and the client frame reader.
// No shared state: callable from any thread, each FrameReader from its owner's only.
#include "transport/ws_frame.hpp"

#include <algorithm>
#include <cstring>

#include "dispatcher/close_code.hpp"
#include "transport/utf8.hpp"

namespace shardcast::transport::ws {
namespace {

using dispatcher::close_code::kMaxReasonBytes;
using dispatcher::close_code::kTooBig;

constexpr std::uint8_t kReserved = 0x70;
constexpr std::uint8_t kOpcodeBits = 0x0F;
constexpr std::uint8_t kMasked = 0x80;
constexpr std::uint8_t kLengthBits = 0x7F;
constexpr std::size_t kMaxControlPayload = 125;

// An assembly buffer up to this size is kept for the next message; a bigger one is released
// so an idle connection does not hold the memory of its largest message.
constexpr std::size_t kKeptCapacity = 4096;

constexpr bool is_control(Opcode opcode) { return (static_cast<std::uint8_t>(opcode) & 0x8) != 0; }

constexpr bool known_opcode(std::uint8_t opcode) {
    switch (static_cast<Opcode>(opcode)) {
        case Opcode::continuation:
        case Opcode::text:
        case Opcode::binary:
        case Opcode::close:
        case Opcode::ping:
        case Opcode::pong:
            return true;
    }
    return false;
}

// Codes a peer may put in a close frame (RFC 6455, section 7.4): 1004-1006 and 1015 are
// reserved for reporting and never sent; 1012-2999 are outside RFC 6455 and refused, as strict
// peers do.
constexpr bool may_receive(std::uint16_t code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

// The whole header, once its second byte says how long the length is. Client frames are
// masked, so the 4-byte key is always there.
constexpr std::size_t header_length(std::uint8_t b1) {
    const std::uint8_t length = b1 & kLengthBits;
    return 2 + (length == kLength16 ? 2 : length == kLength64 ? 8 : 0) + 4;
}

// XORs data with the key, starting phase bytes into it; 8 bytes per step.
void unmask(char* data,
            std::size_t size,
            const std::array<std::uint8_t, 4>& key,
            std::size_t phase) {
    std::array<std::uint8_t, 8> pattern;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        pattern[i] = key[(phase + i) % 4];
    }
    std::uint64_t wide;
    std::memcpy(&wide, pattern.data(), sizeof wide);
    std::size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        std::uint64_t word;
        std::memcpy(&word, data + i, sizeof word);
        word ^= wide;
        std::memcpy(data + i, &word, sizeof word);
    }
    for (; i < size; ++i) {
        data[i] = static_cast<char>(data[i] ^ pattern[i % 8]);
    }
}

}  // namespace

std::string close_payload(std::uint16_t code, std::string_view reason) {
    if (reason.size() > kMaxReasonBytes) {
        // Back up to the first byte of a code point, so the cut does not split one.
        std::size_t cut = kMaxReasonBytes;
        while (cut > 0 && (static_cast<unsigned char>(reason[cut]) & 0xC0) == 0x80) {
            --cut;
        }
        reason = reason.substr(0, cut);
    }
    std::string payload(2 + reason.size(), '\0');
    payload[0] = static_cast<char>(code >> 8);
    payload[1] = static_cast<char>(code & 0xFF);
    reason.copy(payload.data() + 2, reason.size());
    return payload;
}

bool FrameReader::next(std::span<char>& bytes, Event& event) {
    for (;;) {
        if (!in_payload_ && !read_header(bytes, event)) {
            return done_;  // an error event is ready, or the header needs more bytes
        }
        if (discard_ && !is_control(frame_opcode_)) {
            if (!skip_payload(bytes)) {
                return false;
            }
            continue;
        }
        if (assembly_.size() == message_size_ && remaining_ <= bytes.size()) {
            // The whole payload is here: unmask it where it lies.
            const auto size = static_cast<std::size_t>(remaining_);
            unmask(bytes.data(), size, mask_, 0);
            const std::string_view payload(bytes.data(), size);
            bytes = bytes.subspan(size);
            in_payload_ = false;
            remaining_ = 0;
            if (is_control(frame_opcode_) ||
                (frame_fin_ && frame_opcode_ != Opcode::continuation)) {
                deliver(payload, event);
                return true;
            }
            assembly_.append(payload);
            message_size_ = assembly_.size();
        } else {
            // The payload spans reads: keep what arrived, after the message so far.
            const auto size = static_cast<std::size_t>(
                std::min(remaining_, static_cast<std::uint64_t>(bytes.size())));
            unmask(bytes.data(), size, mask_, (assembly_.size() - message_size_) % 4);
            assembly_.append(bytes.data(), size);
            bytes = bytes.subspan(size);
            remaining_ -= size;
            if (remaining_ > 0) {
                return false;
            }
            in_payload_ = false;
            if (is_control(frame_opcode_)) {
                // settle() drops it from the tail once the handler has seen it.
                deliver(std::string_view(assembly_).substr(message_size_), event);
                return true;
            }
            message_size_ = assembly_.size();
        }
        if (frame_fin_) {
            deliver(assembly_, event);
            return true;
        }
    }
}

bool FrameReader::read_header(std::span<char>& bytes, Event& event) {
    const auto* in = reinterpret_cast<const std::uint8_t*>(bytes.data());
    if (header_size_ == 0 && bytes.size() >= 2) {
        if (!check_start(in[0], in[1], event)) {
            return false;
        }
        const std::size_t length = header_length(in[1]);
        if (bytes.size() >= length) {
            bytes = bytes.subspan(length);
            return start_frame(in, event);
        }
        std::memcpy(header_.data(), in, bytes.size());
        header_size_ = static_cast<std::uint8_t>(bytes.size());
        bytes = {};
        return false;
    }
    // The header spans reads: gather it, checking the first two bytes as soon as they are in.
    auto take = [&](std::size_t target) {
        const std::size_t size = std::min(target - header_size_, bytes.size());
        if (size == 0) {
            return header_size_ == target;  // bytes may be empty with a null data()
        }
        std::memcpy(header_.data() + header_size_, bytes.data(), size);
        header_size_ = static_cast<std::uint8_t>(header_size_ + size);
        bytes = bytes.subspan(size);
        return header_size_ == target;
    };
    if (header_size_ < 2) {
        if (!take(2)) {
            return false;
        }
        if (!check_start(header_[0], header_[1], event)) {
            return false;
        }
    }
    if (!take(header_length(header_[1]))) {
        return false;
    }
    header_size_ = 0;
    return start_frame(header_.data(), event);
}

bool FrameReader::check_start(std::uint8_t b0, std::uint8_t b1, Event& event) {
    if ((b0 & kReserved) != 0) {
        return fail(kProtocolError, "reserved bits set without an extension", event);
    }
    if (!known_opcode(b0 & kOpcodeBits)) {
        return fail(kProtocolError, "unknown opcode", event);
    }
    if ((b1 & kMasked) == 0) {
        return fail(kProtocolError, "unmasked client frame", event);
    }
    const auto opcode = static_cast<Opcode>(b0 & kOpcodeBits);
    if (is_control(opcode)) {
        if ((b0 & kFin) == 0) {
            return fail(kProtocolError, "fragmented control frame", event);
        }
        if ((b1 & kLengthBits) > kMaxControlPayload) {
            return fail(kProtocolError, "control frame over 125 bytes", event);
        }
    } else if (opcode == Opcode::continuation) {
        if (message_opcode_ == Opcode::continuation) {
            return fail(kProtocolError, "continuation frame without a message", event);
        }
    } else if (message_opcode_ != Opcode::continuation) {
        return fail(kProtocolError, "new message inside a fragmented message", event);
    }
    return true;
}

bool FrameReader::start_frame(const std::uint8_t* header, Event& event) {
    const std::uint8_t length7 = header[1] & kLengthBits;
    std::uint64_t length = length7;
    std::size_t at = 2;
    if (length7 == kLength16) {
        length = (std::uint64_t{header[2]} << 8) | header[3];
        at = 4;
    } else if (length7 == kLength64) {
        length = 0;
        for (int i = 0; i < 8; ++i) {
            length = (length << 8) | header[2 + i];
        }
        at = 10;
        if ((length >> 63) != 0) {
            return fail(kProtocolError, "64-bit length with the top bit set", event);
        }
    }
    std::memcpy(mask_.data(), header + at, mask_.size());
    frame_opcode_ = static_cast<Opcode>(header[0] & kOpcodeBits);
    frame_fin_ = (header[0] & kFin) != 0;
    if (!is_control(frame_opcode_)) {
        // Checked before any payload arrives: the limit bounds what the reader ever buffers.
        // message_size_ never exceeds the limit, so the subtraction cannot wrap.
        if (length > max_message_size_ - message_size_) {
            return fail(kTooBig, "message over max_message_size", event);
        }
        if (frame_opcode_ != Opcode::continuation) {
            message_opcode_ = frame_opcode_;
        }
    }
    remaining_ = length;
    in_payload_ = true;
    return true;
}

void FrameReader::deliver(std::string_view payload, Event& event) {
    switch (frame_opcode_) {
        case Opcode::ping:
            event = Event{.kind = Event::Kind::ping, .data = payload};
            return;
        case Opcode::pong:
            event = Event{.kind = Event::Kind::pong, .data = payload};
            return;
        case Opcode::close:
            return deliver_close(payload, event);
        default:
            break;
    }
    // The last frame of a data message: payload is the whole message.
    const Opcode type = message_opcode_;
    message_opcode_ = Opcode::continuation;
    message_size_ = 0;
    if (type == Opcode::text && !valid_utf8(payload)) {
        fail(kInvalidPayload, "text message is not valid UTF-8", event);
        return;
    }
    event = Event{.kind = Event::Kind::message, .message_type = type, .data = payload};
}

void FrameReader::deliver_close(std::string_view payload, Event& event) {
    done_ = true;
    if (payload.empty()) {
        event = Event{.kind = Event::Kind::close, .close_code = kNoStatus};
        return;
    }
    if (payload.size() == 1) {
        fail(kProtocolError, "close frame with a 1-byte payload", event);
        return;
    }
    const auto code = static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                                 static_cast<unsigned char>(payload[1]));
    if (!may_receive(code)) {
        fail(kProtocolError, "invalid close code", event);
        return;
    }
    const std::string_view reason = payload.substr(2);
    if (!valid_utf8(reason)) {
        fail(kInvalidPayload, "close reason is not valid UTF-8", event);
        return;
    }
    event = Event{.kind = Event::Kind::close, .data = reason, .close_code = code};
}

bool FrameReader::fail(std::uint16_t code, std::string_view why, Event& event) {
    event = Event{.kind = Event::Kind::error, .close_code = code, .error = why};
    done_ = true;
    return false;
}

void FrameReader::discard_messages() {
    discard_ = true;
    if (!in_handler_) {
        drop_message();
    }
}

bool FrameReader::skip_payload(std::span<char>& bytes) {
    const auto size =
        static_cast<std::size_t>(std::min(remaining_, static_cast<std::uint64_t>(bytes.size())));
    bytes = bytes.subspan(size);
    remaining_ -= size;
    if (remaining_ > 0) {
        return false;
    }
    in_payload_ = false;
    if (frame_fin_) {
        message_opcode_ = Opcode::continuation;
    }
    return true;
}

// Keeps only a control frame's payload that spans reads; a data frame's is skipped from here.
void FrameReader::drop_message() {
    const bool control_tail = in_payload_ && is_control(frame_opcode_);
    std::string tail = control_tail ? assembly_.substr(message_size_) : std::string();
    std::string().swap(assembly_);
    assembly_ = std::move(tail);
    message_size_ = 0;
}

void FrameReader::settle() {
    if (discard_) {
        drop_message();
        return;
    }
    if (done_ || (message_size_ == 0 && assembly_.capacity() > kKeptCapacity)) {
        std::string().swap(assembly_);
    } else {
        assembly_.resize(message_size_);
    }
}

}  // namespace shardcast::transport::ws
