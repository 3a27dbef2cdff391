// SessionMutex: a lock per session around its send, the `ReentrantLock` fix. Safe, and
// producers sending to different sessions no longer wait for each other; producers sending to
// the same session still do, for as long as that session's write takes. Each send is one
// socket write, as a servlet container's sendText is.
//
// Thread contract: send() from any thread; the constructor and wait_delivered() from the
// benchmark thread.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "bench/micro/strategies/sink.hpp"
#include "dispatcher/payload.hpp"

namespace shardcast::bench {

class SessionMutex {
public:
    SessionMutex(Sinks& sinks, const std::vector<std::string>& ids) {
        for (std::size_t i = 0; i < ids.size(); ++i) {
            Guarded& g = guarded_.emplace_back(sinks[i]);
            sessions_.emplace(ids[i], &g);
        }
    }

    void send(std::string_view id, const dispatcher::Payload& payload) {
        Guarded& g = *sessions_.find(id)->second;
        std::lock_guard lock(g.mutex);
        g.sink.write(*payload);
    }

    // The write happened inside send(): nothing is ever left to wait for.
    void wait_delivered(std::uint64_t) {}

private:
    // A cache line each, so sessions' locks do not contend through false sharing.
    struct alignas(64) Guarded {
        explicit Guarded(Sink& s) : sink(s) {}
        std::mutex mutex;
        Sink& sink;
    };

    std::deque<Guarded> guarded_;
    IdMap<Guarded> sessions_;
};

}  // namespace shardcast::bench
