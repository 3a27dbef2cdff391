// Command: one unit of work a producer hands to a shard through its Inbox.
// Created on any thread, moved into the inbox, consumed on the shard thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "dispatcher/payload.hpp"
#include "dispatcher/position.hpp"
#include "dispatcher/publish_ack.hpp"
#include "dispatcher/publish_kind.hpp"
#include "dispatcher/resume_result.hpp"

namespace shardcast::dispatcher {

using Clock = std::chrono::steady_clock;

struct Command {
    // claim: another node attached a session of client_id at claim_since_ns; older local
    // sessions of the id are replaced. resumed: the cluster's answer to a session's resume.
    // ack: the producer waits for the shard to take what it published before (when_taken).
    enum class Kind : unsigned char { send, broadcast, disconnect, claim, resumed, ack };

    // Global publish order: taken after the previous publish returned, so sorting a
    // drained batch by stamp restores "returned before began" order across producers.
    std::uint64_t stamp = 0;
    Kind kind = Kind::send;
    PublishKind origin = PublishKind::send;  // bus: came from another node, never forwarded
    bool claim_wins_ties = false;            // claim only: the claimer wins an equal time
    // send/broadcast: this node's own message, back from the cluster's stream with its
    // position; counted when it was accepted, so only delivered now.
    bool echo = false;
    std::uint16_t close_code = 0;     // disconnect only
    std::int64_t claim_since_ns = 0;  // claim only
    // send/disconnect: the target id. broadcast: the id to skip (empty: none).
    std::string client_id;
    // send/broadcast: the message. disconnect: the close reason text.
    Payload payload;
    // send/broadcast numbered by the cluster's stream: where it stands there.
    Position position;
    std::unique_ptr<ResumeResult> resumed;  // resumed only
    std::shared_ptr<PublishAck> ack;        // ack only
    Clock::time_point enqueued{};
};

static_assert(std::is_nothrow_move_constructible_v<Command>);

}  // namespace shardcast::dispatcher
