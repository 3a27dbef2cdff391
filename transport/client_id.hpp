// Client id syntax for /ws/{clientId} and the publish API. Pure function, any thread.
#pragma once

#include <string_view>

namespace shardcast::transport {

inline constexpr std::size_t kMaxClientIdLength = 128;

// 1 to 128 characters from [A-Za-z0-9._:@-]: safe in a URL path, a log line and, later,
// a message-bus subject, with no escaping anywhere.
constexpr bool valid_client_id(std::string_view id) {
    if (id.empty() || id.size() > kMaxClientIdLength) {
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
