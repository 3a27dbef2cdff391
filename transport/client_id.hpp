// Client id syntax for /ws/{clientId} and the publish API. Pure functions, any thread; the config
// loader checks node names and subject prefixes with the same character rules.
#pragma once

#include <string_view>

namespace shardcast::transport {

inline constexpr std::size_t kMaxClientIdLength = 128;

// Letters, digits, '_' and '-': what a NATS subject token may hold besides other safe
// punctuation.
constexpr bool word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

// [A-Za-z0-9._:@-]: safe in a URL path, a log line, a metric label and a NATS subject or
// header, with no escaping anywhere.
constexpr bool id_char(char c) { return word_char(c) || c == '.' || c == ':' || c == '@'; }

// Dots separate NATS subject tokens, and no token may be empty: no dot first, last or next
// to another. An empty text has no tokens at all.
constexpr bool dots_separate_tokens(std::string_view text) {
    return !text.empty() && text.front() != '.' && text.back() != '.' &&
           text.find("..") == std::string_view::npos;
}

// 1 to 128 id characters, whose dots leave no subject token empty.
constexpr bool valid_client_id(std::string_view id) {
    if (id.size() > kMaxClientIdLength || !dots_separate_tokens(id)) {
        return false;
    }
    for (char c : id) {
        if (!id_char(c)) {
            return false;
        }
    }
    return true;
}

}  // namespace shardcast::transport
