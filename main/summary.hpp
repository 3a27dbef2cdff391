// Summary: the periodic one-line log of what the dispatcher did since the last line.
// Used from one thread (the main thread's timer).
#pragma once

#include <cstdint>
#include <string>

#include "dispatcher/dispatcher.hpp"
#include "transport/bus_stats.hpp"
#include "transport/http_stats.hpp"

namespace shardcast {

class Summary {
public:
    // bus: the cluster bus's counters, or null for a single node.
    Summary(dispatcher::Dispatcher& dispatcher,
            const transport::HttpStats& http,
            const transport::BusStats* bus = nullptr)
        : dispatcher_(dispatcher), http_(http), bus_(bus) {}

    // "sessions=… sent=+… failed=+… cleaned=+… rejected=+… max_queue_depth=…": counters as
    // increments since the previous call, the queue depth as the peak over that interval. In
    // cluster mode also "bus=up|down bus_out=+… bus_in=+… bus_refused=+…".
    std::string next();

private:
    dispatcher::Dispatcher& dispatcher_;
    const transport::HttpStats& http_;
    const transport::BusStats* bus_;
    std::uint64_t sent_ = 0;
    std::uint64_t failed_ = 0;
    std::uint64_t cleaned_ = 0;
    std::uint64_t rejected_ = 0;
    std::uint64_t bus_out_ = 0;
    std::uint64_t bus_in_ = 0;
    std::uint64_t bus_refused_ = 0;
};

}  // namespace shardcast
