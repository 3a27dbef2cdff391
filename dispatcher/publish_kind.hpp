// PublishKind: which API a message came through; a label on the published counters.
#pragma once

#include <cstddef>
#include <string_view>

#include "dispatcher/enum_name.hpp"

namespace shardcast::dispatcher {

// bus: arrived from another node (or a backend publishing straight to the bus) in cluster
// mode; such messages are delivered here and never forwarded again.
enum class PublishKind : unsigned char { send, broadcast, batch, bus };

inline constexpr std::size_t kPublishKindCount = enum_count<PublishKind>;

}  // namespace shardcast::dispatcher
