// HistoryStream: a cluster's history, in a JetStream stream (docs/cluster.md#history). Every
// message a node accepts is stored there first; the stream's sequence is its offset, and the
// node then relays it (delivers it to its own sessions and sends a live copy to the others).
// A resume on any node reads what the client missed back from the stream.
//
// Epochs: "<stream created, hex>.<marker>". A new stream is a new epoch (the offsets start
// over); so is a new marker, which a node writes once the stream is back after it could not
// store some message: a resume from before the marker cannot be whole.
//
// Threads: store() on the bus thread; the acknowledgements and on_marker()/on_broken() on the
// NATS client's delivery thread; fetch() answers and the stream checks on the history thread,
// this class's own, since they wait for the server. start() and stop() from the main thread.
#pragma once

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "dispatcher/config.hpp"
#include "dispatcher/dispatcher.hpp"
#include "dispatcher/position.hpp"
#include "transport/bus_stats.hpp"
#include "transport/cluster_config.hpp"
#include "transport/history_fetch.hpp"
#include "transport/subjects.hpp"

namespace shardcast::transport {

class HistoryStream {
public:
    // Called for every message store() took that the stream did not store: it is delivered
    // live, without a position. Does not take the message. What the stream stores comes
    // back republished (Subjects: <prefix>.stored.*), which the bus delivers.
    using Relay = std::function<void(natsMsg* unstored)>;

    HistoryStream(const ClusterConfig& cluster,
                  const dispatcher::HistoryConfig& limits,
                  const Subjects& subjects,
                  dispatcher::Dispatcher& dispatcher,
                  HistoryStreamStats& stats,
                  Relay relay);
    HistoryStream(const HistoryStream&) = delete;
    HistoryStream& operator=(const HistoryStream&) = delete;
    ~HistoryStream();

    // The stream's name: cluster.history.stream, or derived from the subject prefix.
    const std::string& name() const { return name_; }
    void start(natsConnection* connection);
    // Waits a bounded time for the acknowledgements still due, then ends the history thread.
    void stop();

    // Bus thread. Takes the message over.
    void store(natsMsg* message);
    // Bus thread, after the subscription for the id: the answer comes as Dispatcher::resumed.
    void fetch(HistoryFetch request) { fetches_.enqueue(std::move(request)); }
    // The connection is back: look at the stream now, not at the next periodic check.
    void recheck() { check_now_.store(true, std::memory_order_release); }
    // Delivery thread: a marker was stored at `sequence`, or a node could not store a message.
    void on_marker(std::string_view marker, std::uint64_t sequence);
    void on_broken();
    // The epoch of what the stream holds now; null until it has been seen. Any thread.
    dispatcher::Epoch epoch() const;
    // Shard thread: the bus could not take a message, which reaches this node's sessions
    // only, unstored.
    void skipped();

private:
    struct Replay;

    void run();
    void check();
    bool ensure_stream(std::int64_t& created);
    bool read_marker(std::string& marker, std::uint64_t& sequence);
    bool write_marker(std::string& marker, std::uint64_t& sequence);
    bool republishes(const jsStreamConfig& stream) const;
    void set_epoch(std::string created, std::string marker, std::uint64_t sequence);
    void set_unavailable(std::string_view why);
    void answer(const HistoryFetch& request);
    bool stream_bounds(std::uint64_t& first, std::uint64_t& last);
    std::uint64_t resume_point(const HistoryFetch& request,
                               std::uint64_t first,
                               std::uint64_t last,
                               dispatcher::ResumeResult& result) const;
    void read_replay(const HistoryFetch& request,
                     std::uint64_t first,
                     std::uint64_t last,
                     dispatcher::ResumeResult& result);
    bool fetch_subject(const std::string& subject,
                       std::string_view client_id,
                       std::uint64_t after,
                       std::uint64_t last,
                       Replay& replay);
    // Delivery thread: the stream's answer to one store.
    static void on_ack(jsCtx*, natsMsg* message, jsPubAck* ack, jsPubAckErr* error, void* self);
    void unstored(natsMsg* message);
    // Some message went unstored: resumes cannot be whole until a new marker.
    void mark_broken();

    const std::string name_;
    const ClusterHistoryConfig config_;
    const dispatcher::HistoryConfig limits_;
    const Subjects& subjects_;
    dispatcher::Dispatcher& dispatcher_;
    HistoryStreamStats& stats_;
    const Relay relay_;

    natsConnection* connection_ = nullptr;
    jsCtx* js_ = nullptr;
    std::atomic<bool> available_{false};
    std::atomic<bool> broken_{false};
    std::atomic<bool> check_now_{true};
    std::atomic<bool> warned_{false};  // set_unavailable has said so since the last success
    std::atomic<bool> stopping_{false};
    mutable std::mutex epoch_mutex_;  // the four below
    std::string created_;             // the stream's creation, hex
    std::string marker_;
    std::uint64_t marker_sequence_ = 0;  // a resume from before it cannot be whole
    dispatcher::Epoch epoch_;
    moodycamel::BlockingConcurrentQueue<HistoryFetch> fetches_;
    std::thread thread_;
};

}  // namespace shardcast::transport
