// PublishKind: which API a message came through; a label on the published counters.
#pragma once

#include <cstddef>
#include <string_view>

namespace shardcast::dispatcher {

// bus: arrived from another node (or a backend publishing straight to the bus) in cluster
// mode; such messages are delivered here and never forwarded again.
enum class PublishKind : unsigned char { send, broadcast, batch, bus };

inline constexpr std::size_t kPublishKindCount = 4;

constexpr std::string_view to_string(PublishKind kind) {
    switch (kind) {
        case PublishKind::send:
            return "send";
        case PublishKind::broadcast:
            return "broadcast";
        case PublishKind::batch:
            return "batch";
        case PublishKind::bus:
            return "bus";
    }
    return "unknown";
}

}  // namespace shardcast::dispatcher
