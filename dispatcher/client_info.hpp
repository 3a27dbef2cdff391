// ClientInfo: what a shard knows about one client id, answered by Dispatcher::lookup.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace shardcast::dispatcher {

struct ClientInfo {
    std::string id;
    bool online = false;
    std::size_t sessions = 0;
    std::size_t shard = 0;
    // Over its current sessions: messages written, and the socket writes that carried them.
    std::uint64_t messages_sent = 0;
    std::uint64_t socket_writes = 0;
};

}  // namespace shardcast::dispatcher
