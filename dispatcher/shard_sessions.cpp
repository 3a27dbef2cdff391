// Shard, its sessions: attach and remove, replacement across nodes, lookups, and the scratch
// buffers a shard's connections share. Shard thread only.
#include <algorithm>
#include <cassert>

#include "dispatcher/close_code.hpp"
#include "dispatcher/session.hpp"
#include "dispatcher/shard.hpp"

namespace shardcast::dispatcher {
namespace {

// A shard's scratch buffer, allocated on first use so a shard that never reads or writes
// holds none.
std::span<char> scratch(std::unique_ptr<char[]>& buffer, std::size_t size) {
    if (!buffer) {
        buffer = std::make_unique_for_overwrite<char[]>(size);
    }
    return {buffer.get(), size};
}

}  // namespace

Shard::Attach Shard::attach(std::shared_ptr<Session> session) {
    assert(on_shard_thread());
    if (phase_ != Phase::running) {
        return Attach::stopping;
    }
    const bool replace = config_.session.on_duplicate == DuplicatePolicy::replace;
    auto it = sessions_.find(session->client_id());
    SessionList old;
    if (it != sessions_.end()) {
        if (replace) {
            old = it->second;
        } else if (it->second.size() >= config_.session.max_per_client) {
            return Attach::too_many;
        }
    }
    // The new session joins before the old ones leave, so the id never looks released.
    SessionList& list = sessions_[session->client_id()];
    const bool first = list.empty();
    list.push_back(session);
    stats_.sessions.add(1);
    stats_.connections.add();
    for (const auto& s : old) {
        remove(*s, RemovalReason::replaced);
    }
    if (link_) {
        if (first) {
            link_->held(session->client_id());
        }
        if (replace) {
            link_->claim(session->client_id(), session->attached_ns());
        }
    }
    return Attach::attached;
}

void Shard::remove(Session& session, RemovalReason reason) {
    remove(session, reason, close_code::for_removal(reason), enum_name(reason));
}

void Shard::remove(Session& session,
                   RemovalReason reason,
                   std::uint16_t code,
                   std::string_view text) {
    assert(on_shard_thread());
    auto it = sessions_.find(session.client_id());
    if (it == sessions_.end()) {
        return;  // already removed: every removal happens once
    }
    SessionList& list = it->second;
    auto pos =
        std::find_if(list.begin(), list.end(), [&](const auto& s) { return s.get() == &session; });
    if (pos == list.end()) {
        return;
    }
    std::shared_ptr<Session> owned = std::move(*pos);
    list.erase(pos);
    if (list.empty()) {
        sessions_.erase(it);
        if (link_) {
            link_->released(session.client_id());
        }
    }
    stats_.sessions.add(-1);
    stats_.add_cleaned(reason);
    closing_.emplace(&session, std::move(owned));
    session.begin_close(reason, code, text);
}

void Shard::forget(Session& session) {
    assert(on_shard_thread());
    closing_.erase(&session);
}

ClientInfo Shard::lookup(std::string_view client_id) const {
    assert(on_shard_thread());
    ClientInfo info{std::string(client_id), false, 0, index_};
    auto it = sessions_.find(client_id);
    if (it != sessions_.end()) {
        info.sessions = it->second.size();
        info.online = info.sessions > 0;
        for (const auto& session : it->second) {
            info.messages_sent += session->messages_sent();
            info.socket_writes += session->socket_writes();
        }
    }
    return info;
}

std::span<char> Shard::read_scratch() {
    assert(on_shard_thread());
    return scratch(read_scratch_, 64 * 1024);
}

std::span<char> Shard::write_scratch() {
    assert(on_shard_thread());
    return scratch(write_scratch_, kWriteScratchBytes);
}

std::size_t Shard::session_count() const {
    return static_cast<std::size_t>(stats_.sessions.load());
}

// Another node attached a session of this id: the local ones attached before it lose.
// Times come from different hosts' clocks; a tie goes to the node the claim says.
void Shard::replace_older(const Command& claim) {
    auto it = sessions_.find(claim.client_id);
    if (it == sessions_.end()) {
        return;
    }
    SessionList older;
    for (const auto& session : it->second) {
        const std::int64_t since = session->attached_ns();
        if (since < claim.claim_since_ns ||
            (since == claim.claim_since_ns && claim.claim_wins_ties)) {
            older.push_back(session);
        }
    }
    for (const auto& session : older) {
        remove(*session, RemovalReason::replaced);
    }
}

void Shard::resume(Session& session, std::uint64_t since, std::string_view epoch) {
    assert(on_shard_thread());
    HistoryStats& stats = stats_.history;
    stats.resumes.add();
    if (sequenced_) {
        session.begin_resume();
        link_->fetch_history(session.client_id(), since, epoch, index_, session.serial());
        return;
    }
    if (!keeps_history()) {
        stats.gaps[enum_index(GapReason::unavailable)].add();
        session.notify_gap(GapReason::unavailable, since, epoch);
        return;
    }
    const bool same_epoch = epoch == epoch_;
    History::Replay replay =
        same_epoch ? history_.since(session.client_id(), since) : history_.all(session.client_id());
    if (!same_epoch) {
        replay.gap = GapReason::epoch;
    }
    if (replay.gap) {
        stats.gaps[enum_index(*replay.gap)].add();
        session.notify_gap(*replay.gap, since, epoch);
    }
    const auto now = Clock::now();
    for (const History::Entry& entry : replay.entries) {
        session.deliver_replay(
            Outbound(entry.payload, now, &stats_.outbound_bytes, {entry.offset, nullptr}));
    }
    stats.replayed.add(replay.entries.size());
}

// The link's answer to a resume: the gap notice, then the replay, then what arrived live
// meanwhile and the replay does not already hold.
void Shard::finish_resume(const Command& command) {
    const ResumeResult& result = *command.resumed;
    auto it = sessions_.find(command.client_id);
    if (it == sessions_.end()) {
        return;
    }
    const auto found = std::find_if(it->second.begin(), it->second.end(),
                                    [&](const auto& s) { return s->serial() == result.session; });
    if (found == it->second.end()) {
        return;  // gone meanwhile
    }
    const std::shared_ptr<Session> session = *found;
    HistoryStats& stats = stats_.history;
    if (result.gap) {
        stats.gaps[enum_index(*result.gap)].add();
        session->notify_gap(*result.gap, result.since, result.epoch);
    }
    const auto now = Clock::now();
    std::vector<Outbound> replay;
    replay.reserve(result.entries.size());
    for (const ResumeResult::Entry& entry : result.entries) {
        replay.emplace_back(entry.payload, now, &stats_.outbound_bytes, entry.position);
    }
    stats.replayed.add(replay.size());
    if (!session->finish_resume(std::move(replay), result.through)) {
        remove(*session, RemovalReason::overflow);
    }
}

}  // namespace shardcast::dispatcher
