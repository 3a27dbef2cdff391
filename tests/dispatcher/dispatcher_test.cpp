// The dispatcher with in-memory sessions: routing, policies and counters, one behaviour
// per test. Socket-level behaviour is covered in tests/integration.
#include "dispatcher/dispatcher.hpp"

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "dispatcher/close_code.hpp"
#include "tests/support/config_with.hpp"
#include "tests/support/hold_shard.hpp"
#include "tests/support/sink_session.hpp"
#include "tests/support/totals.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::dispatcher {
namespace {

using test::SinkSession;
using test::wait_until;
using namespace std::chrono_literals;

using test::config_with;

using test::cleaned;
using test::failed;
using test::held;

using test::hold_shard;

// One shard whose sessions keep at most buffer_limit bytes waiting, dropping the oldest.
DispatcherConfig drop_oldest_config(std::size_t buffer_limit) {
    DispatcherConfig config = config_with(1);
    config.session.buffer_limit = buffer_limit;
    config.session.overflow = OverflowPolicy::drop_oldest;
    return config;
}

TEST(DispatcherTest, SendReachesTheSessionOfTheId) {
    Dispatcher d(config_with(2));
    d.start();
    auto a = SinkSession::open(d.shard_for("a"), "a");
    auto b = SinkSession::open(d.shard_for("b"), "b");
    d.send("a", make_payload("for a"));
    ASSERT_TRUE(wait_until([&] { return a->received_count() == 1; }, 5s));
    EXPECT_EQ(a->received(), std::vector<std::string>{"for a"});
    EXPECT_EQ(b->received_count(), 0u);
    d.stop(1s);
}

TEST(DispatcherTest, SendToUnknownIdIsHeldForItsResume) {
    Dispatcher d(config_with(2));
    d.start();
    d.send("nobody", make_payload("x"));
    d.send("nobody", make_payload("y"));
    ASSERT_TRUE(wait_until([&] { return held(d) == 2; }, 5s));
    EXPECT_EQ(failed(d, FailureReason::no_session), 0u);
    d.stop(1s);
}

TEST(DispatcherTest, WithoutHistoryASendToUnknownIdIsCountedAsNoSession) {
    DispatcherConfig config = config_with(2);
    config.history.enabled = false;
    Dispatcher d(config);
    d.start();
    d.send("nobody", make_payload("x"));
    d.send("nobody", make_payload("y"));
    ASSERT_TRUE(wait_until([&] { return failed(d, FailureReason::no_session) == 2; }, 5s));
    EXPECT_EQ(held(d), 0u);
    d.stop(1s);
}

TEST(DispatcherTest, BroadcastSharesOnePayloadAcrossSessionsAndShards) {
    Dispatcher d(config_with(3));
    d.start();
    std::vector<std::shared_ptr<SinkSession>> sessions;
    for (int i = 0; i < 12; ++i) {
        std::string id = "c" + std::to_string(i);
        sessions.push_back(SinkSession::open(d.shard_for(id), id));
    }
    Payload payload = make_payload("hello all");
    d.broadcast(payload);
    for (auto& s : sessions) {
        ASSERT_TRUE(wait_until([&] { return s->received_count() == 1; }, 5s));
        EXPECT_EQ(s->received_addresses().front(), &payload->text()) << "payload was copied";
    }
    d.stop(1s);
}

TEST(DispatcherTest, BroadcastSkipsTheExceptedId) {
    Dispatcher d(config_with(2));
    d.start();
    auto a = SinkSession::open(d.shard_for("a"), "a");
    auto b = SinkSession::open(d.shard_for("b"), "b");
    d.broadcast(make_payload("not for a"), "a");
    d.send("a", make_payload("marker"));
    ASSERT_TRUE(
        wait_until([&] { return b->received_count() == 1 && a->received_count() == 1; }, 5s));
    EXPECT_EQ(a->received(), std::vector<std::string>{"marker"});
    d.stop(1s);
}

TEST(DispatcherTest, DuplicateIdReplacesOldSessionWith4001) {
    Dispatcher d(config_with(2));
    d.start();
    auto old_session = SinkSession::open(d.shard_for("dup"), "dup");
    auto new_session = SinkSession::open(d.shard_for("dup"), "dup");
    EXPECT_EQ(old_session->close_code(), close_code::kReplaced);
    d.send("dup", make_payload("to new"));
    ASSERT_TRUE(wait_until([&] { return new_session->received_count() == 1; }, 5s));
    EXPECT_EQ(old_session->received_count(), 0u);
    EXPECT_EQ(cleaned(d, RemovalReason::replaced), 1u);
    EXPECT_EQ(d.online(), 1u);
    d.stop(1s);
}

TEST(DispatcherTest, SessionReplacedDuringItsUpgradeStillGetsA4001Close) {
    Dispatcher d(config_with(1));
    d.start();
    auto upgrading = SinkSession::attach(d.shard(0), "early");
    auto replacement = SinkSession::open(d.shard(0), "early");
    // The first client may already hold its 101: its socket is not cut...
    EXPECT_FALSE(upgrading->aborted());
    EXPECT_EQ(upgrading->close_code(), 0);
    // ...and once its upgrade completes it is closed properly.
    upgrading->finish_handshake();
    ASSERT_TRUE(wait_until([&] { return upgrading->close_code() == close_code::kReplaced; }, 5s));
    EXPECT_EQ(cleaned(d, RemovalReason::replaced), 1u);
    EXPECT_EQ(d.online(), 1u);
    d.stop(1s);
}

TEST(DispatcherTest, AllowModeDeliversToEverySessionUpToTheLimit) {
    DispatcherConfig config = config_with(1);
    config.session.on_duplicate = DuplicatePolicy::allow;
    config.session.max_per_client = 2;
    Dispatcher d(config);
    d.start();
    auto first = SinkSession::open(d.shard(0), "multi");
    auto second = SinkSession::open(d.shard(0), "multi");
    auto third = SinkSession::open(d.shard(0), "multi");  // over the limit: refused
    EXPECT_EQ(d.online(), 2u);
    d.send("multi", make_payload("both"));
    ASSERT_TRUE(wait_until(
        [&] { return first->received_count() == 1 && second->received_count() == 1; }, 5s));
    EXPECT_EQ(third->received_count(), 0u);
    d.stop(1s);
}

TEST(DispatcherTest, DisconnectClosesWithTheGivenCode) {
    Dispatcher d(config_with(2));
    d.start();
    auto s = SinkSession::open(d.shard_for("kick"), "kick");
    d.disconnect("kick", 4100, "bye");
    ASSERT_TRUE(wait_until([&] { return s->close_code() == 4100; }, 5s));
    ASSERT_TRUE(wait_until([&] { return d.online() == 0; }, 5s));
    EXPECT_EQ(cleaned(d, RemovalReason::disconnected), 1u);
    d.stop(1s);
}

TEST(DispatcherTest, OverflowTerminateClosesWith1008) {
    DispatcherConfig config = config_with(1);
    config.session.buffer_limit = 10;
    Dispatcher d(config);
    d.start();
    auto s = SinkSession::open(d.shard(0), "slow", /*hold_writes=*/true);
    d.send("slow", make_payload("in flight"));  // held: the buffer stays full behind it
    d.send("slow", make_payload("123456"));
    d.send("slow", make_payload("7890123"));  // 6 + 7 > 10
    ASSERT_TRUE(wait_until([&] { return s->close_code() == close_code::kPolicyViolation; }, 5s));
    EXPECT_EQ(cleaned(d, RemovalReason::overflow), 1u);
    EXPECT_EQ(d.online(), 0u);
    d.stop(1s);
}

// A message larger than the whole buffer can never fit: it is dropped, and the messages
// waiting ahead of it, which fit, are kept.
TEST(DispatcherTest, OverflowDropOldestDropsAMessageLargerThanTheBufferAlone) {
    Dispatcher d(drop_oldest_config(100));
    d.start();
    auto s = SinkSession::open(d.shard(0), "slow", /*hold_writes=*/true);
    d.send("slow", make_payload(std::string(10, 'a')));  // in flight
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 1; }, 5s));
    d.send("slow", make_payload(std::string(10, 'b')));
    d.send("slow", make_payload(std::string(10, 'c')));
    d.send("slow", make_payload(std::string(200, 'X')));
    d.send("slow", make_payload(std::string(10, 'd')));
    ASSERT_TRUE(wait_until([&] { return d.shard(0).stats().outbound_bytes.load() == 40; }, 5s));
    EXPECT_EQ(failed(d, FailureReason::overflow_dropped), 1u);
    s->release_all();
    ASSERT_TRUE(wait_until([&] { return test::sent(d) == 4; }, 5s));
    EXPECT_EQ(s->received(),
              (std::vector<std::string>{std::string(10, 'a'), std::string(10, 'b'),
                                        std::string(10, 'c'), std::string(10, 'd')}));
    EXPECT_EQ(failed(d, FailureReason::overflow_dropped), 1u);
    d.stop(1s);
}

TEST(DispatcherTest, OverflowDropOldestKeepsNewestAndCountsDrops) {
    Dispatcher d(drop_oldest_config(10));
    d.start();
    auto s = SinkSession::open(d.shard(0), "slow", /*hold_writes=*/true);
    d.send("slow", make_payload("first"));  // in flight, never dropped
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 1; }, 5s));
    for (int i = 0; i < 5; ++i) d.send("slow", make_payload("msg-" + std::to_string(i)));
    ASSERT_TRUE(wait_until([&] { return failed(d, FailureReason::overflow_dropped) == 3; }, 5s));
    s->release_all();
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 3; }, 5s));
    EXPECT_EQ(s->received(), (std::vector<std::string>{"first", "msg-3", "msg-4"}));
    EXPECT_EQ(d.online(), 1u);
    d.stop(1s);
}

// What waits while a write is in flight leaves in the next write, up to the transport's batch.
TEST(DispatcherTest, QueuedMessagesLeaveTogetherInTheNextWrite) {
    Dispatcher d(config_with(1));
    d.start();
    auto s = SinkSession::attach(d.shard(0), "busy", /*hold_writes=*/true);
    s->set_batch(4);
    s->finish_handshake();
    d.send("busy", make_payload("first"));
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 1; }, 5s));
    for (int i = 0; i < 6; ++i) d.send("busy", make_payload(std::to_string(i)));
    ASSERT_TRUE(wait_until([&] { return d.shard(0).stats().outbound_bytes.load() == 11; }, 5s));
    s->release_all();
    ASSERT_TRUE(wait_until([&] { return test::sent(d) == 7; }, 5s));
    EXPECT_EQ(s->writes(), (std::vector<std::size_t>{1, 4, 2}));
    EXPECT_EQ(s->received(), (std::vector<std::string>{"first", "0", "1", "2", "3", "4", "5"}));
    EXPECT_EQ(d.shard(0).stats().writes.load(), 3u);
    EXPECT_EQ(s->violations(), 0);
    d.stop(1s);
}

TEST(DispatcherTest, StuckWriteHitsSendTimeLimit) {
    DispatcherConfig config = config_with(1);
    config.session.send_time_limit = 100ms;
    Dispatcher d(config);
    d.start();
    auto s = SinkSession::open(d.shard(0), "stuck", /*hold_writes=*/true);
    d.send("stuck", make_payload("never completes"));
    // The removal is counted just before the session is cut, on the shard's thread: wait for
    // both.
    ASSERT_TRUE(wait_until(
        [&] { return cleaned(d, RemovalReason::send_timeout) == 1 && s->aborted(); }, 5s));
    EXPECT_EQ(failed(d, FailureReason::send_timeout), 1u);
    d.stop(1s);
}

TEST(DispatcherTest, SilentSessionHitsHeartbeatTimeout) {
    DispatcherConfig config = config_with(1);
    config.session.heartbeat_interval = 50ms;
    config.session.heartbeat_timeout = 200ms;
    Dispatcher d(config);
    d.start();
    auto s = SinkSession::open(d.shard(0), "silent");
    // The removal is counted just before the close starts, on the shard's thread: wait for
    // both.
    ASSERT_TRUE(wait_until(
        [&] {
            return cleaned(d, RemovalReason::heartbeat_timeout) == 1 &&
                   s->close_code() == close_code::kHeartbeatTimeout;
        },
        5s));
    EXPECT_EQ(d.online(), 0u);
    d.stop(1s);
}

// Pings go out from the shard's tick, which walks its sessions. A ping that fails at once
// removes its session; done inside the walk, that erased the element the walk stood on.
TEST(DispatcherTest, PingsThatFailAtOnceRemoveTheirSessionsAndNothingElse) {
    DispatcherConfig config = config_with(1);
    config.session.heartbeat_interval = 20ms;
    Dispatcher d(config);
    d.start();
    std::vector<std::shared_ptr<SinkSession>> failing;
    for (int i = 0; i < 8; ++i) {
        failing.push_back(SinkSession::open(d.shard(0), "reset-" + std::to_string(i)));
        failing.back()->fail_pings_at_once();
    }
    auto healthy = SinkSession::open(d.shard(0), "healthy");
    ASSERT_TRUE(wait_until([&] { return cleaned(d, RemovalReason::write_error) == 8; }, 5s))
        << cleaned(d, RemovalReason::write_error);
    EXPECT_EQ(d.online(), 1u);
    d.send("healthy", make_payload("still here"));
    ASSERT_TRUE(wait_until([&] { return healthy->received_count() == 1; }, 5s));
    d.stop(1s);
}

TEST(DispatcherTest, LookupAnswersOnTheShardThread) {
    Dispatcher d(config_with(2));
    d.start();
    auto s = SinkSession::open(d.shard_for("who"), "who");
    std::promise<ClientInfo> answer;
    d.lookup("who", [&](ClientInfo info) { answer.set_value(info); });
    ClientInfo info = answer.get_future().get();
    EXPECT_TRUE(info.online);
    EXPECT_EQ(info.sessions, 1u);
    EXPECT_EQ(info.shard, d.router().shard_of("who"));
    d.stop(1s);
}

TEST(DispatcherTest, LookupIsRefusedOnceStopHasBegun) {
    Dispatcher d(config_with(1));
    d.start();
    d.stop(1s);
    bool ran = false;
    EXPECT_FALSE(d.lookup("who", [&](ClientInfo) { ran = true; }));
    EXPECT_FALSE(ran);
}

TEST(DispatcherTest, StopFlushesQueuedMessagesThenCloses1001) {
    Dispatcher d(config_with(2));
    d.start();
    auto s = SinkSession::open(d.shard_for("drain"), "drain");
    for (int i = 0; i < 100; ++i) d.send("drain", make_payload(std::to_string(i)));
    d.stop(5s);
    EXPECT_EQ(s->received_count(), 100u);
    EXPECT_EQ(s->close_code(), close_code::kGoingAway);
    EXPECT_EQ(cleaned(d, RemovalReason::server_shutdown), 1u);
    EXPECT_FALSE(d.send("drain", make_payload("late")));
}

TEST(DispatcherTest, StopCountsWhatTheDeadlineCutOff) {
    Dispatcher d(config_with(1));
    d.start();
    auto s = SinkSession::open(d.shard(0), "held", /*hold_writes=*/true);
    for (int i = 0; i < 10; ++i) d.send("held", make_payload(std::to_string(i)));
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 1; }, 5s));
    d.stop(50ms);
    // One write stays in flight; the 9 queued behind it are failed as shutdown.
    EXPECT_EQ(failed(d, FailureReason::shutdown), 9u);
}

// Commands a drain turn took from the inbox but had not delivered when the shard stopped
// are counted as shutdown failures, as the inbox's leftovers are: every send is counted once.
TEST(DispatcherTest, StopCountsCommandsATurnTookButNeverDelivered) {
    DispatcherConfig config = config_with(1);
    config.drain_budget = 16;
    Dispatcher d(config);
    d.start();
    std::promise<void> gate;
    hold_shard(d.shard(0), gate.get_future().share()).wait();
    constexpr int kSends = 100'000;
    for (int i = 0; i < kSends; ++i) d.send("nobody", make_payload("x"));
    gate.set_value();
    d.stop(0ms);
    EXPECT_GT(failed(d, FailureReason::shutdown), 0u);
    EXPECT_EQ(held(d) + failed(d, FailureReason::shutdown), static_cast<std::uint64_t>(kSends));
    EXPECT_EQ(d.shard(0).queue_depth(), 0u);
}

// Commands a drain turn has taken from the inbox but not delivered still count towards
// publish.max_queue_depth: a turn takes up to 64Ki at once, each broadcast worth a delivery
// to every session, so counting the inbox alone let seconds of work pile up unrefused.
TEST(DispatcherTest, CommandsTakenButNotDeliveredCountTowardsTheQueueDepthLimit) {
    DispatcherConfig config = config_with(1);
    config.drain_budget = 1;
    config.max_queue_depth = 10;
    Dispatcher d(config);
    d.start();
    Shard& shard = d.shard_for("x");
    std::promise<void> first_gate;
    std::promise<void> second_gate;
    hold_shard(shard, first_gate.get_future().share()).wait();
    for (int i = 0; i < 30; ++i) d.send("x", make_payload("m"));  // posts one drain turn
    EXPECT_EQ(d.overload_of("x").limit, Dispatcher::Overload::Limit::queue_depth);
    // Queued behind that turn: it takes all 30 from the inbox and delivers one.
    auto second_held = hold_shard(shard, second_gate.get_future().share());
    first_gate.set_value();
    second_held.wait();
    const Dispatcher::Overload overload = d.overload_of("x");
    EXPECT_EQ(overload.limit, Dispatcher::Overload::Limit::queue_depth);
    EXPECT_EQ(overload.value, 29u);
    second_gate.set_value();
    ASSERT_TRUE(wait_until([&] { return held(d) == 30; }, 5s));
    EXPECT_FALSE(d.overload_of("x"));
    d.stop(1s);
}

// publish.max_queue_delay: a shard that has sat on a command longer than the limit is behind
// however few commands it holds, and is not once it has delivered it.
TEST(DispatcherTest, AShardHeldPastMaxQueueDelayIsOverloadedUntilItDrains) {
    DispatcherConfig config = config_with(1);
    config.max_queue_delay = 20ms;
    Dispatcher d(config);
    d.start();
    std::promise<void> gate;
    hold_shard(d.shard_for("x"), gate.get_future().share()).wait();
    d.send("x", make_payload("m"));  // one command, far below max_queue_depth
    ASSERT_TRUE(wait_until([&] { return static_cast<bool>(d.overload_of("x")); }, 5s))
        << "a command held past max_queue_delay never made its shard overloaded";
    const Dispatcher::Overload overload = d.overload_of("x");
    EXPECT_EQ(overload.limit, Dispatcher::Overload::Limit::queue_delay);
    EXPECT_GT(overload.value, 20'000u) << "microseconds waited";
    EXPECT_EQ(d.overload_of_any().limit, Dispatcher::Overload::Limit::queue_delay);
    gate.set_value();
    ASSERT_TRUE(wait_until([&] { return held(d) == 1 && !d.overload_of("x"); }, 5s))
        << "still overloaded after delivering everything: " << d.overload_of("x").value << " us";
    d.stop(1s);
}

TEST(DispatcherTest, MaxQueueDelayOfZeroNeverRefusesForTime) {
    DispatcherConfig config = config_with(1);
    config.max_queue_delay = 0ms;
    Dispatcher d(config);
    d.start();
    Shard& shard = d.shard(0);
    std::promise<void> gate;
    hold_shard(shard, gate.get_future().share()).wait();
    d.send("x", make_payload("m"));
    ASSERT_TRUE(wait_until([&] { return shard.queue_delay(Clock::now()) > 50ms; }, 5s));
    EXPECT_FALSE(d.overload_of("x"));
    gate.set_value();
    d.stop(1s);
}

// Once a turn has delivered the oldest command, the age is that of the next: a shard that
// keeps up with a stream is not refused for how long the stream has been running.
TEST(DispatcherTest, QueueDelayIsTheAgeOfTheOldestCommandNotYetDelivered) {
    DispatcherConfig config = config_with(1);
    config.drain_budget = 1;
    Dispatcher d(config);
    d.start();
    Shard& shard = d.shard(0);
    std::promise<void> first_gate;
    std::promise<void> second_gate;
    hold_shard(shard, first_gate.get_future().share()).wait();
    d.send("x", make_payload("old"));
    ASSERT_TRUE(wait_until([&] { return shard.queue_delay(Clock::now()) > 50ms; }, 5s))
        << "a held shard's backlog did not age";
    const Clock::time_point before_new = Clock::now();
    d.send("x", make_payload("new"));
    // Behind the turn that delivers "old" and leaves "new" for the next.
    auto second_held = hold_shard(shard, second_gate.get_future().share());
    first_gate.set_value();
    second_held.wait();
    const Clock::time_point now = Clock::now();
    const Clock::duration waited = shard.queue_delay(now);
    second_gate.set_value();
    EXPECT_GT(waited, Clock::duration::zero()) << "\"new\" is still waiting";
    EXPECT_LE(waited, now - before_new) << "the age of the delivered \"old\"";
    ASSERT_TRUE(
        wait_until([&] { return shard.queue_delay(Clock::now()) == Clock::duration::zero(); }, 5s))
        << "a shard with nothing waiting kept an age";
    d.stop(1s);
}

// A turn that runs out of budget keeps the rest for the next turn, which appends what has
// arrived since. The delivered front of the batch is dropped then (it used to be kept until
// a turn delivered everything, so a backlog that never emptied grew without bound): what
// remains must still be delivered whole and in publish order.
TEST(DispatcherTest, CommandsArrivingBehindABacklogKeepPublishOrder) {
    DispatcherConfig config = config_with(1);
    config.drain_budget = 2;
    Dispatcher d(config);
    d.start();
    Shard& shard = d.shard(0);
    auto s = SinkSession::open(shard, "x");
    std::promise<void> first_gate;
    std::promise<void> second_gate;
    hold_shard(shard, first_gate.get_future().share()).wait();
    for (int i = 0; i < 4; ++i) d.send("x", make_payload(std::to_string(i)));
    // Behind the first turn, which takes 0-3 and delivers 0 and 1.
    auto second_held = hold_shard(shard, second_gate.get_future().share());
    first_gate.set_value();
    second_held.wait();
    EXPECT_EQ(shard.queue_depth(), 2u);
    // The next turn takes these behind 2 and 3, after dropping the delivered 0 and 1.
    for (int i = 4; i < 7; ++i) d.send("x", make_payload(std::to_string(i)));
    second_gate.set_value();
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 7; }, 5s))
        << "received " << s->received_count();
    EXPECT_EQ(s->received(), (std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6"}));
    EXPECT_EQ(shard.queue_depth(), 0u);
    d.stop(1s);
}

}  // namespace
}  // namespace shardcast::dispatcher
