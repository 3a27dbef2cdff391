// History: the messages a shard has accepted for each of its client ids, kept so that a client
// that reconnects can resume where it left off. Each message carries its offset, the shard's
// sequence number when it was delivered: offsets order everything one shard delivers, and so
// increase along every client's stream. A broadcast is kept once per shard, its payload
// shared with every client it was for; a targeted send once, under its id.
//
// Bounded three ways, oldest first: history.size messages per client (broadcasts count in a
// ring of that size too), history.ttl, and history.max_bytes of payload per shard. What is
// evicted leaves a mark, so a resume from before it learns of the gap instead of missing it.
//
// Thread contract: owned by one shard and used only on its thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dispatcher/command.hpp"
#include "dispatcher/config.hpp"
#include "dispatcher/history_stats.hpp"
#include "dispatcher/payload.hpp"

namespace shardcast::dispatcher {

// 16 hex digits no two starts share: offsets from before a restart mean nothing after it.
std::string new_epoch();

class History {
public:
    struct Entry {
        std::uint64_t offset;
        Payload payload;
        Clock::time_point at;  // when the shard delivered it
    };
    struct Replay {
        std::vector<Entry> entries;    // after since, in offset order
        std::optional<GapReason> gap;  // some of what came after since is gone
    };

    History(const HistoryConfig& config, HistoryStats& stats) : config_(config), stats_(stats) {}

    void record_send(std::string_view client_id, const Entry& entry);
    // except: the id the broadcast skipped, or empty.
    void record_broadcast(std::string_view except, const Entry& entry);

    // What the client has after offset since, and whether anything after it is gone.
    Replay since(std::string_view client_id, std::uint64_t since) const;
    // Everything held for the client, for a resume from another epoch.
    Replay all(std::string_view client_id) const;

    // Evicts what is past history.ttl at now; called by the shard's tick.
    void expire(Clock::time_point now);
    // Drops the marks of clients whose messages have all gone, history.ttl after the last
    // left; called by the shard's sweep.
    void forget(Clock::time_point now);

private:
    // One client's targeted messages, oldest first. Once empty it stays as a mark of what was
    // evicted until history.ttl after its last eviction.
    struct ClientLog {
        std::deque<Entry> entries;
        std::uint64_t evicted_through = 0;  // the highest offset evicted
        GapReason evicted_by = GapReason::evicted;
        Clock::time_point emptied{};
        std::uint32_t refs = 0;  // in order_, stale ones included: the log outlives them
    };
    struct Broadcast {
        Entry entry;
        std::string except;
    };
    // Every entry in offset order, to evict the oldest first across clients.
    struct Ref {
        std::uint64_t offset;
        ClientLog* client;  // null: a broadcast
    };
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };

    Replay collect(std::string_view client_id, std::uint64_t since) const;
    void evict_front(ClientLog& log, EvictionReason reason);
    void evict_broadcast(EvictionReason reason);
    void evict_oldest(EvictionReason reason);
    void pop_ref();
    void held(const Entry& entry, int delta);
    void count_out(const Entry& entry, EvictionReason reason);

    const HistoryConfig config_;
    HistoryStats& stats_;
    std::unordered_map<std::string, ClientLog, Hash, std::equal_to<>> clients_;
    std::deque<Broadcast> broadcasts_;
    std::uint64_t broadcasts_evicted_through_ = 0;
    GapReason broadcasts_evicted_by_ = GapReason::evicted;
    std::deque<Ref> order_;
    // Offsets up to here may have been held for clients whose marks are gone: a resume from
    // before it is told of a possible gap.
    std::uint64_t forgotten_through_ = 0;
    std::size_t bytes_ = 0;
};

}  // namespace shardcast::dispatcher
