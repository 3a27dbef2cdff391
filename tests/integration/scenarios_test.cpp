// The four scenarios the usual fixes were validated with, against the real server over
// real sockets, with exact assertions. Also run under ThreadSanitizer.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/test_server.hpp"
#include "tests/support/clients.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::test {
namespace {

using namespace std::chrono_literals;
using dispatcher::make_payload;

// Checks that, per producer, the messages "producer:seq" a client got are 0, 1, 2, ...
void expect_per_producer_order(const std::vector<std::string>& messages, const std::string& who) {
    std::map<std::string, long> next;
    for (const auto& m : messages) {
        const auto colon = m.find(':');
        ASSERT_NE(colon, std::string::npos) << who << " got " << m;
        const std::string producer = m.substr(0, colon);
        const long seq = std::stol(m.substr(colon + 1));
        ASSERT_EQ(seq, next[producer]) << who << ": producer " << producer << " out of order";
        ++next[producer];
    }
}

TEST(ScenariosTest, TwoThousandClientsConnectAtOnceAndAllGetABroadcast) {
    TestServer server;
    ClientLoop loop;
    constexpr int kClients = 2000;
    std::vector<std::shared_ptr<WsClient>> clients;
    for (int i = 0; i < kClients; ++i) {
        clients.push_back(WsClient::start(loop, server.port(), "/ws/crowd-" + std::to_string(i)));
    }
    auto open_count = [&] {
        int n = 0;
        for (auto& c : clients) n += c->is_open();
        return n;
    };
    ASSERT_TRUE(wait_until([&] { return open_count() == kClients; }, 120s))
        << open_count() << " open";
    ASSERT_TRUE(wait_until([&] { return server.dispatcher().online() == kClients; }, 30s));

    HttpClient http(server.port());
    ASSERT_EQ(http.post("/api/v1/broadcast", R"({"data":"hello everyone"})").status, 202);
    for (auto& c : clients) {
        ASSERT_TRUE(c->wait_messages(1, 30s));
        EXPECT_EQ(c->messages(), std::vector<std::string>{"hello everyone"});
    }
    // A client can read a frame before the server's write completion has counted it.
    EXPECT_TRUE(wait_until([&] { return server.sent() == kClients; }, 10s)) << server.sent();
    EXPECT_EQ(server.failed_total(), 0u);
}

TEST(ScenariosTest, ChurningClientsGetEveryMessageSentWhileConnectedAndLeaveNoStaleSession) {
    TestServer server;
    ClientLoop loop;
    constexpr int kStable = 10;
    constexpr int kChurners = 16;
    constexpr int kRounds = 12;
    constexpr int kPerRound = 5;

    std::vector<std::shared_ptr<WsClient>> stable;
    for (int i = 0; i < kStable; ++i) {
        stable.push_back(WsClient::start(loop, server.port(), "/ws/stable-" + std::to_string(i)));
        ASSERT_TRUE(stable.back()->wait_open(10s));
    }

    // Noise from other threads, to stable and churning ids alike, for the whole test.
    std::atomic<bool> stop_noise{false};
    std::atomic<long> stable_noise{0};
    std::vector<std::thread> noise;
    for (int t = 0; t < 4; ++t) {
        noise.emplace_back([&, t] {
            std::mt19937 rng(t);
            while (!stop_noise.load()) {
                if (rng() % 2 == 0) {
                    server.dispatcher().send("stable-" + std::to_string(rng() % kStable),
                                             make_payload("noise"));
                    ++stable_noise;
                } else {
                    server.dispatcher().send("churn-" + std::to_string(rng() % kChurners),
                                             make_payload("noise"));
                }
                std::this_thread::sleep_for(200us);
            }
        });
    }

    std::mutex problems_mutex;
    std::vector<std::string> problems;
    auto problem = [&](std::string what) {
        std::lock_guard lock(problems_mutex);
        problems.push_back(std::move(what));
    };
    std::vector<std::thread> churners;
    for (int k = 0; k < kChurners; ++k) {
        churners.emplace_back([&, k] {
            const std::string id = "churn-" + std::to_string(k);
            for (int r = 0; r < kRounds; ++r) {
                const std::string round = id + " round " + std::to_string(r);
                auto client = WsClient::start(loop, server.port(), "/ws/" + id);
                if (!client->wait_open(10s)) {
                    return problem(round + ": never opened: " + client->error());
                }
                // Sent while connected: every one must arrive, in order, on this connection.
                for (int j = 0; j < kPerRound; ++j) {
                    server.dispatcher().send(
                        id, make_payload(std::to_string(r) + "/" + std::to_string(j)));
                }
                auto mine = [&] {
                    std::vector<std::string> out;
                    for (const auto& m : client->messages()) {
                        if (m != "noise") out.push_back(m);
                    }
                    return out;
                };
                if (!wait_until([&] { return mine().size() == kPerRound; }, 10s)) {
                    auto info = client->close_info();
                    problem(round + ": got " + std::to_string(mine().size()) + " of " +
                            std::to_string(kPerRound) + ", closed with " +
                            (info ? std::to_string(info->code) : std::string("-")) + " " +
                            client->error());
                }
                const auto got = mine();
                for (int j = 0; j < kPerRound && j < static_cast<int>(got.size()); ++j) {
                    if (got[j] != std::to_string(r) + "/" + std::to_string(j)) {
                        problem(round + ": message " + std::to_string(j) + " was " + got[j]);
                    }
                }
                client->close();
                if (!client->wait_closed(10s)) problem(round + ": close did not finish");
            }
        });
    }
    for (auto& c : churners) c.join();
    stop_noise = true;
    for (auto& n : noise) n.join();

    for (const auto& p : problems) ADD_FAILURE() << p;
    // No stale session: only the stable clients are left online.
    ASSERT_TRUE(wait_until([&] { return server.dispatcher().online() == kStable; }, 10s))
        << server.dispatcher().online() << " online";
    long stable_received = 0;
    ASSERT_TRUE(wait_until(
        [&] {
            stable_received = 0;
            for (auto& c : stable) stable_received += static_cast<long>(c->message_count());
            return stable_received == stable_noise.load();
        },
        10s))
        << stable_received << " of " << stable_noise.load();
    for (auto& c : stable) EXPECT_TRUE(c->is_open());
}

TEST(ScenariosTest, SixteenProducersPushOneHundredThousandMessagesToOneHundredClients) {
    TestServer server;
    ClientLoop loop;
    constexpr int kClients = 100;
    constexpr int kProducers = 16;
    constexpr int kMessages = 100'000;
    std::vector<std::shared_ptr<WsClient>> clients;
    for (int i = 0; i < kClients; ++i) {
        clients.push_back(WsClient::start(loop, server.port(), "/ws/hf-" + std::to_string(i)));
    }
    for (auto& c : clients) ASSERT_TRUE(c->wait_open(20s));

    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers.emplace_back([&, p] {
            std::vector<long> seq(kClients, 0);
            for (int i = p; i < kMessages; i += kProducers) {
                const int c = (i / kProducers + p) % kClients;
                server.dispatcher().send(
                    "hf-" + std::to_string(c),
                    make_payload(std::to_string(p) + ":" + std::to_string(seq[c]++)));
            }
        });
    }
    for (auto& p : producers) p.join();

    auto received = [&] {
        std::size_t n = 0;
        for (auto& c : clients) n += c->message_count();
        return n;
    };
    ASSERT_TRUE(wait_until([&] { return received() == kMessages; }, 120s)) << received();
    for (int i = 0; i < kClients; ++i) {
        expect_per_producer_order(clients[i]->messages(), "hf-" + std::to_string(i));
    }
    EXPECT_EQ(server.failed_total(), 0u);
    EXPECT_TRUE(wait_until([&] { return server.sent() == kMessages; }, 10s)) << server.sent();
}

TEST(ScenariosTest, SequentialHttpPublishesOverManyKeepAliveConnectionsKeepOrder) {
    TestServer server;
    ClientLoop loop;
    constexpr int kClients = 100;
    constexpr int kConnections = 16;
    constexpr int kPerConnection = 1000;
    std::vector<std::shared_ptr<WsClient>> clients;
    for (int i = 0; i < kClients; ++i) {
        clients.push_back(WsClient::start(loop, server.port(), "/ws/api-" + std::to_string(i)));
    }
    for (auto& c : clients) ASSERT_TRUE(c->wait_open(20s));

    std::atomic<int> not_accepted{0};
    std::vector<std::thread> publishers;
    for (int p = 0; p < kConnections; ++p) {
        publishers.emplace_back([&, p] {
            HttpClient http(server.port());
            std::vector<long> seq(kClients, 0);
            for (int i = 0; i < kPerConnection; ++i) {
                const int c = (i + p) % kClients;
                const std::string body = R"({"to":"api-)" + std::to_string(c) + R"(","data":")" +
                                         std::to_string(p) + ":" + std::to_string(seq[c]++) + "\"}";
                if (http.post("/api/v1/send", body).status != 202) ++not_accepted;
            }
        });
    }
    for (auto& p : publishers) p.join();
    EXPECT_EQ(not_accepted.load(), 0);

    constexpr std::size_t kTotal = kConnections * kPerConnection;
    auto received = [&] {
        std::size_t n = 0;
        for (auto& c : clients) n += c->message_count();
        return n;
    };
    ASSERT_TRUE(wait_until([&] { return received() == kTotal; }, 60s)) << received();
    for (int i = 0; i < kClients; ++i) {
        expect_per_producer_order(clients[i]->messages(), "api-" + std::to_string(i));
    }
    EXPECT_EQ(server.failed_total(), 0u);
}

// The original TEXT_FULL_WRITING bug: many threads writing to one session at once.
TEST(ScenariosTest, ThirtyTwoThreadsSendingToOneClientAtOnceAllArrive) {
    TestServer server;
    ClientLoop loop;
    auto client = WsClient::start(loop, server.port(), "/ws/the-one");
    ASSERT_TRUE(client->wait_open(10s));
    constexpr int kThreads = 32;
    constexpr int kPerThread = 500;
    std::atomic<bool> go{false};
    std::vector<std::thread> producers;
    for (int t = 0; t < kThreads; ++t) {
        producers.emplace_back([&, t] {
            while (!go.load()) std::this_thread::yield();
            for (int i = 0; i < kPerThread; ++i) {
                server.dispatcher().send("the-one",
                                         make_payload(std::to_string(t) + ":" + std::to_string(i)));
            }
        });
    }
    go = true;
    for (auto& p : producers) p.join();
    ASSERT_TRUE(client->wait_messages(kThreads * kPerThread, 60s)) << client->message_count();
    expect_per_producer_order(client->messages(), "the-one");
    EXPECT_TRUE(client->is_open());
    EXPECT_EQ(server.failed_total(), 0u);
    EXPECT_EQ(client->error(), "");
}

}  // namespace
}  // namespace shardcast::test
