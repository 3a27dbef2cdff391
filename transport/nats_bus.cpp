#include "transport/nats_bus.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <future>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "dispatcher/close_code.hpp"
#include "transport/bus_message.hpp"
#include "transport/history_stream.hpp"
#include "transport/protocol_v1.hpp"
#include "transport/sequence_order.hpp"
#include "transport/utf8.hpp"

namespace shardcast::transport {
namespace {

using dispatcher::PublishKind;
namespace close_code = dispatcher::close_code;

// Bytes of messages the outbox may hold before forwards are refused: a NATS server that
// stops reading must not grow this process without bound.
constexpr std::int64_t kOutboxLimit = 64 * 1024 * 1024;
// Ping the server every 2 s and give up on it after two unanswered pings: a server that
// vanished without closing the socket is noticed within seconds instead of minutes.
constexpr int kPingIntervalMs = 2'000;
constexpr int kMaxPingsOut = 2;
// How long stop() waits for the NATS client to confirm the connection is closed.
constexpr std::chrono::milliseconds kCloseWait{5'000};
// Operations the bus thread takes from the outbox at once.
constexpr std::size_t kOutboxChunk = 128;

template <class Int>
std::optional<Int> parse_int(const char* text) {
    if (text == nullptr) {
        return std::nullopt;
    }
    const std::string_view s(text);
    Int value{};
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc{} || end != s.data() + s.size()) {
        return std::nullopt;
    }
    return value;
}

std::string describe(natsStatus status) {
    const char* detail = nats_GetLastError(nullptr);
    std::string text = natsStatus_GetText(status);
    if (detail != nullptr && *detail != '\0') {
        text += std::string(" (") + detail + ")";
    }
    return text;
}

std::string connected_url(natsConnection* connection) {
    char url[256] = {};
    if (natsConnection_GetConnectedUrl(connection, url, sizeof url) != NATS_OK) {
        return "?";
    }
    return url;
}

void check(natsStatus status, const char* what) {
    if (status != NATS_OK) {
        throw std::runtime_error(std::string("cluster: ") + what + ": " + describe(status));
    }
}

void release_subscriptions(std::pair<natsSubscription*, natsSubscription*>& both) {
    for (natsSubscription* subscription : {both.first, both.second}) {
        if (subscription != nullptr) {
            natsSubscription_Unsubscribe(subscription);
            natsSubscription_Destroy(subscription);
        }
    }
    both = {};
}

struct DestroyMsg {
    void operator()(natsMsg* msg) const { natsMsg_Destroy(msg); }
};
using OwnedMsg = std::unique_ptr<natsMsg, DestroyMsg>;

}  // namespace

struct NatsBus::Nats {
    natsOptions* options = nullptr;
    natsConnection* connection = nullptr;
    natsSubscription* broadcast = nullptr;
    // With history: stored broadcasts, markers and broken notices.
    natsSubscription* stored_broadcast = nullptr;
    natsSubscription* epoch = nullptr;
    natsSubscription* broken = nullptr;
    // Bus thread only: the subscriptions of each client id held here (with history, its
    // stored subject too).
    std::unordered_map<std::string, std::pair<natsSubscription*, natsSubscription*>> clients;
    // With history: the stream's republished copies, back in stream order.
    std::unique_ptr<SequenceOrder<OwnedMsg>> stored_order;
    // Message callbacks running now; stop() waits for them before the bus goes away.
    std::atomic<int> receiving{0};
    std::atomic<bool> closing{false};
    std::atomic<bool> closed_once{false};
    std::promise<void> closed;
    // Only the NATS client's reconnect thread draws from it, one attempt at a time.
    std::minstd_rand jitter{std::random_device{}()};

    static NatsBus& bus(void* closure) { return *static_cast<NatsBus*>(closure); }

    static void on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
        NatsBus& self = bus(closure);
        Nats& nats = *self.nats_;
        // Sequentially consistent with stop_receiving(): either it sees this callback running
        // and waits for it, or this callback sees that receiving has stopped.
        nats.receiving.fetch_add(1);
        OwnedMsg owned(msg);
        if (nats.closing.load()) {
            // This node has closed its sessions: the message was for clients that have left.
            reject(self, BusReceiveError::stopping);
        } else {
            receive(self, std::move(owned));
        }
        nats.receiving.fetch_sub(1);
    }

    // Waits, a bounded time, for the message callbacks that are running now.
    void wait_for_receivers() const {
        for (int i = 0; i < 5'000 && receiving.load() > 0; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds{1});
        }
    }

    static void reject(NatsBus& self, BusReceiveError error) {
        self.stats_.receive_errors[BusStats::index(error)].add();
    }

    // The dispatcher refuses only once its shards have closed their sessions.
    static void count(NatsBus& self, bool taken, BusKind kind) {
        if (taken) {
            self.stats_.in[BusStats::index(kind)].add();
        } else {
            reject(self, BusReceiveError::stopping);
        }
    }

    static void receive(NatsBus& self, OwnedMsg owned) {
        natsMsg* msg = owned.get();
        const std::string_view subject = natsMsg_GetSubject(msg);
        const std::string_view data(natsMsg_GetData(msg),
                                    static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
        if (subject == self.subjects_.broadcast()) {
            return receive_broadcast(self, msg, data);
        }
        if (self.history_) {
            if (self.subjects_.is_stored(subject)) {
                return receive_stored(self, std::move(owned));
            }
            if (subject == self.subjects_.history_broken()) {
                return self.history_->on_broken();
            }
        }
        const auto id = self.subjects_.client_id_of(subject);
        if (!id) {
            return;
        }
        const char* op = nullptr;
        if (natsMsgHeader_Get(msg, header::kOp, &op) == NATS_OK) {
            return receive_control(self, msg, *id, op, data);
        }
        // Data, from another node (unstored) or straight from a backend.
        if (dispatcher::Payload payload = payload_of(self, msg)) {
            count(self, self.dispatcher_.send(*id, std::move(payload), PublishKind::bus),
                  BusKind::send);
        }
    }

    static void receive_broadcast(NatsBus& self, natsMsg* msg, std::string_view) {
        if (dispatcher::Payload payload = payload_of(self, msg)) {
            const std::string_view except = header_of(msg, header::kExcept).value_or("");
            count(self, self.dispatcher_.broadcast(std::move(payload), except, PublishKind::bus),
                  BusKind::broadcast);
        }
    }

    // What the history stream republished once stored: held until it is in stream order.
    static void receive_stored(NatsBus& self, OwnedMsg msg) {
        std::uint64_t sequence = 0;
        const auto text = header_of(msg.get(), header::kStreamSequence).value_or("");
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), sequence);
        if (ec != std::errc{} || end != text.data() + text.size() || sequence == 0) {
            return reject(self, BusReceiveError::bad_header);
        }
        switch (self.nats_->stored_order->hold(std::move(msg), sequence)) {
            case Arrival::in_order:
                break;
            case Arrival::overtaken:
                self.stats_.history.overtaken.add();
                break;
            case Arrival::late:
                self.stats_.history.late.add();
                break;
        }
    }

    // A stored message with its position, or an epoch marker, in stream order.
    static void deliver_stored(NatsBus& self, natsMsg* msg, std::uint64_t sequence) {
        const std::string_view subject = natsMsg_GetSubject(msg);
        if (subject == self.subjects_.stored_epoch()) {
            return self.history_->on_marker(data_of(msg), sequence);
        }
        const auto id = self.subjects_.stored_client_id_of(subject);
        if (!id && subject != self.subjects_.stored_broadcast()) {
            return;
        }
        dispatcher::Payload payload = payload_of(self, msg);
        if (!payload) {
            return;
        }
        dispatcher::Position position{sequence, self.history_->epoch()};
        if (id) {
            count(self,
                  self.dispatcher_.send_stored(*id, std::move(payload), std::move(position), false),
                  BusKind::send);
        } else {
            const std::string_view except = header_of(msg, header::kExcept).value_or("");
            count(self,
                  self.dispatcher_.broadcast_stored(std::move(payload), except, std::move(position),
                                                    false),
                  BusKind::broadcast);
        }
    }

    static dispatcher::Payload payload_of(NatsBus& self, natsMsg* msg) {
        BusReceiveError error{};
        dispatcher::Payload payload = transport::payload_of(msg, error);
        if (!payload) {
            reject(self, error);
        }
        return payload;
    }

    // A claim or a disconnect from another node.
    static void receive_control(NatsBus& self,
                                natsMsg* msg,
                                std::string_view id,
                                std::string_view op,
                                std::string_view data) {
        const char* node = nullptr;
        natsMsgHeader_Get(msg, header::kNode, &node);
        const std::string_view from = node != nullptr ? node : "";
        if (op == "claim") {
            const char* since_text = nullptr;
            natsMsgHeader_Get(msg, header::kSince, &since_text);
            const auto since = parse_int<std::int64_t>(since_text);
            if (!since || from.empty()) {
                return reject(self, BusReceiveError::bad_header);
            }
            count(self, from == self.node_ || self.dispatcher_.claim(id, *since, from > self.node_),
                  BusKind::claim);
        } else if (op == "disconnect") {
            const char* code_text = nullptr;
            natsMsgHeader_Get(msg, header::kCode, &code_text);
            const auto code = parse_int<std::uint16_t>(code_text);
            if (!code || !close_code::server_may_send(*code) || !valid_utf8(data) ||
                data.size() > close_code::kMaxReasonBytes) {
                return reject(self, BusReceiveError::bad_header);
            }
            count(self, self.dispatcher_.disconnect(id, *code, data, PublishKind::bus),
                  BusKind::disconnect);
        } else {
            reject(self, BusReceiveError::bad_header);
        }
    }

    // Text goes out bare (PUB) unless it needs a header; a JSON value says so in one, so v1
    // clients on every node see the same value.
    static natsStatus publish_data(NatsBus& self, const Op& op, std::string_view data) {
        natsConnection* connection = self.nats_->connection;
        const bool json = op.payload && op.payload->form() == dispatcher::Content::Form::json;
        const bool broadcast = op.what == BusKind::broadcast;
        // A send names its id in the subject; a broadcast names the id to skip in a header.
        const std::string subject =
            broadcast ? self.subjects_.broadcast() : self.subjects_.client(op.client_id);
        const bool except = broadcast && !op.client_id.empty();
        if (!json && !except) {
            return natsConnection_Publish(connection, subject.c_str(), data.data(),
                                          static_cast<int>(data.size()));
        }
        BusMessage message(subject, data);
        if (except) message.set(header::kExcept, op.client_id);
        if (json) message.set(header::kData, "json");
        return message.publish(connection);
    }

    // Claims, disconnects and upstream frames: each carries headers.
    static natsStatus publish_other(NatsBus& self, const Op& op, std::string_view data) {
        natsConnection* connection = self.nats_->connection;
        switch (op.what) {
            case BusKind::claim:
                return BusMessage(self.subjects_.client(op.client_id), {})
                    .set(header::kOp, "claim")
                    .set(header::kNode, self.node_)
                    .set(header::kSince, std::to_string(op.number))
                    .publish(connection);
            case BusKind::disconnect:
                return BusMessage(self.subjects_.client(op.client_id), data)
                    .set(header::kOp, "disconnect")
                    .set(header::kNode, self.node_)
                    .set(header::kCode, std::to_string(op.number))
                    .publish(connection);
            case BusKind::upstream: {
                BusMessage message(self.subjects_.upstream(op.client_id), data);
                message.set(header::kNode, self.node_);
                if (!op.info.empty()) message.set(header::kInfo, op.info);
                return message.publish(connection);
            }
            default:
                return NATS_INVALID_ARG;
        }
    }

    // A message the stream did not store (on the delivery thread, or the bus thread): the
    // echo to this node's sessions, then the live copy for the nodes that hold the id, both
    // without a position.
    static void relay_unstored(NatsBus& self, natsMsg* unstored) {
        Nats& nats = *self.nats_;
        nats.receiving.fetch_add(1);
        if (!nats.closing.load()) {
            const std::string_view data = data_of(unstored);
            const bool json = header_of(unstored, header::kData) == "json";
            dispatcher::Payload payload = json ? dispatcher::make_json_payload(std::string(data))
                                               : dispatcher::make_payload(std::string(data));
            const auto id = self.subjects_.history_client_id_of(natsMsg_GetSubject(unstored));
            const std::string_view except = header_of(unstored, header::kExcept).value_or("");
            if (id) {
                self.dispatcher_.send_stored(*id, payload, {}, true);
            } else {
                self.dispatcher_.broadcast_stored(payload, except, {}, true);
            }
            BusMessage live(id ? self.subjects_.client(*id) : self.subjects_.broadcast(), data);
            if (!except.empty()) live.set(header::kExcept, std::string(except));
            if (json) live.set(header::kData, "json");
            const BusKind kind = id ? BusKind::send : BusKind::broadcast;
            if (live.publish(nats.connection) == NATS_OK) {
                self.stats_.out[BusStats::index(kind)].add();
            } else {
                self.stats_.publish_errors.add();
            }
        }
        nats.receiving.fetch_sub(1);
    }

    static void on_connected(natsConnection* connection, void* closure) {
        NatsBus& self = bus(closure);
        self.stats_.connected.store(true, std::memory_order_release);
        spdlog::info("cluster: node {} connected to NATS at {}", self.node_,
                     connected_url(connection));
        if (self.history_) self.history_->recheck();
    }

    static void on_disconnected(natsConnection*, void* closure) {
        NatsBus& self = bus(closure);
        self.stats_.connected.store(false, std::memory_order_release);
        if (!self.nats_->closing.load()) {
            spdlog::warn(
                "cluster: lost NATS; local delivery continues, sends for other nodes are "
                "refused (bus_unavailable) until it is back");
        }
    }

    static void on_reconnected(natsConnection* connection, void* closure) {
        NatsBus& self = bus(closure);
        self.stats_.reconnects.add();
        self.stats_.connected.store(true, std::memory_order_release);
        spdlog::info("cluster: reconnected to NATS at {}; subscriptions restored",
                     connected_url(connection));
        if (self.history_) self.history_->recheck();
    }

    static void on_closed(natsConnection*, void* closure) {
        NatsBus& self = bus(closure);
        self.stats_.connected.store(false, std::memory_order_release);
        if (!self.nats_->closed_once.exchange(true)) {
            self.nats_->closed.set_value();
        }
    }

    static void on_error(natsConnection*, natsSubscription*, natsStatus error, void* closure) {
        NatsBus& self = bus(closure);
        if (error == NATS_SLOW_CONSUMER) {
            self.stats_.receive_errors[BusStats::index(BusReceiveError::slow_consumer)].add();
            spdlog::warn("cluster: NATS dropped messages for this node (slow consumer)");
            return;
        }
        spdlog::warn("cluster: NATS error: {}", natsStatus_GetText(error));
    }

    // Exponential backoff from reconnect_wait to reconnect_wait_max, with up to 25% jitter
    // so the nodes that lost the same server do not come back in lockstep.
    static int64_t reconnect_delay(natsConnection*, int attempts, void* closure) {
        NatsBus& self = bus(closure);
        const std::int64_t most = self.config_.reconnect_wait_max.count();
        std::int64_t delay = self.config_.reconnect_wait.count();
        for (int i = 1; i < attempts && delay < most; ++i) {
            delay *= 2;
        }
        delay = std::min(delay, most);
        std::uniform_int_distribution<std::int64_t> extra(0, delay / 4);
        return delay + extra(self.nats_->jitter);
    }
};

NatsBus::NatsBus(ClusterConfig config, std::string node, dispatcher::Dispatcher& dispatcher)
    : config_(std::move(config)),
      node_(std::move(node)),
      subjects_(config_.subject_prefix),
      dispatcher_(dispatcher),
      nats_(std::make_unique<Nats>()) {
    if (dispatcher.config().history.enabled) {
        history_ = std::make_unique<HistoryStream>(
            config_, dispatcher.config().history, subjects_, dispatcher, stats_.history,
            [this](natsMsg* unstored) { Nats::relay_unstored(*this, unstored); });
        nats_->stored_order = std::make_unique<SequenceOrder<OwnedMsg>>(
            config_.history.reorder_window, [this](OwnedMsg msg, std::uint64_t sequence) {
                Nats::deliver_stored(*this, msg.get(), sequence);
            });
    }
}

NatsBus::~NatsBus() { stop(); }

void NatsBus::close_library() { nats_CloseAndWait(static_cast<int64_t>(kCloseWait.count())); }

void NatsBus::configure(Nats& nats) {
    check(natsOptions_Create(&nats.options), "cannot create NATS options");
    std::vector<const char*> servers;
    for (const auto& url : config_.nats_servers) {
        servers.push_back(url.c_str());
    }
    natsOptions* o = nats.options;
    check(natsOptions_SetServers(o, servers.data(), static_cast<int>(servers.size())),
          "cluster.nats.url");
    check(natsOptions_SetName(o, node_.c_str()), "cluster.node");
    // Never receive our own publications: a node must not deliver its broadcast twice.
    check(natsOptions_SetNoEcho(o, true), "no-echo");
    check(natsOptions_SetMaxReconnect(o, -1), "reconnect");
    check(natsOptions_SetCustomReconnectDelay(o, &Nats::reconnect_delay, this), "reconnect");
    check(natsOptions_SetRetryOnFailedConnect(o, true, &Nats::on_connected, this), "connect");
    check(natsOptions_SetDisconnectedCB(o, &Nats::on_disconnected, this), "callbacks");
    check(natsOptions_SetReconnectedCB(o, &Nats::on_reconnected, this), "callbacks");
    check(natsOptions_SetClosedCB(o, &Nats::on_closed, this), "callbacks");
    check(natsOptions_SetErrorHandler(o, &Nats::on_error, this), "callbacks");
    // One delivery thread for every subscription instead of a thread each: a node holds a
    // subscription per client id. One thread also keeps the arrival order.
    check(natsOptions_UseGlobalMessageDelivery(o, true), "delivery");
    check(natsOptions_SetPingInterval(o, kPingIntervalMs), "ping");
    check(natsOptions_SetMaxPingsOut(o, kMaxPingsOut), "ping");
}

void NatsBus::start() {
    Nats& nats = *nats_;
    configure(nats);
    natsOptions* o = nats.options;
    const natsStatus status = natsConnection_Connect(&nats.connection, o);
    if (status == NATS_OK) {
        stats_.connected.store(true, std::memory_order_release);
        spdlog::info("cluster: node {} connected to NATS at {}", node_,
                     connected_url(nats.connection));
    } else if (status == NATS_NOT_YET_CONNECTED) {
        spdlog::warn(
            "cluster: NATS not reachable yet; retrying in the background, local delivery works "
            "meanwhile");
    } else {
        check(status, "cannot connect to NATS");
    }
    check(natsConnection_Subscribe(&nats.broadcast, nats.connection, subjects_.broadcast().c_str(),
                                   &Nats::on_message, this),
          "cannot subscribe to the broadcast subject");
    stats_.subscriptions.fetch_add(1);
    if (history_) {
        for (auto [subscription, subject] :
             {std::pair{&nats.stored_broadcast, &subjects_.stored_broadcast()},
              std::pair{&nats.epoch, &subjects_.stored_epoch()},
              std::pair{&nats.broken, &subjects_.history_broken()}}) {
            check(natsConnection_Subscribe(subscription, nats.connection, subject->c_str(),
                                           &Nats::on_message, this),
                  "cannot subscribe to the history subjects");
        }
        history_->start(nats.connection);
        spdlog::info("cluster: history in the JetStream stream {}", history_->name());
    }
    thread_ = std::thread([this] { run(); });
}

void NatsBus::stop_receiving() {
    nats_->closing.store(true);
    nats_->wait_for_receivers();
    if (nats_->stored_order) {
        nats_->stored_order->stop(
            [this](OwnedMsg) { Nats::reject(*this, BusReceiveError::stopping); });
    }
}

void NatsBus::stop() {
    Nats& nats = *nats_;
    if (thread_.joinable()) {
        stopping_.store(true, std::memory_order_release);
        thread_.join();
    }
    if (history_) {
        history_->stop();
    }
    for (auto& [id, subscriptions] : nats.clients) {
        release_subscriptions(subscriptions);
    }
    nats.clients.clear();
    for (natsSubscription** subscription :
         {&nats.broadcast, &nats.stored_broadcast, &nats.epoch, &nats.broken}) {
        if (*subscription != nullptr) {
            natsSubscription_Unsubscribe(*subscription);
            natsSubscription_Destroy(*subscription);
            *subscription = nullptr;
        }
    }
    stats_.subscriptions.store(0);
    if (nats.connection != nullptr) {
        if (connected()) {
            natsConnection_FlushTimeout(nats.connection, 1'000);
        }
        nats.closing.store(true);
        natsConnection_Close(nats.connection);
        nats.closed.get_future().wait_for(kCloseWait);
        nats.wait_for_receivers();
        natsConnection_Destroy(nats.connection);
        nats.connection = nullptr;
        spdlog::info("cluster: node {} left the bus", node_);
    }
    if (nats.options != nullptr) {
        natsOptions_Destroy(nats.options);
        nats.options = nullptr;
    }
}

// Refuses a message while the bus is down or the outbox is over its limit, so a sender
// learns at once instead of queueing toward a server that may not come back.
bool NatsBus::admit(BusKind kind, std::size_t bytes) {
    if (!connected() || outbox_bytes_.load(std::memory_order_relaxed) > kOutboxLimit) {
        stats_.refused[BusStats::index(kind)].add();
        return false;
    }
    outbox_bytes_.fetch_add(static_cast<std::int64_t>(bytes), std::memory_order_relaxed);
    return true;
}

bool NatsBus::queue_publish(BusKind what,
                            std::string_view client_id,
                            dispatcher::Payload payload,
                            std::int64_t number,
                            std::string_view info) {
    if (!admit(what, (payload ? payload->size() : 0) + info.size())) {
        return false;
    }
    outbox_.enqueue(Op{Op::Kind::publish,
                       what,
                       std::string(client_id),
                       std::move(payload),
                       number,
                       std::string(info),
                       {}});
    return true;
}

void NatsBus::queue_subscription(Op::Kind kind, std::string_view client_id) {
    outbox_.enqueue(Op{kind, BusKind::send, std::string(client_id), {}, 0, {}, {}});
}

void NatsBus::held(std::string_view client_id) {
    queue_subscription(Op::Kind::subscribe, client_id);
}

void NatsBus::released(std::string_view client_id) {
    queue_subscription(Op::Kind::unsubscribe, client_id);
}

void NatsBus::claim(std::string_view client_id, std::int64_t since_ns) {
    queue_publish(BusKind::claim, client_id, {}, since_ns);
}

bool NatsBus::forward(std::string_view client_id, const dispatcher::Payload& payload) {
    if (queue_publish(BusKind::send, client_id, payload)) {
        return true;
    }
    deliver_unstored(BusKind::send, client_id, payload);
    return false;
}

bool NatsBus::forward_disconnect(std::string_view client_id,
                                 std::uint16_t code,
                                 std::string_view reason) {
    return queue_publish(BusKind::disconnect, client_id,
                         dispatcher::make_payload(std::string(reason)), code);
}

bool NatsBus::forward_broadcast(const dispatcher::Payload& payload, std::string_view except) {
    if (queue_publish(BusKind::broadcast, except, payload)) {
        return true;
    }
    deliver_unstored(BusKind::broadcast, except, payload);
    return false;
}

// Sequenced, a message the bus refused would otherwise reach no one: the shards hand what
// they accept only to the link. This node's sessions get it, without a position.
void NatsBus::deliver_unstored(BusKind what,
                               std::string_view client_id,
                               const dispatcher::Payload& payload) {
    if (!history_) {
        return;
    }
    history_->skipped();
    if (what == BusKind::send) {
        dispatcher_.send_stored(client_id, payload, {}, true);
    } else {
        dispatcher_.broadcast_stored(payload, client_id, {}, true);
    }
}

void NatsBus::fetch_history(std::string_view client_id,
                            std::uint64_t since,
                            std::string_view epoch,
                            std::size_t shard,
                            std::uint64_t session) {
    // Through the outbox, so the subscription for the id (held(), queued first) is in place
    // before the stream is read: what the read misses arrives live.
    Op op{Op::Kind::fetch, BusKind::send, std::string(client_id), {}, 0, {}, {}};
    op.fetch = std::make_unique<HistoryFetch>(
        HistoryFetch{std::string(client_id), since, std::string(epoch), shard, session});
    outbox_.enqueue(std::move(op));
}

void NatsBus::upstream(std::string_view client_id, std::string_view info, std::string_view data) {
    queue_publish(BusKind::upstream, client_id, dispatcher::make_payload(std::string(data)), 0,
                  info);
}

// The bus thread: runs the outbox in order until stop() and the outbox is empty.
void NatsBus::run() {
    std::vector<Op> ops(kOutboxChunk);
    for (;;) {
        const std::size_t n =
            outbox_.wait_dequeue_bulk_timed(ops.begin(), ops.size(), std::chrono::milliseconds{50});
        for (std::size_t i = 0; i < n; ++i) {
            execute(ops[i]);
            ops[i] = Op{};
        }
        if (n == 0 && stopping_.load(std::memory_order_acquire)) {
            return;
        }
    }
}

void NatsBus::execute(const Op& op) {
    switch (op.kind) {
        case Op::Kind::subscribe:
            return subscribe(op.client_id);
        case Op::Kind::unsubscribe:
            return unsubscribe(op.client_id);
        case Op::Kind::publish:
            return publish(op);
        case Op::Kind::fetch:
            return history_->fetch(std::move(*op.fetch));
    }
}

void NatsBus::subscribe(const std::string& client_id) {
    Nats& nats = *nats_;
    auto [it, fresh] = nats.clients.try_emplace(client_id, nullptr, nullptr);
    if (!fresh) {
        return;
    }
    auto& [live, stored] = it->second;
    natsStatus status = natsConnection_Subscribe(
        &live, nats.connection, subjects_.client(client_id).c_str(), &Nats::on_message, this);
    if (status == NATS_OK && history_) {
        status = natsConnection_Subscribe(&stored, nats.connection,
                                          subjects_.stored_client(client_id).c_str(),
                                          &Nats::on_message, this);
    }
    if (status != NATS_OK) {
        spdlog::error("cluster: cannot subscribe for client {}: {}", client_id, describe(status));
        release_subscriptions(it->second);
        nats.clients.erase(it);
        return;
    }
    stats_.subscriptions.fetch_add(1);
}

void NatsBus::unsubscribe(const std::string& client_id) {
    Nats& nats = *nats_;
    auto it = nats.clients.find(client_id);
    if (it == nats.clients.end()) {
        return;
    }
    release_subscriptions(it->second);
    nats.clients.erase(it);
    stats_.subscriptions.fetch_sub(1);
}

void NatsBus::publish(const Op& op) {
    const std::string_view data = op.payload ? std::string_view(*op.payload) : std::string_view{};
    outbox_bytes_.fetch_sub(static_cast<std::int64_t>(data.size() + op.info.size()),
                            std::memory_order_relaxed);
    if (history_ && (op.what == BusKind::send || op.what == BusKind::broadcast)) {
        return store(op, data);
    }
    const natsStatus status = op.what == BusKind::send || op.what == BusKind::broadcast
                                  ? Nats::publish_data(*this, op, data)
                                  : Nats::publish_other(*this, op, data);
    if (status == NATS_OK) {
        stats_.out[BusStats::index(op.what)].add();
    } else {
        stats_.publish_errors.add();
        spdlog::debug("cluster: publish failed: {}", describe(status));
    }
}

void NatsBus::store(const Op& op, std::string_view data) {
    const bool broadcast = op.what == BusKind::broadcast;
    BusMessage message(
        broadcast ? subjects_.history_broadcast() : subjects_.history_client(op.client_id), data);
    if (broadcast && !op.client_id.empty()) message.set(header::kExcept, op.client_id);
    if (op.payload->form() == dispatcher::Content::Form::json) message.set(header::kData, "json");
    history_->store(message.release());
}

}  // namespace shardcast::transport
