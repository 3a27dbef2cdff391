// Many producer threads against the dispatcher with in-memory sessions: nothing lost, no
// write ever overlaps another, and publish order holds. Also run under ThreadSanitizer.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "dispatcher/dispatcher.hpp"
#include "tests/support/hold_shard.hpp"
#include "tests/support/sink_session.hpp"
#include "tests/support/totals.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::dispatcher {
namespace {

using test::hold_shard;
using test::SinkSession;
using test::wait_until;
using namespace std::chrono_literals;

TEST(DispatcherConcurrencyTest, ManyProducersOneSessionNeverOverlapWrites) {
    DispatcherConfig config;
    config.shards = 2;
    Dispatcher d(config);
    d.start();
    auto s = SinkSession::open(d.shard_for("hot"), "hot");
    constexpr int kThreads = 32;
    constexpr int kPerThread = 500;
    std::vector<std::thread> producers;
    for (int t = 0; t < kThreads; ++t) {
        producers.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                d.send("hot", make_payload(std::to_string(t) + ":" + std::to_string(i)));
            }
        });
    }
    for (auto& p : producers) p.join();
    ASSERT_TRUE(wait_until([&] { return s->received_count() == kThreads * kPerThread; }, 30s))
        << "received " << s->received_count();
    EXPECT_EQ(s->violations(), 0);
    // Per producer, order is kept.
    std::vector<int> next(kThreads, 0);
    for (const auto& m : s->received()) {
        const auto colon = m.find(':');
        const int t = std::stoi(m.substr(0, colon));
        ASSERT_EQ(std::stoi(m.substr(colon + 1)), next[t]) << "producer " << t << " reordered";
        ++next[t];
    }
    d.stop(1s);
}

// A token ring passes the right to publish between threads, so each publish returns before
// the next one begins, each from a different thread than the last. The client must see the
// exact sequence: the cross-producer ordering guarantee moodycamel alone does not give.
TEST(DispatcherConcurrencyTest, PublishThatReturnedFirstIsDeliveredFirstAcrossThreads) {
    DispatcherConfig config;
    config.shards = 2;
    Dispatcher d(config);
    d.start();
    auto s = SinkSession::open(d.shard_for("ordered"), "ordered");
    constexpr int kThreads = 4;
    constexpr int kMessages = 20000;
    std::atomic<int> turn{0};
    std::vector<std::thread> producers;
    for (int t = 0; t < kThreads; ++t) {
        producers.emplace_back([&, t] {
            for (;;) {
                int n = turn.load(std::memory_order_acquire);
                if (n >= kMessages) return;
                if (n % kThreads != t) {
                    std::this_thread::yield();
                    continue;
                }
                d.send("ordered", make_payload(std::to_string(n)));
                turn.store(n + 1, std::memory_order_release);
            }
        });
    }
    for (auto& p : producers) p.join();
    ASSERT_TRUE(wait_until([&] { return s->received_count() == kMessages; }, 60s));
    const auto received = s->received();
    for (int i = 0; i < kMessages; ++i) {
        ASSERT_EQ(received[i], std::to_string(i)) << "delivered out of publish order at " << i;
    }
    d.stop(1s);
}

// A drain turn pops at most 64Ki commands. Popping starts from the newest producer, so a
// newer thread's backlog of more than that fills a turn's pops while an older thread's
// command waits. B below was published after A had returned, from the newer thread: a turn
// that delivered what it had popped before finding every producer empty delivered B first.
TEST(DispatcherConcurrencyTest, PublishOrderHoldsWhenABacklogExceedsOneTurnsPops) {
    DispatcherConfig config;
    config.shards = 1;
    config.history.enabled = false;  // sends to "nobody" must count as no_session, not held
    Dispatcher d(config);
    d.start();
    auto s = SinkSession::open(d.shard(0), "c");
    std::promise<void> older_go;
    std::promise<void> older_done;
    std::thread older([&] {
        d.send("nobody", make_payload("makes this thread the older producer"));
        older_go.get_future().wait();
        d.send("c", make_payload("A"));
        older_done.set_value();
    });
    ASSERT_TRUE(wait_until([&] { return test::failed(d, FailureReason::no_session) == 1; }, 5s));
    std::promise<void> gate;
    hold_shard(d.shard(0), gate.get_future().share()).wait();
    std::thread newer([&] {
        d.send("nobody", make_payload("makes this thread the newer producer"));
        older_go.set_value();
        older_done.get_future().wait();
        d.send("c", make_payload("B"));  // begun after A's publish returned
        for (int i = 0; i < 70'000; ++i) d.send("nobody", make_payload("backlog"));
    });
    newer.join();
    older.join();
    gate.set_value();
    ASSERT_TRUE(wait_until([&] { return s->received_count() == 2; }, 30s));
    EXPECT_EQ(s->received(), (std::vector<std::string>{"A", "B"}));
    ASSERT_TRUE(wait_until([&] { return d.shard(0).queue_depth() == 0; }, 30s));
    EXPECT_EQ(test::failed(d, FailureReason::no_session), 70'002u);
    d.stop(1s);
}

// Producers start a backlog's clock and the shards move and clear it, one atomic per shard,
// while a reader asks for its age throughout (ThreadSanitizer watches all three): once every
// publish is delivered, no shard is left with an age that would refuse the next publish.
TEST(DispatcherConcurrencyTest, QueueDelayIsZeroOnceProducersAndShardsAreDone) {
    DispatcherConfig config;
    config.shards = 2;
    config.drain_budget = 8;  // many turns, so the shards move the mark often
    Dispatcher d(config);
    d.start();
    constexpr int kThreads = 8;
    constexpr int kPerThread = 2000;
    std::atomic<bool> producing{true};
    std::atomic<std::uint64_t> overloaded{0};
    std::thread reader([&] {
        while (producing.load(std::memory_order_relaxed)) {
            if (d.overload_of_any()) overloaded.fetch_add(1, std::memory_order_relaxed);
        }
    });
    std::vector<std::thread> producers;
    for (int t = 0; t < kThreads; ++t) {
        producers.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                d.send("id" + std::to_string((t * kPerThread + i) % 64), make_payload("m"));
            }
        });
    }
    for (auto& p : producers) p.join();
    producing.store(false, std::memory_order_relaxed);
    reader.join();
    ASSERT_TRUE(wait_until([&] { return test::held(d) == kThreads * kPerThread; }, 30s))
        << "held " << test::held(d);
    for (std::size_t i = 0; i < d.shard_count(); ++i) {
        EXPECT_TRUE(wait_until(
            [&] { return d.shard(i).queue_delay(Clock::now()) == Clock::duration::zero(); }, 5s))
            << "shard " << i << " kept an age with nothing waiting";
    }
    EXPECT_FALSE(d.overload_of_any());
    d.stop(1s);
}

TEST(DispatcherConcurrencyTest, BroadcastsAndSendsFromManyThreadsAllArrive) {
    DispatcherConfig config;
    config.shards = 3;
    Dispatcher d(config);
    d.start();
    std::vector<std::shared_ptr<SinkSession>> sessions;
    for (int i = 0; i < 30; ++i) {
        std::string id = "s" + std::to_string(i);
        sessions.push_back(SinkSession::open(d.shard_for(id), id));
    }
    constexpr int kThreads = 8;
    constexpr int kPerThread = 300;
    std::vector<std::thread> producers;
    for (int t = 0; t < kThreads; ++t) {
        producers.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                if (i % 10 == 0) {
                    d.broadcast(make_payload("b"));
                } else {
                    d.send("s" + std::to_string((t * kPerThread + i) % 30), make_payload("t"));
                }
            }
        });
    }
    for (auto& p : producers) p.join();
    const std::size_t broadcasts = kThreads * kPerThread / 10;
    const std::size_t sends = kThreads * kPerThread - broadcasts;
    const std::size_t expected = broadcasts * 30 + sends;
    auto total = [&] {
        std::size_t n = 0;
        for (auto& s : sessions) n += s->received_count();
        return n;
    };
    ASSERT_TRUE(wait_until([&] { return total() == expected; }, 30s))
        << total() << " of " << expected;
    for (auto& s : sessions) EXPECT_EQ(s->violations(), 0);
    d.stop(1s);
}

}  // namespace
}  // namespace shardcast::dispatcher
