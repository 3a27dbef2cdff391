// ClientInfo: what a shard knows about one client id, answered by Dispatcher::lookup.
#pragma once

#include <cstddef>
#include <string>

namespace shardcast::dispatcher {

struct ClientInfo {
    std::string id;
    bool online = false;
    std::size_t sessions = 0;
    std::size_t shard = 0;
};

}  // namespace shardcast::dispatcher
