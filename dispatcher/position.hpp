// Position: where a message stands in the stream a shardcast.v1 client resumes from
// (docs/protocol.md): its offset, within an epoch. On one node the shard numbers it and the
// epoch is the shard's own, left null here; in a cluster with history the JetStream stream
// numbers it, and its epoch travels with it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace shardcast::dispatcher {

using Epoch = std::shared_ptr<const std::string>;

struct Position {
    std::uint64_t offset = 0;  // 0: none, the message was not stored
    Epoch epoch;               // null: the shard's own
};

}  // namespace shardcast::dispatcher
