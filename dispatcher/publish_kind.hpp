// PublishKind: which API a message came through; a label on the published counters.
#pragma once

#include <cstddef>
#include <string_view>

namespace shardcast::dispatcher {

enum class PublishKind : unsigned char { send, broadcast, batch };

inline constexpr std::size_t kPublishKindCount = 3;

constexpr std::string_view to_string(PublishKind kind) {
    switch (kind) {
        case PublishKind::send:
            return "send";
        case PublishKind::broadcast:
            return "broadcast";
        case PublishKind::batch:
            return "batch";
    }
    return "unknown";
}

}  // namespace shardcast::dispatcher
