// The parts of a request target ("/path?query"): the path, one query parameter, and the
// target as a log line may show it. Pure functions, any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "transport/printable.hpp"

namespace shardcast::transport {

constexpr std::string_view path_of(std::string_view target) {
    return target.substr(0, target.find('?'));
}

namespace detail {

constexpr int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Calls visit(name, raw value) for each name=value pair of the query, in order, until it
// returns false. A pair with no '=' has an empty value.
template <class Visit>
void each_query_pair(std::string_view target, Visit visit) {
    const std::size_t question = target.find('?');
    if (question == std::string_view::npos) {
        return;
    }
    std::string_view query = target.substr(question + 1);
    while (!query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        const std::size_t equals = pair.find('=');
        const std::string_view name = pair.substr(0, equals);
        const std::string_view value =
            equals == std::string_view::npos ? std::string_view{} : pair.substr(equals + 1);
        if (!visit(name, value)) {
            return;
        }
    }
}

}  // namespace detail

// How many times the query names the parameter.
inline std::size_t query_count(std::string_view target, std::string_view name) {
    std::size_t count = 0;
    detail::each_query_pair(target, [&](std::string_view key, std::string_view) {
        count += key == name ? 1 : 0;
        return true;
    });
    return count;
}

// The parameter's first value, percent-decoded ('+' is a space, as forms send it), or
// nullopt when it is absent or its escapes are broken.
inline std::optional<std::string> query_param(std::string_view target, std::string_view name) {
    std::optional<std::string_view> raw;
    detail::each_query_pair(target, [&](std::string_view key, std::string_view value) {
        if (key == name) raw = value;
        return !raw;
    });
    if (!raw) {
        return std::nullopt;
    }
    std::string value;
    for (std::size_t i = 0; i < raw->size(); ++i) {
        const char c = (*raw)[i];
        if (c == '+') {
            value += ' ';
        } else if (c != '%') {
            value += c;
        } else if (i + 2 < raw->size() && detail::hex_value((*raw)[i + 1]) >= 0 &&
                   detail::hex_value((*raw)[i + 2]) >= 0) {
            value += static_cast<char>(detail::hex_value((*raw)[i + 1]) * 16 +
                                       detail::hex_value((*raw)[i + 2]));
            i += 2;
        } else {
            return std::nullopt;
        }
    }
    return value;
}

// The target for a log line: printable() (visible ASCII, cut at 128 bytes), with the value
// of every token parameter replaced by "***". A connect token must never reach a log.
inline std::string loggable_target(std::string_view target) {
    const std::size_t question = target.find('?');
    if (question == std::string_view::npos) {
        return printable(target);
    }
    std::string shown(target.substr(0, question + 1));
    bool first = true;
    detail::each_query_pair(target, [&](std::string_view name, std::string_view value) {
        shown.append(first ? "" : "&").append(name);
        if (name == "token") {
            shown.append("=***");
        } else if (!value.empty()) {
            shown.append("=").append(value);
        }
        first = false;
        return true;
    });
    return printable(shown);
}

}  // namespace shardcast::transport
