// GlobalMutex: one lock around every send to every session, the `synchronized` fix. Safe,
// and the simplest possible: every producer waits for every other producer's write, whatever
// session it targets. Each send is one socket write, as a servlet container's sendText is.
//
// Thread contract: send() from any thread; the constructor and wait_delivered() from the
// benchmark thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "bench/micro/strategies/sink.hpp"
#include "dispatcher/payload.hpp"

namespace shardcast::bench {

class GlobalMutex {
public:
    GlobalMutex(Sinks& sinks, const std::vector<std::string>& ids) {
        for (std::size_t i = 0; i < ids.size(); ++i) {
            sessions_.emplace(ids[i], &sinks[i]);
        }
    }

    void send(std::string_view id, const dispatcher::Payload& payload) {
        Sink* sink = sessions_.find(id)->second;
        std::lock_guard lock(mutex_);
        sink->write(*payload);
    }

    // The write happened inside send(): nothing is ever left to wait for.
    void wait_delivered(std::uint64_t) {}

private:
    IdMap<Sink> sessions_;
    std::mutex mutex_;
};

}  // namespace shardcast::bench
