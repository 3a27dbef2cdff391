// The dispatcher alone, from an installed shardcast: start, publish, stop. No transport: a
// send to an id without a session is held for its resume, not delivered.
#include <chrono>
#include <cstdio>

#include "dispatcher/dispatcher.hpp"

int main() {
    shardcast::dispatcher::DispatcherConfig config;
    config.shards = 2;
    shardcast::dispatcher::Dispatcher hub(config);
    hub.start();
    hub.send("alice", shardcast::dispatcher::make_payload("hello"));
    hub.stop(std::chrono::seconds(1));
    const auto held = hub.totals().held;
    std::printf("core only: %zu shards, %llu held\n", hub.shard_count(),
                static_cast<unsigned long long>(held));
    return held == 1 ? 0 : 1;
}
