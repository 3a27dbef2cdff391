// What a dispatcher tells its ClusterLink, and when: which ids it holds, what it forwards,
// what it never forwards, and how claims from other nodes replace local sessions. The link
// here records calls; the NATS implementation is proven against a real nats-server by
// tests/cluster/cluster_test.py.
#include "dispatcher/cluster_link.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dispatcher/close_code.hpp"
#include "dispatcher/dispatcher.hpp"
#include "dispatcher/resume_result.hpp"
#include "tests/support/sink_session.hpp"
#include "tests/support/totals.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::dispatcher {
namespace {

using test::SinkSession;
using test::wait_until;
using namespace std::chrono_literals;

// Records every call as "what:id" (or "what:id:detail"), in order.
class RecordingLink final : public ClusterLink {
public:
    std::vector<std::string> calls() const {
        std::lock_guard lock(mutex_);
        return calls_;
    }
    std::size_t count(const std::string& call) const {
        std::lock_guard lock(mutex_);
        return static_cast<std::size_t>(std::count(calls_.begin(), calls_.end(), call));
    }
    void refuse(bool refuse) { refuse_.store(refuse); }
    void want_upstream(bool want) { upstream_.store(want); }

    void held(std::string_view id) override { record("held", id); }
    void released(std::string_view id) override { record("released", id); }
    void claim(std::string_view id, std::int64_t) override { record("claim", id); }
    bool forward(std::string_view id, const Payload& payload) override {
        record("forward", id, *payload);
        return !refuse_.load();
    }
    bool forward_disconnect(std::string_view id, std::uint16_t code, std::string_view) override {
        record("disconnect", id, std::to_string(code));
        return !refuse_.load();
    }
    bool forward_broadcast(const Payload& payload, std::string_view except) override {
        record("broadcast", except, *payload);
        return !refuse_.load();
    }
    // Kept apart from calls(): how often it came, and how many calls had come before it.
    void stop_receiving() override {
        std::lock_guard lock(mutex_);
        ++stop_receiving_calls_;
        calls_before_stop_receiving_ = calls_.size();
    }
    int stop_receiving_calls() const {
        std::lock_guard lock(mutex_);
        return stop_receiving_calls_;
    }
    std::size_t calls_before_stop_receiving() const {
        std::lock_guard lock(mutex_);
        return calls_before_stop_receiving_;
    }
    bool wants_upstream() const override { return upstream_.load(); }
    void upstream(std::string_view id, std::string_view, std::string_view data) override {
        record("upstream", id, data);
    }
    // Set before Dispatcher::set_link, which reads it once.
    void sequence(bool sequences) { sequences_ = sequences; }
    bool sequences() const override { return sequences_; }
    void fetch_history(std::string_view id,
                       std::uint64_t since,
                       std::string_view epoch,
                       std::size_t shard,
                       std::uint64_t session) override {
        record("fetch", id, std::to_string(since) + ":" + std::string(epoch));
        std::lock_guard lock(mutex_);
        fetches_.push_back({shard, session});
    }
    struct Fetch {
        std::size_t shard;
        std::uint64_t session;
    };
    std::vector<Fetch> fetches() const {
        std::lock_guard lock(mutex_);
        return fetches_;
    }

private:
    void record(std::string_view what, std::string_view id, std::string_view detail = {}) {
        std::string call = std::string(what) + ":" + std::string(id);
        if (!detail.empty()) {
            call += ":" + std::string(detail);
        }
        std::lock_guard lock(mutex_);
        calls_.push_back(std::move(call));
    }

    mutable std::mutex mutex_;
    std::vector<std::string> calls_;
    int stop_receiving_calls_ = 0;
    std::size_t calls_before_stop_receiving_ = 0;
    std::atomic<bool> refuse_{false};
    std::atomic<bool> upstream_{false};
    bool sequences_ = false;
    std::vector<Fetch> fetches_;
};

DispatcherConfig config_with(std::size_t shards, DuplicatePolicy duplicates) {
    DispatcherConfig config;
    config.shards = shards;
    config.session.on_duplicate = duplicates;
    return config;
}

// A started dispatcher joined to a RecordingLink; the link outlives the dispatcher.
struct Linked {
    Linked(std::size_t shards, DuplicatePolicy duplicates) : d(config_with(shards, duplicates)) {
        d.set_link(&link);
        d.start();
    }
    RecordingLink link;
    Dispatcher d;
};

TEST(ClusterLinkTest, ReplaceModeHoldsAnIdOnceClaimsOnEveryAttachAndReleasesAtTheEnd) {
    Linked linked(2, DuplicatePolicy::replace);
    auto& [link, d] = linked;
    auto first = SinkSession::open(d.shard_for("a"), "a");
    auto second = SinkSession::open(d.shard_for("a"), "a");
    ASSERT_TRUE(wait_until([&] { return first->close_code() == close_code::kReplaced; }, 5s));
    // The new session joins before the old one leaves: the id is never released in between.
    EXPECT_EQ(link.calls(), (std::vector<std::string>{"held:a", "claim:a", "claim:a"}));
    d.stop(1s);
    EXPECT_EQ(link.calls().back(), "released:a");
    EXPECT_EQ(link.count("released:a"), 1u);
}

// The node's clients stay connected while its shards drain, so what other nodes send them
// meanwhile is still taken; local publishes are refused from the start of stop(). The link
// stops receiving once the sessions have closed, and only then.
TEST(ClusterLinkTest, WhatTheBusSendsWhileTheShardsDrainIsDelivered) {
    Linked linked(1, DuplicatePolicy::replace);
    auto& [link, d] = linked;
    auto s = SinkSession::open(d.shard(0), "a", /*hold_writes=*/true);
    d.send("a", make_payload("queued"));
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 1; }, 5s));
    // The write stays in flight, so the drain waits for it.
    std::thread stopping([&] { d.stop(10s); });
    ASSERT_TRUE(wait_until([&] { return !d.accepting(); }, 5s));
    EXPECT_FALSE(d.send("a", make_payload("local"), PublishKind::send));
    EXPECT_TRUE(d.send("a", make_payload("from the bus"), PublishKind::bus));
    EXPECT_EQ(link.stop_receiving_calls(), 0);
    s->release_all();
    stopping.join();
    EXPECT_EQ(s->received(), (std::vector<std::string>{"queued", "from the bus"}));
    EXPECT_EQ(s->close_code(), close_code::kGoingAway);
    EXPECT_EQ(link.stop_receiving_calls(), 1);
    EXPECT_EQ(link.calls_before_stop_receiving(), link.calls().size());
    EXPECT_EQ(link.calls().back(), "released:a");
    EXPECT_FALSE(d.send("a", make_payload("too late"), PublishKind::bus));
}

TEST(ClusterLinkTest, SendForAnIdNotHeldHereIsForwardedInsteadOfCountedAsNoSession) {
    Linked linked(2, DuplicatePolicy::replace);
    auto& [link, d] = linked;
    auto here = SinkSession::open(d.shard_for("here"), "here");
    d.send("here", make_payload("1"));
    d.send("elsewhere", make_payload("2"));
    ASSERT_TRUE(wait_until([&] { return link.count("forward:elsewhere:2") == 1; }, 5s));
    ASSERT_TRUE(wait_until([&] { return here->received_count() == 1; }, 5s));
    EXPECT_EQ(link.count("forward:here:1"), 0u);
    EXPECT_EQ(test::failed(d, FailureReason::no_session), 0u);
    d.stop(1s);
}

TEST(ClusterLinkTest, WhatCameFromTheBusIsNeverForwardedAgain) {
    Linked linked(2, DuplicatePolicy::allow);
    auto& [link, d] = linked;
    d.send("nobody", make_payload("x"), PublishKind::bus);
    d.broadcast(make_payload("y"), {}, PublishKind::bus);
    d.disconnect("nobody", 4000, "bye", PublishKind::bus);
    ASSERT_TRUE(wait_until([&] { return test::failed(d, FailureReason::no_session) == 1; }, 5s));
    d.stop(1s);
    EXPECT_TRUE(link.calls().empty()) << link.calls().front();
}

TEST(ClusterLinkTest, AllowModeForwardsEvenWhenTheIdIsHeldHere) {
    Linked linked(2, DuplicatePolicy::allow);
    auto& [link, d] = linked;
    auto here = SinkSession::open(d.shard_for("a"), "a");
    d.send("a", make_payload("m"));
    d.disconnect("a", 4000, "bye");
    ASSERT_TRUE(wait_until([&] { return link.count("disconnect:a:4000") == 1; }, 5s));
    EXPECT_EQ(link.count("forward:a:m"), 1u);
    EXPECT_EQ(here->received(), std::vector<std::string>{"m"});
    EXPECT_EQ(link.count("claim:a"), 0u);  // no claims: sessions of an id may live anywhere
    d.stop(1s);
}

TEST(ClusterLinkTest, BroadcastLeavesTheNodeOnceWhateverTheShardCount) {
    Linked linked(4, DuplicatePolicy::replace);
    auto& [link, d] = linked;
    d.broadcast(make_payload("all"), "skip-me");
    ASSERT_TRUE(wait_until([&] { return link.count("broadcast:skip-me:all") == 1; }, 5s));
    d.stop(1s);
    EXPECT_EQ(link.calls(), std::vector<std::string>{"broadcast:skip-me:all"});
}

TEST(ClusterLinkTest, RefusedForwardsAreCountedAsBusUnavailable) {
    Linked linked(2, DuplicatePolicy::replace);
    auto& [link, d] = linked;
    link.refuse(true);
    d.send("elsewhere", make_payload("1"));
    d.send("elsewhere", make_payload("2"));
    d.broadcast(make_payload("3"));
    ASSERT_TRUE(
        wait_until([&] { return test::failed(d, FailureReason::bus_unavailable) == 3; }, 5s));
    d.stop(1s);
}

TEST(ClusterLinkTest, AClaimReplacesOnlySessionsAttachedBeforeIt) {
    Linked linked(2, DuplicatePolicy::replace);
    auto& [link, d] = linked;
    auto session = SinkSession::open(d.shard_for("a"), "a");
    const std::int64_t since = session->attached_ns();
    d.claim("a", since - 1, true);  // an older claim loses
    d.claim("a", since, false);     // a tie goes to the claimer only when it says so
    d.send("a", make_payload("still here"));
    ASSERT_TRUE(wait_until([&] { return session->received_count() == 1; }, 5s));
    EXPECT_EQ(session->close_code(), 0);
    d.claim("a", since, true);
    ASSERT_TRUE(wait_until([&] { return session->close_code() == close_code::kReplaced; }, 5s));
    EXPECT_EQ(test::cleaned(d, RemovalReason::replaced), 1u);
    d.stop(1s);
}

TEST(ClusterLinkTest, ClientFramesGoUpstreamOnlyWhenTheLinkWantsThem) {
    Linked linked(1, DuplicatePolicy::replace);
    auto& [link, d] = linked;
    auto session = SinkSession::open(d.shard_for("a"), "a");
    session->client_sends("dropped");
    ASSERT_TRUE(wait_until([&] { return d.shard(0).stats().frames_received.load() == 1; }, 5s));
    link.want_upstream(true);
    session->client_sends("kept");
    ASSERT_TRUE(wait_until([&] { return link.count("upstream:a:kept") == 1; }, 5s));
    EXPECT_EQ(link.count("upstream:a:dropped"), 0u);
    d.stop(1s);
}

// Sequenced (cluster history): a resuming session writes nothing until the stream's answer;
// then the replay, then what arrived meanwhile less what the replay covers, and a live copy
// that trails its stored original is dropped, so each offset reaches the client once.
TEST(ClusterLinkTest, ASequencedResumeDeliversEachOffsetOnceInOrderAcrossTheSeam) {
    RecordingLink link;
    link.sequence(true);
    Dispatcher d(config_with(1, DuplicatePolicy::replace));
    d.set_link(&link);
    d.start();
    const Epoch epoch = std::make_shared<const std::string>("e1.m1");
    auto s = SinkSession::open_resumed(d.shard(0), "a", 5, "e1.m1");
    ASSERT_TRUE(wait_until([&] { return link.fetches().size() == 1; }, 5s));
    EXPECT_EQ(link.count("fetch:a:5:e1.m1"), 1u);

    d.send_stored("a", make_payload("m7"), {7, epoch}, false);  // also in the replay
    d.send_stored("a", make_payload("m9"), {9, epoch}, false);  // stored after the read
    d.send_stored("a", make_payload("unstored"), {}, false);
    auto result = std::make_unique<ResumeResult>();
    result->session = link.fetches().front().session;
    result->since = 5;
    result->epoch = "e1.m1";
    for (std::uint64_t offset : {6, 7}) {
        ResumeResult::Entry& entry = result->entries.emplace_back();
        entry.position.offset = offset;
        entry.position.epoch = epoch;
        entry.payload = make_payload("m" + std::to_string(offset));
    }
    result->through = {8, epoch};
    d.resumed(link.fetches().front().shard, "a", std::move(result));
    d.send_stored("a", make_payload("m6"), {6, epoch}, false);  // trails: dropped
    d.send_stored("a", make_payload("m10"), {10, epoch}, false);

    ASSERT_TRUE(wait_until([&] { return s->received_count() >= 5; }, 5s));
    d.stop(1s);
    EXPECT_EQ(s->received(), (std::vector<std::string>{"m6", "m7", "m9", "unstored", "m10"}));
    EXPECT_EQ(s->offsets(), (std::vector<std::uint64_t>{6, 7, 9, 0, 10}));
    EXPECT_TRUE(s->gaps().empty());
    EXPECT_EQ(d.shard(0).stats().history.replayed.load(), 2u);
}

}  // namespace
}  // namespace shardcast::dispatcher
