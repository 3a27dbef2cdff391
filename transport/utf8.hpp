// UTF-8 validation for payloads that arrive from the bus: clients receive text frames, and a
// text frame that is not valid UTF-8 makes a strict client close the connection.
#pragma once

#include <cstddef>
#include <string_view>

namespace shardcast::transport {

// Well-formed UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates, at most U+10FFFF.
constexpr bool valid_utf8(std::string_view text) {
    std::size_t i = 0;
    const std::size_t n = text.size();
    auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    auto continuation = [&](std::size_t k) { return k < n && (byte(k) & 0xC0) == 0x80; };
    while (i < n) {
        const unsigned char c = byte(i);
        if (c < 0x80) {
            ++i;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (!continuation(i + 1)) return false;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (!continuation(i + 1) || !continuation(i + 2)) return false;
            const unsigned char c1 = byte(i + 1);
            if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F)) return false;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (!continuation(i + 1) || !continuation(i + 2) || !continuation(i + 3)) return false;
            const unsigned char c1 = byte(i + 1);
            if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)) return false;
            i += 4;
        } else {
            return false;
        }
    }
    return true;
}

}  // namespace shardcast::transport
