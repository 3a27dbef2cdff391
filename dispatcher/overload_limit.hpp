// OverloadLimit: which publish admission limit a shard is over (Dispatcher::overload_of). Its
// name is the reason label of the 429s the HTTP API answers with. Pure, any thread.
#pragma once

#include <cstddef>

#include "dispatcher/enum_name.hpp"

namespace shardcast::dispatcher {

enum class OverloadLimit : unsigned char {
    none,         // under every limit: publishes are taken
    queue_depth,  // more commands waiting than publish.max_queue_depth
    queue_delay,  // the oldest waiting longer than publish.max_queue_delay
};

inline constexpr std::size_t kOverloadLimitCount = enum_count<OverloadLimit>;

}  // namespace shardcast::dispatcher
