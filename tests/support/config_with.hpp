// config_with: the default dispatcher configuration with a given number of shards, the
// starting point of most dispatcher tests.
#pragma once

#include <cstddef>

#include "dispatcher/config.hpp"

namespace shardcast::test {

inline dispatcher::DispatcherConfig config_with(std::size_t shards) {
    dispatcher::DispatcherConfig config;
    config.shards = shards;
    return config;
}

}  // namespace shardcast::test
