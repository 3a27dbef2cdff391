// A Shard on its own, with in-memory sessions: attach, remove and lookup on its thread, the
// duplicate policies, refusals while stopping, and a send to nobody. The test thread reaches
// the shard only by posting to its io_context and waiting, as every other thread does.
#include "dispatcher/shard.hpp"

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <type_traits>

#include "dispatcher/close_code.hpp"
#include "tests/support/sink_session.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::dispatcher {
namespace {

using test::SinkSession;
using test::wait_until;
using namespace std::chrono_literals;

// Runs f on the shard's thread and returns what it returns, once it has run.
template <class F>
auto on_shard(Shard& shard, F f) {
    using Result = std::invoke_result_t<F&>;
    std::promise<Result> done;
    boost::asio::post(shard.io_context(), [&] {
        if constexpr (std::is_void_v<Result>) {
            f();
            done.set_value();
        } else {
            done.set_value(f());
        }
    });
    return done.get_future().get();
}

// Stops the shard as Dispatcher::stop does: drain, close every session, join.
void stop(Shard& shard) {
    shard.begin_stop(Clock::now() + 1s);
    EXPECT_TRUE(shard.wait_stopped(Clock::now() + 5s)) << "the shard never stopped";
    shard.join();
}

Command send_to(std::string client_id, std::string text) {
    Command command;
    command.kind = Command::Kind::send;
    command.client_id = std::move(client_id);
    command.payload = make_payload(std::move(text));
    command.enqueued = Clock::now();
    return command;
}

DispatcherConfig allow_mode(std::size_t max_per_client) {
    DispatcherConfig config;
    config.session.on_duplicate = DuplicatePolicy::allow;
    config.session.max_per_client = max_per_client;
    return config;
}

std::uint64_t cleaned(const Shard& shard, RemovalReason reason) {
    return shard.stats().cleaned[static_cast<std::size_t>(reason)].load();
}

TEST(ShardTest, AnAttachedSessionIsFoundByLookupAndCounted) {
    Shard shard(3, DispatcherConfig{});
    shard.start();
    auto s = SinkSession::open(shard, "a");
    EXPECT_EQ(s->attach_result(), Shard::Attach::attached);
    const ClientInfo info = on_shard(shard, [&] { return shard.lookup("a"); });
    EXPECT_EQ(info.id, "a");
    EXPECT_TRUE(info.online);
    EXPECT_EQ(info.sessions, 1u);
    EXPECT_EQ(info.shard, 3u);
    EXPECT_EQ(shard.session_count(), 1u);
    EXPECT_EQ(shard.stats().connections.load(), 1u);
    stop(shard);
}

TEST(ShardTest, LookupOfAnIdWithNoSessionIsOffline) {
    Shard shard(1, DispatcherConfig{});
    shard.start();
    const ClientInfo info = on_shard(shard, [&] { return shard.lookup("nobody"); });
    EXPECT_EQ(info.id, "nobody");
    EXPECT_FALSE(info.online);
    EXPECT_EQ(info.sessions, 0u);
    EXPECT_EQ(info.shard, 1u);
    stop(shard);
}

TEST(ShardTest, RemoveTakesTheSessionOutAndCountsItsReason) {
    Shard shard(0, DispatcherConfig{});
    shard.start();
    auto s = SinkSession::open(shard, "a");
    on_shard(shard, [&] { shard.remove(*s, RemovalReason::peer_closed); });
    EXPECT_FALSE(on_shard(shard, [&] { return shard.lookup("a"); }).online);
    EXPECT_EQ(shard.session_count(), 0u);
    EXPECT_EQ(cleaned(shard, RemovalReason::peer_closed), 1u);
    EXPECT_TRUE(s->aborted()) << "a peer that closed is not sent a close frame";
    stop(shard);
}

// Every removal happens once: a second remove, for whatever reason, changes nothing, whether
// the id still has another session or has none left.
TEST(ShardTest, RemovingASessionTwiceCountsItOnceUnderTheFirstReason) {
    Shard shard(0, allow_mode(2));
    shard.start();
    auto first = SinkSession::open(shard, "a");
    auto second = SinkSession::open(shard, "a");
    on_shard(shard, [&] {
        shard.remove(*first, RemovalReason::disconnected, 4100, "bye");
        shard.remove(*first, RemovalReason::write_error);  // "a" still has a session
    });
    on_shard(shard, [&] {
        shard.remove(*second, RemovalReason::peer_closed);
        shard.remove(*second, RemovalReason::read_error);  // "a" has none left
    });
    on_shard(shard, [&] { shard.remove(*first, RemovalReason::heartbeat_timeout); });
    EXPECT_EQ(cleaned(shard, RemovalReason::disconnected), 1u);
    EXPECT_EQ(cleaned(shard, RemovalReason::peer_closed), 1u);
    EXPECT_EQ(shard.stats().cleaned_total(), 2u);
    EXPECT_EQ(shard.session_count(), 0u);
    EXPECT_EQ(shard.stats().sessions.load(), 0);
    EXPECT_EQ(first->close_code(), 4100);
    EXPECT_FALSE(first->aborted());
    stop(shard);
}

// Removing one of an id's sessions leaves the id online with the others.
TEST(ShardTest, RemovingOneOfAnIdsSessionsKeepsTheOthers) {
    Shard shard(0, allow_mode(2));
    shard.start();
    auto first = SinkSession::open(shard, "multi");
    auto second = SinkSession::open(shard, "multi");
    on_shard(shard, [&] { shard.remove(*first, RemovalReason::peer_closed); });
    const ClientInfo info = on_shard(shard, [&] { return shard.lookup("multi"); });
    EXPECT_TRUE(info.online);
    EXPECT_EQ(info.sessions, 1u);
    shard.publish(send_to("multi", "to the one left"));
    ASSERT_TRUE(wait_until([&] { return second->received_count() == 1; }, 5s));
    EXPECT_EQ(first->received_count(), 0u);
    stop(shard);
}

TEST(ShardTest, ReplaceModeReplacesTheOlderSessionWhichClosesWith4001) {
    Shard shard(0, DispatcherConfig{});
    shard.start();
    auto older = SinkSession::open(shard, "dup");
    auto newer = SinkSession::open(shard, "dup");
    EXPECT_EQ(newer->attach_result(), Shard::Attach::attached);
    EXPECT_EQ(older->close_code(), close_code::kReplaced);
    EXPECT_EQ(newer->close_code(), 0);
    EXPECT_EQ(on_shard(shard, [&] { return shard.lookup("dup"); }).sessions, 1u);
    EXPECT_EQ(shard.session_count(), 1u);
    EXPECT_EQ(shard.stats().connections.load(), 2u);
    EXPECT_EQ(cleaned(shard, RemovalReason::replaced), 1u);
    stop(shard);
}

// The shard reports the refusal; the transport answers it (409) and counts it in
// refused_too_many, so the shard's own counters see no new session.
TEST(ShardTest, AllowModeRefusesASessionBeyondMaxPerClient) {
    Shard shard(0, allow_mode(2));
    shard.start();
    auto first = SinkSession::open(shard, "multi");
    auto second = SinkSession::open(shard, "multi");
    auto third = SinkSession::open(shard, "multi");
    EXPECT_EQ(first->attach_result(), Shard::Attach::attached);
    EXPECT_EQ(second->attach_result(), Shard::Attach::attached);
    EXPECT_EQ(third->attach_result(), Shard::Attach::too_many);
    EXPECT_EQ(on_shard(shard, [&] { return shard.lookup("multi"); }).sessions, 2u);
    EXPECT_EQ(shard.session_count(), 2u);
    EXPECT_EQ(shard.stats().connections.load(), 2u);
    EXPECT_EQ(first->close_code(), 0) << "allow mode replaced a session";
    stop(shard);
}

// Draining for the stop, the shard still delivers what is queued but takes no new session.
TEST(ShardTest, AttachIsRefusedOnceStopHasBegun) {
    Shard shard(0, DispatcherConfig{});
    shard.start();
    // A write held in flight keeps the shard draining until it is released.
    auto busy = SinkSession::open(shard, "busy", /*hold_writes=*/true);
    shard.publish(send_to("busy", "held"));
    ASSERT_TRUE(wait_until([&] { return busy->received_count() == 1; }, 5s));
    shard.begin_stop(Clock::now() + 10s);
    auto late = SinkSession::open(shard, "late");
    EXPECT_EQ(late->attach_result(), Shard::Attach::stopping);
    EXPECT_EQ(shard.session_count(), 1u);
    EXPECT_EQ(busy->close_code(), 0) << "stopped draining before the held write was released";
    busy->release_all();
    EXPECT_TRUE(shard.wait_stopped(Clock::now() + 5s));
    EXPECT_EQ(busy->close_code(), close_code::kGoingAway);
    shard.join();
}

TEST(ShardTest, ASendToAnIdWithNoSessionIsHeld) {
    Shard shard(0, DispatcherConfig{});
    shard.start();
    auto other = SinkSession::open(shard, "other");
    EXPECT_TRUE(shard.publish(send_to("nobody", "kept")));
    ASSERT_TRUE(wait_until([&] { return shard.stats().held.load() == 1; }, 5s));
    EXPECT_EQ(shard.stats().published[static_cast<std::size_t>(PublishKind::send)].load(), 1u);
    EXPECT_EQ(shard.stats().failed_total(), 0u);
    EXPECT_EQ(shard.stats().history.entries.load(), 1);
    EXPECT_EQ(other->received_count(), 0u);
    stop(shard);
}

TEST(ShardTest, WithoutHistoryASendToAnIdWithNoSessionCountsNoSession) {
    DispatcherConfig config;
    config.history.enabled = false;
    Shard shard(0, config);
    shard.start();
    EXPECT_TRUE(shard.publish(send_to("nobody", "lost")));
    const auto no_session = [&] {
        return shard.stats().failed[static_cast<std::size_t>(FailureReason::no_session)].load();
    };
    ASSERT_TRUE(wait_until([&] { return no_session() == 1; }, 5s));
    EXPECT_EQ(shard.stats().failed_total(), 1u);
    EXPECT_EQ(shard.stats().held.load(), 0u);
    stop(shard);
}

// A command that finds the shard idle wakes its thread; the commands that arrive while that
// turn is pending ride along, and the turns the shard posts itself to finish them are no
// wake-ups either.
TEST(ShardTest, CommandsArrivingWhileADrainIsPendingCostNoWakeUp) {
    DispatcherConfig config;
    config.drain_budget = 8;  // the backlog below takes several turns
    Shard shard(0, config);
    shard.start();
    auto sink = SinkSession::open(shard, "sink");
    EXPECT_TRUE(shard.publish(send_to("sink", "first")));
    ASSERT_TRUE(wait_until([&] { return sink->received_count() == 1; }, 5s));
    EXPECT_EQ(shard.stats().wakeups.load(), 1u);

    std::promise<void> release;
    boost::asio::post(shard.io_context(), [gate = release.get_future().share()] { gate.wait(); });
    for (int i = 0; i < 100; ++i) {
        EXPECT_TRUE(shard.publish(send_to("sink", "backlog")));
    }
    release.set_value();
    ASSERT_TRUE(wait_until([&] { return sink->received_count() == 101; }, 5s));
    EXPECT_EQ(shard.stats().wakeups.load(), 2u);
    stop(shard);
}

}  // namespace
}  // namespace shardcast::dispatcher
