// Dispatcher: the front door. Owns the shards, routes each client id to its shard, and
// turns send/broadcast/disconnect calls into Commands in the shards' inboxes.
//
// Thread contract: send(), broadcast(), disconnect(), online(), lookup() and ready() may be
// called from any thread, concurrently, and never block or lock. start() and stop() are
// called once each, from a thread that is not a shard thread.
//
// Ordering: a publish that returned before another began is delivered before it to every
// client both reach, whatever threads made them. Concurrent publishes may interleave.
//
// Cluster mode: with a ClusterLink set, a send for an id with no local session (and every
// broadcast and disconnect) is also handed to the link by the shard that owns the id, so it
// leaves this node in the same order it was published. Commands with PublishKind::bus came
// from the link and are delivered here only. They are taken until the shards have closed
// their sessions in stop(), not only until stop() begins: the clients they are for are
// still connected while the shards drain. When the link sequences (history on JetStream),
// every send and broadcast accepted here goes to the link first and is delivered, here too,
// when it comes back numbered: the stream's order is the one order every node delivers in.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcher/client_info.hpp"
#include "dispatcher/cluster_link.hpp"
#include "dispatcher/config.hpp"
#include "dispatcher/overload_limit.hpp"
#include "dispatcher/payload.hpp"
#include "dispatcher/publish_ack.hpp"
#include "dispatcher/publish_kind.hpp"
#include "dispatcher/router.hpp"
#include "dispatcher/shard.hpp"

namespace shardcast::dispatcher {

class Dispatcher {
public:
    explicit Dispatcher(DispatcherConfig config);
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;
    ~Dispatcher();

    // Joins a cluster: the link learns which ids are held here and carries what is meant for
    // other nodes. Call before start(); the link must outlive stop().
    void set_link(ClusterLink* link);
    // Keeps `owner` until this dispatcher is destroyed, after its shards: a transport's
    // connections point into it, and a shard's io_context may still hold operations that
    // own a connection when it is destroyed. From the thread that owns the dispatcher.
    void keep_until_destroyed(std::shared_ptr<const void> owner);
    // Starts one thread per shard.
    void start();
    // Stops taking publishes, delivers what is queued for up to drain_timeout, closes every
    // session with 1001, has the link stop receiving and joins the shard threads.
    void stop(std::chrono::milliseconds drain_timeout);

    // Queues payload for every session of client_id. True when accepted; false only while
    // stopping. A client with no session is counted as a no_session failure, not an error.
    bool send(std::string_view client_id, Payload payload, PublishKind kind = PublishKind::send);
    // Queues payload for every session except those of except (empty: none skipped).
    // The payload is shared by all sessions, never copied.
    bool broadcast(Payload payload,
                   std::string_view except = {},
                   PublishKind kind = PublishKind::broadcast);
    // Closes every session of client_id with the given close code and reason (on every node,
    // unless kind is PublishKind::bus).
    bool disconnect(std::string_view client_id,
                    std::uint16_t code,
                    std::string_view reason,
                    PublishKind kind = PublishKind::send);
    // From the link, a message of the cluster's stream: delivered here with its position, or
    // none when the stream could not store it. echo: this node's own unstored message,
    // counted when it was accepted; otherwise counted as PublishKind::bus.
    bool send_stored(std::string_view client_id, Payload payload, Position position, bool echo);
    bool broadcast_stored(Payload payload, std::string_view except, Position position, bool echo);
    // From the link: its answer to ClusterLink::fetch_history, for the session's shard.
    bool resumed(std::size_t shard,
                 std::string_view client_id,
                 std::unique_ptr<ResumeResult> result);
    // Runs done(true) once each listed shard has delivered everything this thread published
    // to it before the call and started the writes of that turn (the messages are on their
    // clients' sockets, queued behind a slow client, counted as failed, or, in a cluster,
    // handed to the link); done(false) if one stopped first or stop() has begun. done runs
    // once, on the thread of the shard that finishes last, or here when nothing is queued.
    void when_taken(const std::vector<std::size_t>& shards, PublishAck::Done done);
    // Another node attached a session of client_id at since_ns (Unix time, ns): local sessions
    // of the id attached before it close with 4001, as do those attached at the same instant
    // when wins_ties is set.
    bool claim(std::string_view client_id, std::int64_t since_ns, bool wins_ties);

    // Whether a shard is behind, read without stopping it: more commands waiting than
    // DispatcherConfig::max_queue_depth, or its oldest waiting longer than max_queue_delay.
    // Its inbox, its CPU, is behind. Publishing anyway is allowed; a caller that can push
    // back on its producer (the HTTP API: 429) asks first. Memory held for slow clients is
    // no reason to push back: the shard cuts the slowest (max_outbound_bytes).
    struct Overload {
        using Limit = OverloadLimit;
        Limit limit = Limit::none;
        std::size_t shard = 0;
        // What exceeded the limit: queue_depth, the commands waiting; queue_delay, how long
        // the oldest has waited, in microseconds.
        std::uint64_t value = 0;
        explicit operator bool() const { return limit != Limit::none; }
    };
    Overload overload_of(std::string_view client_id) const;
    // The first overloaded shard: a broadcast reaches them all.
    Overload overload_of_any() const;

    // Sessions online across all shards (each shard's count, read without stopping it).
    std::size_t online() const;
    // Every shard's counters added up, read without stopping them.
    StatsTotals totals() const;
    // Asks the client's shard about it; handler runs on that shard's thread. False, and the
    // handler never runs, once stop() has begun: a stopped shard runs nothing posted to it.
    bool lookup(std::string_view client_id, std::function<void(ClientInfo)> handler);
    // Started, not stopping, and every shard's loop turned within the last few ticks.
    bool ready() const;
    bool accepting() const { return intake_.load(std::memory_order_acquire) == Intake::all; }

    const Router& router() const { return router_; }
    std::size_t shard_count() const { return shards_.size(); }
    Shard& shard(std::size_t index) { return *shards_[index]; }
    const Shard& shard(std::size_t index) const { return *shards_[index]; }
    Shard& shard_for(std::string_view client_id) { return *shards_[router_.shard_of(client_id)]; }
    const DispatcherConfig& config() const { return config_; }

private:
    // What is taken: everything from start(); from stop() on, only what comes from the link,
    // until the shards have closed their sessions; then nothing.
    enum class Intake : unsigned char { none, all, bus_only };
    bool admits(PublishKind kind) const {
        const Intake intake = intake_.load(std::memory_order_acquire);
        return intake == Intake::all || (intake == Intake::bus_only && kind == PublishKind::bus);
    }
    bool publish(std::size_t shard, Command&& command);
    bool send_at(std::string_view client_id,
                 Payload payload,
                 PublishKind kind,
                 Position position,
                 bool echo);
    bool broadcast_at(Payload payload,
                      std::string_view except,
                      PublishKind kind,
                      const Position& position,
                      bool echo);
    Overload overload_of_shard(std::size_t shard, Clock::time_point now) const;

    const DispatcherConfig config_;
    const Router router_;
    std::vector<std::shared_ptr<const void>> kept_;  // destroyed after shards_
    std::vector<std::unique_ptr<Shard>> shards_;
    std::atomic<Intake> intake_{Intake::none};
    ClusterLink* link_ = nullptr;
    bool started_ = false;
    bool stopped_ = false;
};

}  // namespace shardcast::dispatcher
