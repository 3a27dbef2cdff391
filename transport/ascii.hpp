// Case-insensitive comparisons of header values, ASCII only (HTTP's tokens are).
//
// Not Beast's iequals: in Boost 1.81 it reads one byte past the end of both arguments when
// they match but differ in case (boost/beast/core/impl/string.ipp, its "slow" loop), and so
// does token_list::exists, which calls it. Within Beast's own fields the byte after a value
// is its CRLF; a view that ends where its buffer does is read out of bounds (the request
// fuzzer found it).
#pragma once

#include <boost/beast/http/rfc7230.hpp>
#include <string_view>

namespace shardcast::transport {

constexpr char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

constexpr bool ascii_iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) {
            return false;
        }
    }
    return true;
}

// Whether a comma-separated list of tokens (Connection, Upgrade) holds `token`.
inline bool has_token(std::string_view list, std::string_view token) {
    for (const auto item : boost::beast::http::token_list{list}) {
        if (ascii_iequals(item, token)) {
            return true;
        }
    }
    return false;
}

}  // namespace shardcast::transport
