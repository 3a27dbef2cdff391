// ResumeResult: what a cluster's stream holds for one session's resume, found by the link
// off the shard thread and handed back to the session's shard in a Command.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dispatcher/history_stats.hpp"
#include "dispatcher/payload.hpp"
#include "dispatcher/position.hpp"

namespace shardcast::dispatcher {

struct ResumeResult {
    struct Entry {
        Position position;
        Payload payload;
    };

    std::uint64_t session = 0;  // Session::serial() of the session that asked
    std::uint64_t since = 0;    // where the client asked to resume from
    std::string epoch;
    std::optional<GapReason> gap;
    std::vector<Entry> entries;  // in offset order
    // Every message for the client up to here is in entries, or lost (then gap says so).
    Position through;
};

}  // namespace shardcast::dispatcher
