// The dispatcher alone, from an installed shardcast: start, publish, stop. No transport: a
// send to an id without a session is counted, not delivered.
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
    const auto failed = hub.totals().failed_total();
    std::printf("core only: %zu shards, %llu undelivered\n", hub.shard_count(),
                static_cast<unsigned long long>(failed));
    return failed == 1 ? 0 : 1;
}
