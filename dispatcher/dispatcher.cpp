#include "dispatcher/dispatcher.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cassert>
#include <stdexcept>

namespace shardcast::dispatcher {

Dispatcher::Dispatcher(DispatcherConfig config)
    : config_(std::move(config)), router_(config_.shards) {
    if (config_.shards == 0) {
        throw std::invalid_argument("shards: must be at least 1");
    }
    shards_.reserve(config_.shards);
    for (std::size_t i = 0; i < config_.shards; ++i) {
        shards_.push_back(std::make_unique<Shard>(i, config_));
    }
}

Dispatcher::~Dispatcher() {
    if (started_ && !stopped_) {
        stop(std::chrono::milliseconds{0});
    }
}

void Dispatcher::keep_until_destroyed(std::shared_ptr<const void> owner) {
    kept_.push_back(std::move(owner));
}

void Dispatcher::set_link(ClusterLink* link) {
    link_ = link;
    for (auto& shard : shards_) {
        shard->set_link(link);
    }
}

void Dispatcher::start() {
    for (auto& shard : shards_) {
        shard->start();
    }
    started_ = true;
    intake_.store(Intake::all, std::memory_order_release);
}

void Dispatcher::stop(std::chrono::milliseconds drain_timeout) {
    if (stopped_) {
        return;
    }
    stopped_ = true;
    intake_.store(Intake::bus_only, std::memory_order_release);
    const auto deadline = Clock::now() + drain_timeout;
    for (auto& shard : shards_) {
        shard->begin_stop(deadline);
    }
    // Each closing handshake is bounded by close_timeout; allow one more tick on top.
    const auto give_up =
        deadline + config_.session.close_timeout + 2 * shards_.front()->tick_period();
    for (auto& shard : shards_) {
        shard->wait_stopped(give_up);
    }
    // Once the link has stopped receiving, nothing publishes into a shard whose thread ends.
    intake_.store(Intake::none, std::memory_order_release);
    if (link_ != nullptr) {
        link_->stop_receiving();
    }
    for (auto& shard : shards_) {
        shard->join();
    }
}

bool Dispatcher::publish(std::size_t shard, Command&& command) {
    return shards_[shard]->publish(std::move(command));
}

bool Dispatcher::send(std::string_view client_id, Payload payload, PublishKind kind) {
    return send_at(client_id, std::move(payload), kind, {}, false);
}

bool Dispatcher::send_stored(std::string_view client_id,
                             Payload payload,
                             Position position,
                             bool echo) {
    return send_at(client_id, std::move(payload), PublishKind::bus, std::move(position), echo);
}

bool Dispatcher::send_at(
    std::string_view client_id, Payload payload, PublishKind kind, Position position, bool echo) {
    if (!admits(kind)) {
        return false;
    }
    Command command;
    command.kind = Command::Kind::send;
    command.origin = kind;
    command.echo = echo;
    command.client_id.assign(client_id);
    command.payload = std::move(payload);
    command.position = std::move(position);
    command.enqueued = Clock::now();
    return publish(router_.shard_of(client_id), std::move(command));
}

bool Dispatcher::broadcast(Payload payload, std::string_view except, PublishKind kind) {
    return broadcast_at(std::move(payload), except, kind, {}, false);
}

bool Dispatcher::broadcast_stored(Payload payload,
                                  std::string_view except,
                                  Position position,
                                  bool echo) {
    return broadcast_at(std::move(payload), except, PublishKind::bus, std::move(position), echo);
}

bool Dispatcher::broadcast_at(Payload payload,
                              std::string_view except,
                              PublishKind kind,
                              const Position& position,
                              bool echo) {
    if (!admits(kind)) {
        return false;
    }
    const auto now = Clock::now();
    bool queued = true;
    for (std::size_t i = 0; i < shards_.size(); ++i) {
        Command command;
        command.kind = Command::Kind::broadcast;
        command.origin = kind;
        command.echo = echo;
        command.client_id.assign(except);
        command.payload = payload;  // one shared buffer for every shard and session
        command.position = position;
        command.enqueued = now;
        queued = publish(i, std::move(command)) && queued;
    }
    return queued;
}

bool Dispatcher::resumed(std::size_t shard,
                         std::string_view client_id,
                         std::unique_ptr<ResumeResult> result) {
    if (!admits(PublishKind::bus) || shard >= shards_.size()) {
        return false;
    }
    Command command;
    command.kind = Command::Kind::resumed;
    command.origin = PublishKind::bus;
    command.client_id.assign(client_id);
    command.resumed = std::move(result);
    command.enqueued = Clock::now();
    return publish(shard, std::move(command));
}

bool Dispatcher::disconnect(std::string_view client_id,
                            std::uint16_t code,
                            std::string_view reason,
                            PublishKind kind) {
    if (!admits(kind)) {
        return false;
    }
    Command command;
    command.kind = Command::Kind::disconnect;
    command.origin = kind;
    command.close_code = code;
    command.client_id.assign(client_id);
    command.payload = make_payload(std::string(reason));
    command.enqueued = Clock::now();
    return publish(router_.shard_of(client_id), std::move(command));
}

void Dispatcher::when_taken(const std::vector<std::size_t>& shards, PublishAck::Done done) {
    auto ack = std::make_shared<PublishAck>(shards.size(), std::move(done));
    if (!admits(PublishKind::send)) {
        return;  // never taken: done(false) runs as ack goes
    }
    const auto now = Clock::now();
    for (const std::size_t shard : shards) {
        assert(shard < shards_.size());
        Command command;
        command.kind = Command::Kind::ack;
        command.ack = ack;
        command.enqueued = now;
        publish(shard, std::move(command));
    }
}

bool Dispatcher::claim(std::string_view client_id, std::int64_t since_ns, bool wins_ties) {
    if (!admits(PublishKind::bus)) {
        return false;
    }
    Command command;
    command.kind = Command::Kind::claim;
    command.origin = PublishKind::bus;
    command.claim_since_ns = since_ns;
    command.claim_wins_ties = wins_ties;
    command.client_id.assign(client_id);
    command.enqueued = Clock::now();
    return publish(router_.shard_of(client_id), std::move(command));
}

// The depth is the older limit and catches a flood before its first command has waited
// long; the delay bounds what a publish accepted now will wait, whatever each command costs.
Dispatcher::Overload Dispatcher::overload_of_shard(std::size_t index, Clock::time_point now) const {
    const Shard& shard = *shards_[index];
    const std::size_t depth = shard.queue_depth();
    if (config_.max_queue_depth != 0 && depth > config_.max_queue_depth) {
        return {Overload::Limit::queue_depth, index, depth};
    }
    if (config_.max_queue_delay.count() != 0) {
        const auto waited = shard.queue_delay(now);
        if (waited > config_.max_queue_delay) {
            const auto us = std::chrono::duration_cast<std::chrono::microseconds>(waited);
            return {Overload::Limit::queue_delay, index, static_cast<std::uint64_t>(us.count())};
        }
    }
    return {};
}

Dispatcher::Overload Dispatcher::overload_of(std::string_view client_id) const {
    return overload_of_shard(router_.shard_of(client_id), Clock::now());
}

Dispatcher::Overload Dispatcher::overload_of_any() const {
    const auto now = Clock::now();
    for (std::size_t i = 0; i < shards_.size(); ++i) {
        if (Overload overload = overload_of_shard(i, now)) {
            return overload;
        }
    }
    return {};
}

std::size_t Dispatcher::online() const {
    std::size_t total = 0;
    for (const auto& shard : shards_) {
        total += shard->session_count();
    }
    return total;
}

StatsTotals Dispatcher::totals() const {
    StatsTotals totals;
    for (const auto& shard : shards_) {
        totals.add(shard->stats());
    }
    return totals;
}

bool Dispatcher::lookup(std::string_view client_id, std::function<void(ClientInfo)> handler) {
    if (!accepting()) {
        return false;
    }
    Shard& shard = shard_for(client_id);
    boost::asio::post(shard.io_context(),
                      [&shard, id = std::string(client_id), handler = std::move(handler)] {
                          handler(shard.lookup(id));
                      });
    return true;
}

bool Dispatcher::ready() const {
    if (!accepting()) {
        return false;
    }
    const auto now = Clock::now().time_since_epoch().count();
    for (const auto& shard : shards_) {
        const auto last = shard->stats().last_turn_ns.load(std::memory_order_relaxed);
        const auto allowed = std::chrono::nanoseconds(
            std::max(std::chrono::milliseconds{2000}, 4 * shard->tick_period()));
        if (now - last > allowed.count()) {
            return false;
        }
    }
    return true;
}

}  // namespace shardcast::dispatcher
