// printable(): request text from the network, made safe to echo in a JSON error and a log
// line. Pure function, any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace shardcast::transport {

// A request target may hold any byte above 0x7F and run to the header limit. Echoed as is,
// it makes an error body that is not UTF-8, so not JSON, and a log line of kilobytes. Here
// every byte outside visible ASCII is percent-encoded, as it would be in a URL, and text
// past `limit` bytes is cut and marked with "...".
inline std::string printable(std::string_view text, std::size_t limit = 128) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    const std::string_view shown = text.substr(0, limit);
    std::string out;
    out.reserve(shown.size() + 3);
    for (const char c : shown) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte > 0x20 && byte < 0x7f) {
            out += c;
        } else {
            out += '%';
            out += kHex[byte >> 4];
            out += kHex[byte & 0xf];
        }
    }
    if (text.size() > limit) out += "...";
    return out;
}

}  // namespace shardcast::transport
