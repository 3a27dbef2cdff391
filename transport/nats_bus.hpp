// NatsBus: the cluster link over NATS. It subscribes to the client subjects of the ids this
// node holds and to the broadcast subject, publishes what is meant for other nodes, and feeds
// what arrives into the dispatcher's shard inboxes like any local publish. With history, it
// sequences: what this node accepts is stored in the cluster's stream (HistoryStream) first,
// then relayed, numbered, to its own sessions and as a live copy to the other nodes.
//
// Threads: shard threads call the ClusterLink methods, which only queue an operation in the
// outbox (never a NATS call, never a lock). One bus thread runs the outbox in order: it alone
// subscribes, unsubscribes and publishes. The NATS client's own threads deliver incoming
// messages (one delivery thread, so arrival order is kept) and report connection changes.
// start() and stop() are called once each from the main thread.
#pragma once

#include <concurrentqueue/blockingconcurrentqueue.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "dispatcher/cluster_link.hpp"
#include "dispatcher/dispatcher.hpp"
#include "transport/bus_stats.hpp"
#include "transport/cluster_config.hpp"
#include "transport/history_fetch.hpp"
#include "transport/subjects.hpp"

namespace shardcast::transport {

class HistoryStream;

class NatsBus final : public dispatcher::ClusterLink {
public:
    NatsBus(ClusterConfig config, std::string node, dispatcher::Dispatcher& dispatcher);
    NatsBus(const NatsBus&) = delete;
    NatsBus& operator=(const NatsBus&) = delete;
    ~NatsBus() override;

    // Starts connecting (in the background if no server answers yet: local delivery does not
    // wait for the bus) and starts the bus thread. Throws std::runtime_error on bad options.
    void start();
    // Runs what is queued, unsubscribes, flushes and closes the connection. Call after the
    // dispatcher has stopped (which has had this bus stop receiving).
    void stop();

    const std::string& node() const { return node_; }

    // Joins the NATS client library's threads; call once at exit, after every bus stopped.
    static void close_library();
    const BusStats& stats() const { return stats_; }
    bool connected() const { return stats_.connected.load(std::memory_order_acquire); }

    // dispatcher::ClusterLink, on shard threads.
    void held(std::string_view client_id) override;
    void released(std::string_view client_id) override;
    void claim(std::string_view client_id, std::int64_t since_ns) override;
    bool forward(std::string_view client_id, const dispatcher::Payload& payload) override;
    bool forward_disconnect(std::string_view client_id,
                            std::uint16_t code,
                            std::string_view reason) override;
    bool forward_broadcast(const dispatcher::Payload& payload, std::string_view except) override;
    // The message callbacks end; later messages are counted as receive errors (stopping).
    void stop_receiving() override;
    bool sequences() const override { return history_ != nullptr; }
    void fetch_history(std::string_view client_id,
                       std::uint64_t since,
                       std::string_view epoch,
                       std::size_t shard,
                       std::uint64_t session) override;
    bool wants_upstream() const override { return config_.upstream; }
    void upstream(std::string_view client_id,
                  std::string_view info,
                  std::string_view data) override;

private:
    // One outbox entry: a subscription change or a message to publish.
    struct Op {
        enum class Kind : unsigned char { subscribe, unsubscribe, publish, fetch };
        Kind kind = Kind::publish;
        BusKind what = BusKind::send;
        std::string client_id;        // the id whose subject is meant; broadcast: the id to skip
        dispatcher::Payload payload;  // the data, or the close reason of a disconnect
        std::int64_t number = 0;      // claim: since (ns); disconnect: close code
        std::string info;             // upstream: the client's info claim, or empty
        std::unique_ptr<HistoryFetch> fetch;  // fetch only
    };
    // The NATS client's handles and callbacks; kept out of this header.
    struct Nats;

    bool admit(BusKind kind, std::size_t bytes);
    // Admits one message and queues it for the bus thread; false when it was refused.
    bool queue_publish(BusKind what,
                       std::string_view client_id,
                       dispatcher::Payload payload,
                       std::int64_t number = 0,
                       std::string_view info = {});
    void queue_subscription(Op::Kind kind, std::string_view client_id);
    void run();
    // The NATS client's options: servers, name, reconnects, callbacks, pings.
    void configure(Nats& nats);
    // Bus thread: one outbox entry.
    void execute(const Op& op);
    void subscribe(const std::string& client_id);
    void unsubscribe(const std::string& client_id);
    void publish(const Op& op);
    // With history: the message goes to the stream, which hands it to relay().
    void store(const Op& op, std::string_view data);
    // Sequenced, the bus could not take a message: this node's sessions still get it.
    void deliver_unstored(BusKind what, std::string_view client_id, const dispatcher::Payload&);

    const ClusterConfig config_;
    const std::string node_;
    const Subjects subjects_;
    dispatcher::Dispatcher& dispatcher_;
    BusStats stats_;

    std::unique_ptr<Nats> nats_;
    std::unique_ptr<HistoryStream> history_;  // with history.enabled
    moodycamel::BlockingConcurrentQueue<Op> outbox_;
    std::atomic<std::int64_t> outbox_bytes_{0};
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace shardcast::transport
