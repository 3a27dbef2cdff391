// The data string of every message loadgen publishes: "<publisher>:<seq>:<send_ns>:<padding>".
// seq counts per (publisher, destination): per publisher for broadcasts, per publisher and
// client for targeted sends. send_ns is steady_clock (CLOCK_MONOTONIC) when the request was
// built, comparable with the receive time because both ends run on this machine. Only digits,
// ':' and 'x' appear, so the string needs no JSON escaping. Any thread.
#pragma once

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shardcast::loadgen {

inline std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The id of client number index, as used in /ws/{id} and in "to".
inline std::string client_id(int index) { return "lg" + std::to_string(index); }

struct Stamp {
    std::uint32_t publisher = 0;
    std::uint64_t seq = 0;
    std::int64_t send_ns = 0;
};

template <class Number>
void append_number(std::string& out, Number value) {
    char digits[24];  // a 64-bit number needs 20, and a sign
    out.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
}

// Appends the data string to out, padded with 'x' so that it adds at least size bytes.
inline void append_message(std::string& out, const Stamp& stamp, int size) {
    const std::size_t start = out.size();
    append_number(out, stamp.publisher);
    out += ':';
    append_number(out, stamp.seq);
    out += ':';
    append_number(out, stamp.send_ns);
    out += ':';
    const auto written = static_cast<int>(out.size() - start);
    if (size > written) out.append(static_cast<std::size_t>(size - written), 'x');
}

inline std::optional<Stamp> parse_message(std::string_view text) {
    Stamp stamp;
    const char* p = text.data();
    const char* const end = text.data() + text.size();
    auto field = [&](auto& value) {
        const auto [next, ec] = std::from_chars(p, end, value);
        if (ec != std::errc{} || next == end || *next != ':') return false;
        p = next + 1;
        return true;
    };
    if (!field(stamp.publisher) || !field(stamp.seq) || !field(stamp.send_ns)) {
        return std::nullopt;
    }
    return stamp;
}

}  // namespace shardcast::loadgen
