// The Session's write path and its endings, seen through a SinkSession on a one-shard
// Dispatcher: how much a batch takes, one batch in flight, what an announced close still
// writes, the overflow policies around a batch in flight, and token expiry. What the
// Dispatcher tests already cover (max_batch per write, a single message in flight under
// drop_oldest, the 1008 close) is not repeated here.
#include "dispatcher/session.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "dispatcher/close_code.hpp"
#include "dispatcher/dispatcher.hpp"
#include "tests/support/hold_shard.hpp"
#include "tests/support/sink_session.hpp"
#include "tests/support/totals.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::dispatcher {
namespace {

using test::cleaned;
using test::failed;
using test::hold_shard;
using test::SinkSession;
using test::wait_until;
using namespace std::chrono_literals;

constexpr std::int64_t kKiB = 1024;

DispatcherConfig one_shard() {
    DispatcherConfig config;
    config.shards = 1;
    return config;
}

// An open session on shard 0 whose transport puts up to `batch` messages into one write.
std::shared_ptr<SinkSession> open_batching(Dispatcher& d,
                                           std::string id,
                                           std::size_t batch,
                                           bool hold_writes) {
    auto session = SinkSession::attach(d.shard(0), std::move(id), hold_writes);
    session->set_batch(batch);
    session->finish_handshake();
    return session;
}

std::int64_t outbound_bytes(const Dispatcher& d) {
    return d.shard(0).stats().outbound_bytes.load();
}

// Two 128 KiB messages make exactly 256 KiB and share a write; a third would not fit.
TEST(SessionTest, ABatchCarriesAtMost256KiBOfMessages) {
    Dispatcher d(one_shard());
    d.start();
    auto s = open_batching(d, "big", 100, /*hold_writes=*/true);
    d.send("big", make_payload("first"));  // held in flight while the rest queue up
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 1; }, 5s));
    for (char c : std::string("abcde")) d.send("big", make_payload(std::string(128 * kKiB, c)));
    ASSERT_TRUE(wait_until([&] { return outbound_bytes(d) == 5 + 5 * 128 * kKiB; }, 5s));
    s->release_all();
    ASSERT_TRUE(wait_until([&] { return test::sent(d) == 6; }, 5s));
    EXPECT_EQ(s->writes(), (std::vector<std::size_t>{1, 2, 2, 1}));
    EXPECT_EQ(s->violations(), 0);
    d.stop(1s);
}

// A message over 256 KiB still leaves, alone; the small ones behind it wait for the next write.
TEST(SessionTest, AMessageOver256KiBLeavesAloneInItsOwnWrite) {
    Dispatcher d(one_shard());
    d.start();
    auto s = open_batching(d, "big", 100, /*hold_writes=*/true);
    d.send("big", make_payload("first"));
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 1; }, 5s));
    const std::string huge(300 * kKiB, 'x');
    d.send("big", make_payload(huge));
    d.send("big", make_payload("a"));
    d.send("big", make_payload("b"));
    ASSERT_TRUE(wait_until([&] { return outbound_bytes(d) == 5 + 300 * kKiB + 2; }, 5s));
    s->release_all();
    ASSERT_TRUE(wait_until([&] { return test::sent(d) == 4; }, 5s));
    EXPECT_EQ(s->writes(), (std::vector<std::size_t>{1, 1, 2}));
    EXPECT_EQ(s->received(), (std::vector<std::string>{"first", huge, "a", "b"}));
    d.stop(1s);
}

// One write in flight: until the batch is written, asking for the next one gets nothing.
TEST(SessionTest, TakeBatchHandsOutNothingWhileABatchIsInFlight) {
    Dispatcher d(one_shard());
    d.start();
    auto s = SinkSession::open(d.shard(0), "one", /*hold_writes=*/true);
    d.send("one", make_payload("a"));
    d.send("one", make_payload("b"));
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 1 && outbound_bytes(d) == 2; }, 5s));
    EXPECT_EQ(s->take_batch_now(), 0u) << "a second batch was handed out while one is in flight";
    s->release_one();
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 2; }, 5s));
    EXPECT_EQ(s->take_batch_now(), 0u);
    s->release_one();
    ASSERT_TRUE(wait_until([&] { return test::sent(d) == 2; }, 5s));
    EXPECT_EQ(s->writes(), (std::vector<std::size_t>{1, 1}));
    EXPECT_EQ(s->violations(), 0);
    d.stop(1s);
}

// Messages and a disconnect delivered in one turn: the front of the queue, as one write takes
// it, goes out ahead of the close frame; what is behind it is counted as session_closed.
TEST(SessionTest, DisconnectWritesTheFrontBatchBeforeItsCloseAndCountsTheRest) {
    Dispatcher d(one_shard());
    d.start();
    auto s = open_batching(d, "kick", 3, /*hold_writes=*/false);
    std::promise<void> gate;
    hold_shard(d.shard(0), gate.get_future().share()).wait();
    for (int i = 0; i < 5; ++i) d.send("kick", make_payload(std::to_string(i)));
    d.disconnect("kick", 4100, "bye");
    gate.set_value();
    ASSERT_TRUE(wait_until([&] { return s->close_code() == 4100; }, 5s));
    ASSERT_TRUE(wait_until([&] { return test::sent(d) == 3; }, 5s));
    EXPECT_EQ(s->received_at_close(), 3);
    EXPECT_EQ(s->received(), (std::vector<std::string>{"0", "1", "2"}));
    EXPECT_EQ(failed(d, FailureReason::session_closed), 2u);
    EXPECT_EQ(cleaned(d, RemovalReason::disconnected), 1u);
    ASSERT_TRUE(wait_until([&] { return outbound_bytes(d) == 0; }, 5s));
    d.stop(1s);
}

// The same for a session replaced in the turn that delivered to it: a claim from another node
// with a later attach time.
TEST(SessionTest, AReplacedSessionWritesTheFrontBatchBeforeIts4001AndCountsTheRest) {
    Dispatcher d(one_shard());
    d.start();
    auto s = open_batching(d, "dup", 2, /*hold_writes=*/false);
    std::promise<void> gate;
    hold_shard(d.shard(0), gate.get_future().share()).wait();
    for (int i = 0; i < 5; ++i) d.send("dup", make_payload(std::to_string(i)));
    d.claim("dup", std::numeric_limits<std::int64_t>::max(), /*wins_ties=*/false);
    gate.set_value();
    ASSERT_TRUE(wait_until([&] { return s->close_code() == close_code::kReplaced; }, 5s));
    ASSERT_TRUE(wait_until([&] { return test::sent(d) == 2; }, 5s));
    EXPECT_EQ(s->received_at_close(), 2);
    EXPECT_EQ(s->received(), (std::vector<std::string>{"0", "1"}));
    EXPECT_EQ(failed(d, FailureReason::session_closed), 3u);
    EXPECT_EQ(cleaned(d, RemovalReason::replaced), 1u);
    d.stop(1s);
}

// Replaced while a write is in flight: that write is the one that goes out ahead of the close;
// it still completes and counts as sent, and what waited behind it is session_closed.
TEST(SessionTest, AReplacedSessionFinishesItsWriteInFlightAndDropsWhatWaits) {
    Dispatcher d(one_shard());
    d.start();
    auto older = SinkSession::open(d.shard(0), "dup", /*hold_writes=*/true);
    for (const char* text : {"a", "b", "c"}) d.send("dup", make_payload(text));
    ASSERT_TRUE(
        wait_until([&] { return older->received_count() == 1 && outbound_bytes(d) == 3; }, 5s));
    auto newer = SinkSession::open(d.shard(0), "dup");
    EXPECT_EQ(older->close_code(), close_code::kReplaced);
    EXPECT_EQ(older->received_at_close(), 1);
    EXPECT_EQ(failed(d, FailureReason::session_closed), 2u);
    older->release_all();
    ASSERT_TRUE(wait_until([&] { return test::sent(d) == 1; }, 5s));
    EXPECT_EQ(older->received(), std::vector<std::string>{"a"});
    ASSERT_TRUE(wait_until([&] { return outbound_bytes(d) == 0; }, 5s));
    d.stop(1s);
}

// terminate: the message that overflows and those waiting are counted as session_closed; the
// write already in flight is on its way and completes as sent.
TEST(SessionTest, OverflowTerminateDropsWhatWaitsButFinishesTheWriteInFlight) {
    DispatcherConfig config = one_shard();
    config.session.buffer_limit = 10;
    Dispatcher d(config);
    d.start();
    auto s = SinkSession::open(d.shard(0), "slow", /*hold_writes=*/true);
    d.send("slow", make_payload("in flight"));
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 1; }, 5s));
    d.send("slow", make_payload("123456"));
    d.send("slow", make_payload("7890123"));  // 6 + 7 > 10
    ASSERT_TRUE(wait_until([&] { return s->close_code() == close_code::kPolicyViolation; }, 5s));
    EXPECT_EQ(failed(d, FailureReason::session_closed), 2u);
    s->release_all();
    ASSERT_TRUE(wait_until([&] { return test::sent(d) == 1; }, 5s));
    EXPECT_EQ(s->received(), std::vector<std::string>{"in flight"});
    ASSERT_TRUE(wait_until([&] { return outbound_bytes(d) == 0; }, 5s));
    d.stop(1s);
}

// drop_oldest with a batch of several messages in flight: buffer_limit bounds what waits, not
// what is being written, and room is made from the oldest waiting message, never from the
// batch in flight.
TEST(SessionTest, OverflowDropOldestNeverDropsFromTheBatchInFlight) {
    DispatcherConfig config = one_shard();
    config.session.buffer_limit = 10;
    config.session.overflow = OverflowPolicy::drop_oldest;
    Dispatcher d(config);
    d.start();
    auto s = open_batching(d, "slow", 3, /*hold_writes=*/true);
    d.send("slow", make_payload("0"));
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 1; }, 5s));
    for (const char* text : {"aaa", "bbb", "ccc"}) d.send("slow", make_payload(text));
    ASSERT_TRUE(wait_until([&] { return outbound_bytes(d) == 10; }, 5s));
    s->release_one();  // "0" is written; "aaa", "bbb", "ccc" go in flight as one batch
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 4; }, 5s));
    // 9 bytes in flight; 5 + 5 wait, then 3 more need room: "ddddd" goes, and 9 + 5 + 3 remain.
    for (const char* text : {"ddddd", "eeeee", "fff"}) d.send("slow", make_payload(text));
    ASSERT_TRUE(wait_until(
        [&] { return failed(d, FailureReason::overflow_dropped) == 1 && outbound_bytes(d) == 17; },
        5s))
        << "dropped " << failed(d, FailureReason::overflow_dropped) << ", bytes left "
        << outbound_bytes(d);
    s->release_all();
    ASSERT_TRUE(wait_until([&] { return test::sent(d) == 6; }, 5s));
    EXPECT_EQ(s->received(), (std::vector<std::string>{"0", "aaa", "bbb", "ccc", "eeeee", "fff"}));
    EXPECT_EQ(s->writes(), (std::vector<std::size_t>{1, 3, 2}));
    EXPECT_EQ(failed(d, FailureReason::overflow_dropped), 1u);
    EXPECT_EQ(outbound_bytes(d), 0) << "bytes counted for messages no longer queued";
    EXPECT_EQ(d.online(), 1u);
    d.stop(1s);
}

// The shard's tick finds the token run out: the session is removed and told why with 4004,
// while a session whose token still holds stays.
TEST(SessionTest, ASessionWhoseTokenExpiredIsRemovedWith4004) {
    DispatcherConfig config = one_shard();
    config.session.heartbeat_interval = 100ms;  // a tick every 12 ms
    Dispatcher d(config);
    d.start();
    auto expired = SinkSession::open(d.shard(0), "expired");
    auto valid = SinkSession::open(d.shard(0), "valid");
    valid->expire_at(Clock::now() + 1h);
    expired->expire_at(Clock::now() - 1s);
    // The removal is counted just before the close starts: wait for both.
    ASSERT_TRUE(wait_until(
        [&] {
            return cleaned(d, RemovalReason::token_expired) == 1 &&
                   expired->close_code() == close_code::kTokenExpired;
        },
        5s));
    EXPECT_FALSE(expired->aborted());
    EXPECT_EQ(valid->close_code(), 0);
    EXPECT_EQ(d.online(), 1u);
    d.stop(1s);
}

}  // namespace
}  // namespace shardcast::dispatcher
