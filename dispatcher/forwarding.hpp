// Which shard counts a command, and which commands also go to a cluster's other nodes: the
// rules in one place. Pure functions, any thread.
#pragma once

#include <cstddef>

#include "dispatcher/command.hpp"
#include "dispatcher/config.hpp"

namespace shardcast::dispatcher {

// A send, or a broadcast on shard 0: what a shard counts as published, and as failed when it
// is never delivered. Every shard sees every broadcast; shard 0 alone counts it.
// An echo was counted when it was accepted.
inline bool counts(const Command& command, std::size_t shard) {
    return !command.echo && (command.kind == Command::Kind::send ||
                             (command.kind == Command::Kind::broadcast && shard == 0));
}

// Whether a send or disconnect must also reach other nodes: never without a link or for what
// came from them; otherwise when the id is not held here, or always when an id may hold
// sessions on several nodes at once (on_duplicate: allow).
inline bool forwards(const Command& command, bool held_here, bool linked, DuplicatePolicy policy) {
    return linked && command.origin != PublishKind::bus &&
           (!held_here || policy == DuplicatePolicy::allow);
}

// Shard 0 alone hands a broadcast to the other nodes, and never one that came from them.
inline bool forwards_broadcast(const Command& command, std::size_t shard, bool linked) {
    return linked && shard == 0 && command.origin != PublishKind::bus;
}

}  // namespace shardcast::dispatcher
