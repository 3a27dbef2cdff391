// Unguarded: every producer writes straight to the session, with nothing in between. This is
// the bug all the other strategies fix, kept as the control that shows the sink's overlap
// detector works: it must report violations wherever two producers share a session. Each
// send is one socket write.
//
// Thread contract: send() from any thread (that is the point); the constructor and
// wait_delivered() from the benchmark thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bench/micro/strategies/sink.hpp"
#include "dispatcher/payload.hpp"

namespace shardcast::bench {

class Unguarded {
public:
    Unguarded(Sinks& sinks, const std::vector<std::string>& ids) {
        for (std::size_t i = 0; i < ids.size(); ++i) {
            sessions_.emplace(ids[i], &sinks[i]);
        }
    }

    void send(std::string_view id, const dispatcher::Payload& payload) {
        sessions_.find(id)->second->write(*payload);
    }

    // The write happened inside send(): nothing is ever left to wait for.
    void wait_delivered(std::uint64_t) {}

private:
    IdMap<Sink> sessions_;
};

}  // namespace shardcast::bench
