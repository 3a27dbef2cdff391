// PublishAck and Dispatcher::when_taken: a producer hears that its messages were taken only
// once every shard they went to has written them, and hears it once.
#include "dispatcher/publish_ack.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "dispatcher/dispatcher.hpp"
#include "tests/support/config_with.hpp"
#include "tests/support/hold_shard.hpp"
#include "tests/support/sink_session.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::dispatcher {
namespace {

using test::config_with;
using test::hold_shard;
using test::SinkSession;
using test::wait_until;
using namespace std::chrono_literals;

// What done was called with, and how often.
struct Outcome {
    std::atomic<int> calls{0};
    std::atomic<bool> taken{false};
    PublishAck::Done recorder() {
        return [this](bool t) {
            taken.store(t);
            ++calls;
        };
    }
};

TEST(PublishAckTest, TakenOnlyWhenEveryShardTookIt) {
    Outcome outcome;
    auto ack = std::make_shared<PublishAck>(2, outcome.recorder());
    ack->taken();
    ack.reset();
    EXPECT_EQ(outcome.calls.load(), 1);
    EXPECT_FALSE(outcome.taken.load());
}

TEST(PublishAckTest, RunsDoneOnceWhenTheLastReferenceGoes) {
    Outcome outcome;
    auto ack = std::make_shared<PublishAck>(2, outcome.recorder());
    auto other = ack;
    ack->taken();
    other->taken();
    ack.reset();
    EXPECT_EQ(outcome.calls.load(), 0);
    other.reset();
    EXPECT_EQ(outcome.calls.load(), 1);
    EXPECT_TRUE(outcome.taken.load());
}

TEST(PublishAckTest, WaitsForTheShardAndAnswersAfterTheWrite) {
    Dispatcher d(config_with(1));
    d.start();
    auto s = SinkSession::open(d.shard(0), "a");
    std::promise<void> gate;
    hold_shard(d.shard(0), gate.get_future().share()).wait();
    d.send("a", make_payload("hello"));
    std::promise<std::size_t> received_then;
    d.when_taken({0}, [&](bool taken) {
        EXPECT_TRUE(taken);
        received_then.set_value(s->received_count());
    });
    auto answer = received_then.get_future();
    EXPECT_EQ(answer.wait_for(100ms), std::future_status::timeout);
    gate.set_value();
    ASSERT_EQ(answer.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(answer.get(), 1u);
    d.stop(1s);
}

TEST(PublishAckTest, ABroadcastIsTakenWhenTheLastShardTookIt) {
    Dispatcher d(config_with(2));
    d.start();
    std::promise<void> gate;
    hold_shard(d.shard(1), gate.get_future().share()).wait();
    Outcome outcome;
    d.broadcast(make_payload("all"));
    d.when_taken({0, 1}, outcome.recorder());
    std::this_thread::sleep_for(100ms);  // shard 0 has long taken its ack
    EXPECT_EQ(outcome.calls.load(), 0);
    gate.set_value();
    ASSERT_TRUE(wait_until([&] { return outcome.calls.load() == 1; }, 5s));
    EXPECT_TRUE(outcome.taken.load());
    d.stop(1s);
    EXPECT_EQ(outcome.calls.load(), 1);
}

TEST(PublishAckTest, NothingIsTakenOnceStopHasBegun) {
    Dispatcher d(config_with(1));
    d.start();
    d.stop(1s);
    Outcome outcome;
    d.when_taken({0}, outcome.recorder());
    EXPECT_EQ(outcome.calls.load(), 1);
    EXPECT_FALSE(outcome.taken.load());
}

// An ack delivered once the shard has begun closing its sessions: what came before it reached
// no one, and the producer must not hear otherwise. A budget of one command per turn puts the
// turn that reaches the ack behind the stop.
TEST(PublishAckTest, AnAckReachedWhileClosingIsNotTaken) {
    DispatcherConfig config = config_with(1);
    config.drain_budget = 1;
    Dispatcher d(config);
    d.start();
    std::promise<void> gate;
    hold_shard(d.shard(0), gate.get_future().share()).wait();
    Outcome outcome;
    d.send("a", make_payload("first"));
    d.when_taken({0}, outcome.recorder());
    std::thread stopping([&] { d.stop(0ms); });
    ASSERT_TRUE(wait_until([&] { return !d.accepting(); }, 5s));
    std::this_thread::sleep_for(20ms);  // stop() posts the shard's stop right after
    gate.set_value();
    stopping.join();
    EXPECT_EQ(outcome.calls.load(), 1);
    EXPECT_FALSE(outcome.taken.load());
}

}  // namespace
}  // namespace shardcast::dispatcher
