#include "dispatcher/history.hpp"

#include <algorithm>
#include <iterator>
#include <random>

namespace shardcast::dispatcher {
namespace {

GapReason gap_for(EvictionReason reason) {
    return reason == EvictionReason::expired ? GapReason::expired : GapReason::evicted;
}

template <class Deque, class Offset>
auto first_after(const Deque& entries, std::uint64_t since, Offset offset_of) {
    return std::upper_bound(
        entries.begin(), entries.end(), since,
        [&](std::uint64_t value, const auto& e) { return value < offset_of(e); });
}

}  // namespace

std::string new_epoch() {
    static constexpr char kHex[] = "0123456789abcdef";
    std::random_device random;
    std::string epoch;
    for (int i = 0; i < 16; ++i) {
        epoch += kHex[random() % 16];
    }
    return epoch;
}

void History::record_send(std::string_view client_id, const Entry& entry) {
    auto it = clients_.find(client_id);
    if (it == clients_.end()) {
        it = clients_.emplace(std::string(client_id), ClientLog{}).first;
    }
    ClientLog& log = it->second;
    log.entries.push_back(entry);
    order_.push_back({entry.offset, &log});
    ++log.refs;
    held(entry, 1);
    if (log.entries.size() > config_.size) {
        evict_front(log, EvictionReason::size);
    }
    while (bytes_ > config_.max_bytes && !order_.empty()) {
        evict_oldest(EvictionReason::memory);
    }
}

void History::record_broadcast(std::string_view except, const Entry& entry) {
    broadcasts_.push_back({entry, std::string(except)});
    order_.push_back({entry.offset, nullptr});
    held(entry, 1);
    if (broadcasts_.size() > config_.size) {
        evict_broadcast(EvictionReason::size);
    }
    while (bytes_ > config_.max_bytes && !order_.empty()) {
        evict_oldest(EvictionReason::memory);
    }
}

void History::held(const Entry& entry, int delta) {
    const auto size = static_cast<std::int64_t>(entry.payload->size());
    bytes_ = static_cast<std::size_t>(static_cast<std::int64_t>(bytes_) + delta * size);
    stats_.bytes.add(delta * size);
    stats_.entries.add(delta);
}

void History::count_out(const Entry& entry, EvictionReason reason) {
    held(entry, -1);
    stats_.evicted[enum_index(reason)].add();
}

void History::evict_front(ClientLog& log, EvictionReason reason) {
    count_out(log.entries.front(), reason);
    log.evicted_through = log.entries.front().offset;
    log.evicted_by = gap_for(reason);
    log.entries.pop_front();
    if (log.entries.empty()) {
        log.emptied = Clock::now();
    }
}

void History::evict_broadcast(EvictionReason reason) {
    count_out(broadcasts_.front().entry, reason);
    broadcasts_evicted_through_ = broadcasts_.front().entry.offset;
    broadcasts_evicted_by_ = gap_for(reason);
    broadcasts_.pop_front();
}

// The oldest entry still held, across clients and broadcasts. A ref whose entry already left
// (by its client's size limit) is passed over.
void History::evict_oldest(EvictionReason reason) {
    while (!order_.empty()) {
        const Ref ref = order_.front();
        pop_ref();
        if (ref.client == nullptr) {
            if (!broadcasts_.empty() && broadcasts_.front().entry.offset == ref.offset) {
                return evict_broadcast(reason);
            }
        } else if (!ref.client->entries.empty() &&
                   ref.client->entries.front().offset == ref.offset) {
            return evict_front(*ref.client, reason);
        }
    }
}

void History::expire(Clock::time_point now) {
    const Clock::time_point cutoff = now - config_.ttl;
    while (!order_.empty()) {
        const Ref& ref = order_.front();
        const Entry* oldest = nullptr;
        if (ref.client == nullptr) {
            if (!broadcasts_.empty() && broadcasts_.front().entry.offset == ref.offset) {
                oldest = &broadcasts_.front().entry;
            }
        } else if (!ref.client->entries.empty() &&
                   ref.client->entries.front().offset == ref.offset) {
            oldest = &ref.client->entries.front();
        }
        if (oldest == nullptr) {
            pop_ref();  // already evicted by its client's size limit
            continue;
        }
        if (oldest->at > cutoff) {
            return;
        }
        evict_oldest(EvictionReason::expired);
    }
}

void History::pop_ref() {
    if (ClientLog* client = order_.front().client) {
        --client->refs;
    }
    order_.pop_front();
}

// The marks of clients whose messages have all gone, history.ttl after the last left. A
// resume from before what they marked is then told of a gap, conservatively.
void History::forget(Clock::time_point now) {
    for (auto it = clients_.begin(); it != clients_.end();) {
        const ClientLog& log = it->second;
        if (log.entries.empty() && log.refs == 0 && now - log.emptied > config_.ttl) {
            forgotten_through_ = std::max(forgotten_through_, log.evicted_through);
            it = clients_.erase(it);
        } else {
            ++it;
        }
    }
}

History::Replay History::collect(std::string_view client_id, std::uint64_t since) const {
    Replay replay;
    auto note_gap = [&](std::uint64_t evicted_through, GapReason reason) {
        if (evicted_through > since && !replay.gap) replay.gap = reason;
    };
    note_gap(forgotten_through_, GapReason::expired);
    note_gap(broadcasts_evicted_through_, broadcasts_evicted_by_);
    const auto offset_of = [](const Entry& e) { return e.offset; };
    std::vector<Entry> targeted;
    if (auto it = clients_.find(client_id); it != clients_.end()) {
        const ClientLog& log = it->second;
        note_gap(log.evicted_through, log.evicted_by);
        targeted.assign(first_after(log.entries, since, offset_of), log.entries.end());
    }
    std::vector<Entry> broadcast;
    const auto first =
        first_after(broadcasts_, since, [](const Broadcast& b) { return b.entry.offset; });
    for (auto it = first; it != broadcasts_.end(); ++it) {
        if (it->except != client_id) broadcast.push_back(it->entry);
    }
    replay.entries.reserve(targeted.size() + broadcast.size());
    std::merge(targeted.begin(), targeted.end(), broadcast.begin(), broadcast.end(),
               std::back_inserter(replay.entries),
               [](const Entry& a, const Entry& b) { return a.offset < b.offset; });
    return replay;
}

History::Replay History::since(std::string_view client_id, std::uint64_t since) const {
    return collect(client_id, since);
}

History::Replay History::all(std::string_view client_id) const {
    Replay replay = collect(client_id, 0);
    replay.gap.reset();
    return replay;
}

}  // namespace shardcast::dispatcher
