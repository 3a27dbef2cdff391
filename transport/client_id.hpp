// Client id syntax for /ws/{clientId} and the publish API. Pure function, any thread.
#pragma once

#include <string_view>

namespace shardcast::transport {

inline constexpr std::size_t kMaxClientIdLength = 128;

// 1 to 128 characters from [A-Za-z0-9._:@-], with no dot first, last or next to another:
// safe in a URL path, a log line and a NATS subject (where dots separate tokens and no
// token may be empty), with no escaping anywhere.
constexpr bool valid_client_id(std::string_view id) {
    if (id.empty() || id.size() > kMaxClientIdLength || id.front() == '.' || id.back() == '.' ||
        id.find("..") != std::string_view::npos) {
        return false;
    }
    for (char c : id) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '@' ||
                        c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

}  // namespace shardcast::transport
