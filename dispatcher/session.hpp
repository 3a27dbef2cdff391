// Session: one client connection as its shard sees it. The transport derives from it and
// supplies the socket primitives; the session owns the outbound queue, the one-write-in-
// flight rule, the overflow policy and the heartbeat clock.
//
// Thread contract: every member runs on the owning shard's thread (asserted in debug
// builds). Other threads reach a session only by posting a Command to its shard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dispatcher/command.hpp"
#include "dispatcher/failure_reason.hpp"
#include "dispatcher/history_stats.hpp"
#include "dispatcher/outbound_queue.hpp"
#include "dispatcher/payload.hpp"
#include "dispatcher/removal_reason.hpp"

namespace shardcast::dispatcher {

class Shard;

class Session : public std::enable_shared_from_this<Session> {
public:
    enum class State : unsigned char {
        handshaking,  // attached to its shard, upgrade not finished; messages queue up
        open,         // writing and reading
        closing,      // removed from its shard; the socket is being closed
        closed,       // done; pending handlers only release their references
    };

    Session(Shard& shard, std::string client_id);
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    virtual ~Session() = default;

    const std::string& client_id() const { return client_id_; }
    // When the session was created (Unix time, ns): across nodes, the newest one wins.
    std::int64_t attached_ns() const { return attached_ns_; }
    // Unique in the process: names the session in answers that come back to its shard.
    std::uint64_t serial() const { return serial_; }
    Shard& shard() const { return shard_; }
    State state() const { return state_; }
    // Nothing queued and no write in flight (messages being written stay at the queue's front).
    bool idle() const { return queue_.empty(); }
    // Messages written to this session, and the socket writes that carried them.
    std::uint64_t messages_sent() const { return messages_sent_; }
    std::uint64_t socket_writes() const { return socket_writes_; }

    // Called by the Shard. Queues one message; the write starts when the shard's drain turn
    // ends (write_queued), so what one turn delivers to a session goes out in one write.
    // With session.write_delay, it starts once the delay has passed, with what came since.
    // Returns false when the message overflows a terminate-policy buffer: the shard must
    // then remove the session with RemovalReason::overflow.
    bool deliver(const Outbound& message);
    // Called by the Shard at the end of a drain turn, once per session deliver() asked for.
    void write_queued();

    // Called by the Shard when the session resumes in a sequenced cluster: until
    // finish_resume, what is delivered queues and nothing is written.
    void begin_resume() { resuming_ = true; }
    bool resuming() const { return resuming_; }
    // The replay (in offset order) goes first, then what was delivered meanwhile, less what
    // the replay covers: every message of the client's up to `through` in `epoch`, which is
    // also dropped when it arrives later (a live copy can trail its stored original). False
    // when a terminate-policy buffer overflowed: the shard then removes the session with
    // RemovalReason::overflow.
    bool finish_resume(std::vector<Outbound> replay, Position through);
    // Called by the Shard for each replayed message, before anything else is queued. A
    // replay is not held to session.buffer_limit, nor dropped to make room: history bounds
    // it, its payloads are shared with history, and the client asked for all of it. What is
    // delivered after it has the whole buffer.
    void deliver_replay(const Outbound& message);
    bool replayed(const Outbound& message) const;

    // When the client's connect token runs out (its exp plus leeway); never, by default.
    // Set by the transport before the session is attached, and moved by a refresh.
    void set_expiry(Clock::time_point expires) { expires_ = expires; }
    Clock::time_point expiry() const { return expires_; }
    // Bytes queued for the client, the batch in flight included.
    std::size_t queued_bytes() const { return queue_.bytes(); }

    // Called by the Shard on every tick: the reason to remove the session when a heartbeat,
    // send-time limit or token has expired.
    std::optional<RemovalReason> check(Clock::time_point now) const;
    // Whether a heartbeat ping is due; the Shard then calls ping() once it has finished
    // walking its sessions, since a ping that fails at once removes the session. A removal
    // in between touches only the session removed, so the ping is still due then.
    bool ping_due(Clock::time_point now) const {
        return state_ == State::open && !ping_in_flight_ && now >= next_ping_;
    }
    void ping(Clock::time_point now);

    // Called by the Shard once, right after removing the session from its map: drops the
    // queue (counting each message) and starts closing the socket.
    void begin_close(RemovalReason reason, std::uint16_t code, std::string_view text);

    // Called by the Shard while closing: true when the closing handshake overran its
    // deadline, in which case the socket has been cut.
    bool close_overdue(Clock::time_point now);

    // The transport calls this when the connection is gone for good.
    void finish_close();

    // Whether the socket underneath is still open; the cleanup sweep relies on it.
    virtual bool socket_open() const = 0;

    // Called by the Shard when a resume could not be whole: the transport tells the client,
    // ahead of the messages replayed after it. since and epoch are what the client asked to
    // resume from.
    virtual void notify_gap(GapReason reason, std::uint64_t since, std::string_view epoch) = 0;

protected:
    // Transport reports, on the shard thread.
    void on_open();
    void on_handshake_failed();
    void on_ping_done(bool ok);
    void on_heard();  // any frame from the client: data, pong, ping
    // A message from the client; info is what its token says about it (JSON, or empty),
    // passed along with the frame to cluster.upstream.
    void on_frame(std::string_view data, std::string_view info);
    void on_read_end(RemovalReason reason);
    // The client asked to refresh its token and the new one does not hold (why: a reason
    // for the close frame, at most 123 bytes). Closes the session with 4005.
    void on_refresh_refused(std::string_view why);
    // The client went over a limit the transport enforces (rate_limited,
    // partial_message_limit): the session is removed for that reason.
    void on_violation(RemovalReason reason);
    // The client has started a message (or frame) it has not finished: it must finish it
    // before `by`, or the tick removes the session (message_timeout). Cleared with max().
    void set_partial_deadline(Clock::time_point by) { partial_deadline_ = by; }

    // The write path, which the transport drives: it is told when messages wait
    // (data_ready), takes them a batch at a time (take_batch) when its socket can take a
    // write, and reports each batch written (batch_written). One batch is in flight at most.
    //
    // take_batch(): the next batch, from the front of the queue, in flight from now until
    // batch_written(): its count (in_flight(i) names its messages), or 0 when there is
    // nothing to write. A transport that can put several frames into one socket write says
    // how many it takes with max_batch(); the default is one message per write.
    std::size_t take_batch();
    const Content& in_flight(std::size_t i) const { return queue_.at(i).content(); }
    // Its position in the stream clients resume from (docs/protocol.md): offset 0 for none,
    // and a null epoch for the shard's own.
    std::uint64_t in_flight_offset(std::size_t i) const { return queue_.at(i).offset(); }
    const std::string* in_flight_epoch(std::size_t i) const { return queue_.at(i).epoch(); }
    // Settles the batch in flight: counted as sent, or as failed, in which case (while open)
    // the session is removed. Calls nothing of the transport's but abort().
    void batch_written(bool ok);
    virtual std::size_t max_batch() const { return 1; }

    // Transport primitives, on the shard thread. None is called from inside take_batch or
    // batch_written, so a transport's writer is never re-entered.
    //
    // data_ready(): messages wait and no batch is in flight: take them when the socket can.
    virtual void data_ready() = 0;
    // Writes a ping; its completion calls on_ping_done. One is in flight at most.
    virtual void start_ping() = 0;

    // Sends a close frame; the transport calls finish_close() once the socket is closed.
    virtual void start_close(std::uint16_t code, std::string_view reason) = 0;
    // Cuts the socket now. Pending operations complete with errors and are ignored.
    virtual void abort() = 0;

private:
    // A close decided while the upgrade was still finishing.
    struct DeferredClose {
        std::uint16_t code;
        std::string text;
    };

    // The messages the next batch takes from the front of the queue, and their bytes.
    std::pair<std::size_t, std::size_t> front_batch() const;
    void drop_queue(RemovalReason reason, bool was_open);
    void settle_in_flight(std::optional<FailureReason> failure);
    bool on_shard_thread() const;

    Shard& shard_;
    std::string client_id_;
    std::int64_t attached_ns_;
    std::uint64_t serial_;
    State state_ = State::handshaking;
    bool resuming_ = false;  // waiting for the cluster's answer to a resume
    bool ping_in_flight_ = false;
    bool write_requested_ = false;  // on the shard's list for write_queued()
    // Closing after an announced close: take_batch hands out the front of the queue once
    // more, so what was delivered just before the close still goes out ahead of it.
    bool final_batch_ = false;
    // The first in_flight_ messages of the queue are being written; they leave it when the
    // write completes, and neither drop_oldest nor a close drops them before that.
    std::uint32_t in_flight_ = 0;
    std::size_t in_flight_bytes_ = 0;
    // The first replay_left_ messages of the queue are a replay (deliver_replay).
    std::size_t replay_left_ = 0;
    std::size_t replay_bytes_ = 0;
    Position replayed_through_;  // finish_resume's `through`
    std::uint64_t messages_sent_ = 0;
    std::uint64_t socket_writes_ = 0;
    OutboundQueue queue_;
    Clock::time_point write_started_{};
    Clock::time_point last_heard_;
    Clock::time_point next_ping_;
    Clock::time_point close_deadline_{};
    Clock::time_point expires_ = Clock::time_point::max();
    Clock::time_point partial_deadline_ = Clock::time_point::max();
    std::unique_ptr<DeferredClose> deferred_close_;  // rare: kept off the session's inline size
};

}  // namespace shardcast::dispatcher
