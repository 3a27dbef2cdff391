// Resume against the real server, over real sockets: shardcast.v1 clients that reconnect with
// ?since=<offset>&epoch=<epoch> get what they missed exactly once and in order, and, when some
// of it is gone, the gap notice first, with its exact text. Malformed resume points are
// refused before anything is attached.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/test_server.hpp"
#include "tests/support/clients.hpp"
#include "tests/support/totals.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using dispatcher::EvictionReason;

const HeaderList kOfferV1{{"Sec-WebSocket-Protocol", "shardcast.v1"}};

std::shared_ptr<WsClient> connect_v1(ClientLoop& loop,
                                     std::uint16_t port,
                                     const std::string& id,
                                     const std::string& query = {}) {
    return WsClient::start(loop, port, "/ws/" + id + query, kOfferV1);
}

std::string resume_query(std::uint64_t since, const std::string& epoch) {
    return "?since=" + std::to_string(since) + "&epoch=" + epoch;
}

// The frames the server writes, as docs/protocol.md spells them.
std::string data_frame(const std::string& text, std::uint64_t offset, const std::string& epoch) {
    return R"({"data":")" + text + R"(","offset":)" + std::to_string(offset) + R"(,"epoch":")" +
           epoch + R"("})";
}
std::string gap_frame(std::uint64_t since, const std::string& epoch, const std::string& reason) {
    return R"({"gap":{"since":)" + std::to_string(since) + R"(,"epoch":")" + epoch +
           R"(","reason":")" + reason + R"("}})";
}

// A data frame read back: its message (a string here), offset and epoch.
struct Data {
    std::string text;
    std::uint64_t offset = 0;
    std::string epoch;
};
std::optional<Data> parse_data(const std::string& frame) {
    boost::system::error_code ec;
    const json::value value = json::parse(frame, ec);
    const json::object* object = value.if_object();
    if (ec || object == nullptr || !object->contains("data")) return std::nullopt;
    const json::string* text = object->at("data").if_string();
    const json::value* offset = object->if_contains("offset");
    const json::value* epoch = object->if_contains("epoch");
    if (text == nullptr || offset == nullptr || (!offset->is_uint64() && !offset->is_int64()) ||
        epoch == nullptr || !epoch->is_string()) {
        return std::nullopt;
    }
    return Data{std::string(*text), offset->to_number<std::uint64_t>(),
                std::string(epoch->get_string())};
}

void send(HttpClient& http, const std::string& id, const std::string& text) {
    ASSERT_EQ(http.post("/api/v1/send", R"({"to":")" + id + R"(","data":")" + text + "\"}").status,
              202);
}

// Whether the server has a session for the id, as GET /api/v1/clients/{id} says.
bool online(HttpClient& http, const std::string& id) {
    const auto response = http.get("/api/v1/clients/" + id);
    return response.status != 200 || json::parse(response.body).as_object().at("online").as_bool();
}

std::uint64_t held(TestServer& server) { return test::held(server.dispatcher()); }

// Sums a HistoryStats figure over the server's shards.
template <class Read>
std::uint64_t history_total(TestServer& server, Read read) {
    return total(server.dispatcher(), [&](const auto& s) { return read(s.history); });
}

// A client that connected, received its first message and went away cleanly: where it left
// off, and the epoch it was in. The server no longer has a session for it on return.
struct LeftOff {
    std::uint64_t offset = 0;
    std::string epoch;
};
LeftOff receive_one_and_leave(TestServer& server,
                              ClientLoop& loop,
                              HttpClient& http,
                              const std::string& id) {
    auto client = connect_v1(loop, server.port(), id);
    EXPECT_TRUE(client->wait_open(10s)) << client->error();
    EXPECT_EQ(client->protocol(), "shardcast.v1");
    send(http, id, "m0");
    if (!client->wait_messages(1, 10s)) {
        ADD_FAILURE() << id << " never got its first message: " << client->error();
        return {};
    }
    const std::optional<Data> first = parse_data(client->messages().at(0));
    EXPECT_TRUE(first) << client->messages().at(0);
    client->close();
    EXPECT_TRUE(client->wait_closed(10s));
    EXPECT_TRUE(wait_until([&] { return !online(http, id); }, 10s)) << id << " stayed online";
    return first ? LeftOff{first->offset, first->epoch} : LeftOff{};
}

dispatcher::DispatcherConfig history_config(std::size_t size = 100,
                                            std::chrono::milliseconds ttl = 5min) {
    dispatcher::DispatcherConfig config = test_dispatcher_config();
    config.history.size = size;
    config.history.ttl = ttl;
    return config;
}

// --- the upgrade -------------------------------------------------------------------------

TEST(ClientResumeTest, TheUpgradeSelectsShardcastV1AndDataFramesCarryOffsetAndEpoch) {
    TestServer server;
    ClientLoop loop;
    HttpClient http(server.port());
    auto client = connect_v1(loop, server.port(), "fresh");
    ASSERT_TRUE(client->wait_open(10s)) << client->error();

    send(http, "fresh", "hello");

    ASSERT_TRUE(client->wait_messages(1, 10s));
    EXPECT_EQ(client->protocol(), "shardcast.v1");
    const std::string epoch = server.dispatcher().shard_for("fresh").epoch();
    EXPECT_EQ(epoch.size(), 16u);
    EXPECT_EQ(client->messages(), std::vector<std::string>{data_frame("hello", 1, epoch)});
}

// Whatever the resume finds, the client first gets the whole 101 response: a gap notice is a
// WebSocket frame and may only follow it.
TEST(ClientResumeTest, AResumeWithAGapIsAnsweredWithThe101BeforeAnyFrame) {
    TestServer server;
    RawConnection raw(server.port());
    ASSERT_TRUE(
        raw.send("GET /ws/raw?since=1&epoch=not-this-one HTTP/1.1\r\n"
                 "Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Protocol: shardcast.v1\r\n\r\n"));

    ASSERT_TRUE(raw.read_until(
        [](std::string_view got) { return got.find("\r\n\r\n") != std::string_view::npos; }, 10s))
        << raw.received();
    EXPECT_TRUE(raw.received().starts_with("HTTP/1.1 101")) << raw.received();
}

// --- a whole resume ----------------------------------------------------------------------

TEST(ClientResumeTest, AResumeInTheSameEpochReplaysWhatCameAfterSinceThenGoesOnLive) {
    TestServer server;
    ClientLoop loop;
    HttpClient http(server.port());
    const LeftOff left = receive_one_and_leave(server, loop, http, "back");
    send(http, "back", "m1");
    send(http, "back", "m2");
    ASSERT_TRUE(wait_until([&] { return held(server) == 2; }, 10s));

    auto client = connect_v1(loop, server.port(), "back", resume_query(left.offset, left.epoch));

    ASSERT_TRUE(client->wait_open(10s)) << client->error();
    send(http, "back", "m3");
    ASSERT_TRUE(client->wait_messages(3, 10s)) << client->message_count() << " frames";
    EXPECT_EQ(client->messages(), (std::vector<std::string>{data_frame("m1", 2, left.epoch),
                                                            data_frame("m2", 3, left.epoch),
                                                            data_frame("m3", 4, left.epoch)}));
}

TEST(ClientResumeTest, ResumesAreCountedInMetricsAndStats) {
    TestServer server;
    ClientLoop loop;
    HttpClient http(server.port());
    const LeftOff left = receive_one_and_leave(server, loop, http, "counted");
    send(http, "counted", "m1");
    send(http, "counted", "m2");
    ASSERT_TRUE(wait_until([&] { return held(server) == 2; }, 10s));
    auto client = connect_v1(loop, server.port(), "counted", resume_query(left.offset, left.epoch));
    ASSERT_TRUE(client->wait_open(10s)) << client->error();
    ASSERT_TRUE(client->wait_messages(2, 10s));

    const std::string metrics = http.get("/metrics").body;
    for (const char* sample :
         {"\nshardcast_resumes_total 1\n", "\nshardcast_resume_replayed_total 2\n",
          "\nshardcast_history_messages 3\n", "\nshardcast_history_bytes 6\n",
          "\nshardcast_resume_gaps_total{reason=\"evicted\"} 0\n",
          "\nshardcast_resume_gaps_total{reason=\"epoch\"} 0\n",
          "\nshardcast_history_evicted_total{reason=\"size\"} 0\n"}) {
        EXPECT_NE(metrics.find(sample), std::string::npos) << sample << " not in\n" << metrics;
    }
    const json::value stats = json::parse(http.get("/api/v1/stats").body);
    EXPECT_EQ(stats.at("totals").at("history"),
              json::parse(R"({"bytes":6,"messages":3,)"
                          R"("evicted":{"size":0,"memory":0,"expired":0},)"
                          R"("resumes":1,"replayed":2,)"
                          R"("gaps":{"evicted":0,"expired":0,"epoch":0,"unavailable":0}})"));
}

// What the client missed is queued before its socket can take a write, so the session's
// buffer (session.buffer_limit) must not decide whether it can ever resume: here 10 KB is
// held for a client whose buffer is 8 KiB.
TEST(ClientResumeTest, AReplayLargerThanTheSessionBufferStillReachesTheClient) {
    dispatcher::DispatcherConfig config = test_dispatcher_config();
    config.session.buffer_limit = 8 * 1024;
    TestServer server(config);
    ClientLoop loop;
    HttpClient http(server.port());
    const LeftOff left = receive_one_and_leave(server, loop, http, "far-behind");
    std::vector<std::string> expected;
    for (int i = 1; i <= 10; ++i) {
        const std::string text = "m" + std::to_string(i) + ":" + std::string(1000, 'x');
        send(http, "far-behind", text);
        expected.push_back(data_frame(text, static_cast<std::uint64_t>(i + 1), left.epoch));
    }
    ASSERT_TRUE(wait_until([&] { return held(server) == 10; }, 10s));

    auto client =
        connect_v1(loop, server.port(), "far-behind", resume_query(left.offset, left.epoch));

    ASSERT_TRUE(client->wait_open(10s)) << client->error();
    ASSERT_TRUE(
        wait_until([&] { return client->message_count() >= 10 || client->close_info(); }, 10s));
    const auto closed = client->close_info();
    ASSERT_FALSE(closed) << "closed with " << closed->code << " " << closed->reason << " after "
                         << client->message_count() << " frames";
    EXPECT_EQ(client->messages(), expected);
}

// --- every message, once, in order, across reconnects ------------------------------------

// Twenty clients leave and come back over and over, half with a close handshake and half by
// cutting the connection, each resuming from the last offset it received, while sixteen
// producers send each of them numbered messages over HTTP. Every message accepted (202) for a
// client reaches it exactly once and in order, those sent while it was away included.
TEST(ClientResumeTest, ChurningClientsThatResumeGetEveryAcceptedMessageOnceAndInOrder) {
    TestServer server(history_config(/*size=*/1'000'000));
    ClientLoop loop;
    constexpr int kClients = 20;
    constexpr int kProducers = 16;
    constexpr int kRounds = 20;
    constexpr long kSentWhileAway = 3;  // at least, per absence
    auto id_of = [](int c) { return "churn-" + std::to_string(c); };

    std::mutex problems_mutex;
    std::vector<std::string> problems;
    auto problem = [&](std::string what) {
        std::lock_guard lock(problems_mutex);
        problems.push_back(std::move(what));
    };

    // Connected before any producer starts, so nothing is sent before a first connection.
    std::vector<std::shared_ptr<WsClient>> first;
    for (int c = 0; c < kClients; ++c) {
        first.push_back(connect_v1(loop, server.port(), id_of(c)));
    }
    for (auto& client : first) ASSERT_TRUE(client->wait_open(20s)) << client->error();

    // Per client: sends begun and sends accepted, over all producers.
    std::array<std::atomic<long>, kClients> begun{};
    std::array<std::atomic<long>, kClients> accepted{};
    // accepted_by[p][c]: producer p's messages "p:0", "p:1", ... accepted for client c.
    std::vector<std::vector<long>> accepted_by(kProducers, std::vector<long>(kClients, 0));
    std::atomic<bool> stop_producers{false};
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers.emplace_back([&, p] {
            HttpClient http(server.port());
            const auto deadline = std::chrono::steady_clock::now() + 120s;
            for (int c = p % kClients; !stop_producers.load(); c = (c + 1) % kClients) {
                if (std::chrono::steady_clock::now() > deadline) {
                    return problem("producer " + std::to_string(p) + " ran out of time");
                }
                const std::string text =
                    std::to_string(p) + ":" + std::to_string(accepted_by[p][c]);
                ++begun[c];
                const auto response = http.post(
                    "/api/v1/send", R"({"to":")" + id_of(c) + R"(","data":")" + text + "\"}");
                if (response.status == 202) {
                    ++accepted_by[p][c];
                    ++accepted[c];
                } else if (response.status != 429) {  // 429: refused, sent again later
                    return problem("producer " + std::to_string(p) + ": " +
                                   std::to_string(response.status) + " " + response.error);
                }
            }
        });
    }

    // Every frame each client received, over all its connections, in order.
    std::vector<std::vector<std::string>> frames(kClients);
    std::vector<std::shared_ptr<WsClient>> last(kClients);
    std::vector<std::thread> churners;
    for (int c = 0; c < kClients; ++c) {
        churners.emplace_back([&, c] {
            HttpClient http(server.port());
            const std::string id = id_of(c);
            std::shared_ptr<WsClient> client = first[c];
            for (int r = 0; r < kRounds; ++r) {
                const std::string round = id + " round " + std::to_string(r);
                // Connected: take some messages (5 to 24), then leave.
                const auto stay = static_cast<std::size_t>(5 + (7 * r + c) % 20);
                if (!client->wait_messages(stay, 20s)) {
                    return problem(round + ": got " + std::to_string(client->message_count()) +
                                   " messages, " + client->error());
                }
                if (c % 2 == 0) {
                    client->close();
                } else {
                    client->abort();
                }
                if (!client->wait_closed(10s)) return problem(round + ": never closed");
                const auto got = client->messages();
                frames[c].insert(frames[c].end(), got.begin(), got.end());
                const std::optional<Data> newest = parse_data(frames[c].back());
                if (!newest) return problem(round + ": not a data frame: " + frames[c].back());
                // Away: the server has let go, and more is accepted for the client meanwhile.
                if (!wait_until([&] { return !online(http, id); }, 10s)) {
                    return problem(round + ": the server kept the session");
                }
                const long begun_before = begun[c].load();
                if (!wait_until([&] { return accepted[c].load() >= begun_before + kSentWhileAway; },
                                20s)) {
                    return problem(round + ": nothing was sent while away");
                }
                client = connect_v1(loop, server.port(), id,
                                    resume_query(newest->offset, newest->epoch));
                if (!client->wait_open(10s)) {
                    return problem(round +
                                   ": resume refused: " + std::to_string(client->refused_status()) +
                                   " " + client->error());
                }
            }
            last[c] = client;
        });
    }
    for (auto& churner : churners) churner.join();
    stop_producers = true;
    for (auto& producer : producers) producer.join();
    for (const auto& p : problems) ADD_FAILURE() << p;
    ASSERT_TRUE(problems.empty());

    // A last message for each, after everything else: anything delivered twice comes before.
    HttpClient http(server.port());
    for (int c = 0; c < kClients; ++c) send(http, id_of(c), "end");
    for (int c = 0; c < kClients; ++c) {
        const std::string id = id_of(c);
        ASSERT_TRUE(wait_until(
            [&] {
                const auto got = last[c]->messages();
                return !got.empty() && parse_data(got.back()) &&
                       parse_data(got.back())->text == "end";
            },
            30s))
            << id << " never got its last message; " << last[c]->message_count() << " frames, "
            << last[c]->error();
        const auto got = last[c]->messages();
        frames[c].insert(frames[c].end(), got.begin(), got.end() - 1);

        std::map<std::string, long> next;  // per producer, the number expected next
        std::uint64_t previous = 0;
        std::string epoch;
        for (const std::string& frame : frames[c]) {
            const std::optional<Data> data = parse_data(frame);
            ASSERT_TRUE(data) << id << " got " << frame;
            EXPECT_GT(data->offset, previous) << id << ": offsets went back at " << frame;
            previous = data->offset;
            if (epoch.empty()) epoch = data->epoch;
            EXPECT_EQ(data->epoch, epoch) << id;
            const auto colon = data->text.find(':');
            ASSERT_NE(colon, std::string::npos) << id << " got " << frame;
            const std::string producer = data->text.substr(0, colon);
            ASSERT_EQ(std::stol(data->text.substr(colon + 1)), next[producer])
                << id << ": producer " << producer << " skipped or repeated at " << frame;
            ++next[producer];
        }
        for (int p = 0; p < kProducers; ++p) {
            EXPECT_EQ(next[std::to_string(p)], accepted_by[p][c])
                << id << ": producer " << p << "'s messages";
        }
        EXPECT_EQ(static_cast<long>(frames[c].size()), accepted[c].load()) << id;
    }
    // Each absence saw at least kSentWhileAway sends begun after the server let go.
    EXPECT_GE(held(server), static_cast<std::uint64_t>(kClients * kRounds * kSentWhileAway));
    // Held, not failed. (Messages queued for a connection that went are failed as
    // session_closed or write_error, and replayed from history.)
    EXPECT_EQ(server.failed(dispatcher::FailureReason::no_session), 0u);
    EXPECT_EQ(history_total(server, [](const auto& h) { return h.resumes.load(); }),
              static_cast<std::uint64_t>(kClients * kRounds));
    EXPECT_GE(history_total(server, [](const auto& h) { return h.replayed.load(); }), held(server));
    for (std::size_t r = 0; r < dispatcher::kGapReasonCount; ++r) {
        EXPECT_EQ(history_total(server, [&](const auto& h) { return h.gaps[r].load(); }), 0u)
            << "gap reason " << r;
    }
}

// --- gaps: each with its exact notice, ahead of what is left -----------------------------

TEST(ClientResumeTest, PastHistorySizeTheResumeGetsAnEvictedGapThenTheLastSizeMessages) {
    TestServer server(history_config(/*size=*/5));
    ClientLoop loop;
    HttpClient http(server.port());
    const LeftOff left = receive_one_and_leave(server, loop, http, "sized");
    ASSERT_EQ(left.offset, 1u);
    for (int i = 1; i <= 8; ++i) send(http, "sized", "m" + std::to_string(i));
    ASSERT_TRUE(wait_until([&] { return held(server) == 8; }, 10s));

    auto client = connect_v1(loop, server.port(), "sized", resume_query(left.offset, left.epoch));

    ASSERT_TRUE(client->wait_open(10s)) << client->error();
    send(http, "sized", "live");
    ASSERT_TRUE(client->wait_messages(7, 10s)) << client->message_count() << " frames";
    std::vector<std::string> expected{gap_frame(1, left.epoch, "evicted")};
    for (int i = 4; i <= 8; ++i) {
        expected.push_back(
            data_frame("m" + std::to_string(i), static_cast<std::uint64_t>(i + 1), left.epoch));
    }
    expected.push_back(data_frame("live", 10, left.epoch));
    EXPECT_EQ(client->messages(), expected);
}

TEST(ClientResumeTest, PastHistoryTtlTheResumeGetsAnExpiredGap) {
    TestServer server(history_config(/*size=*/100, /*ttl=*/300ms));
    ClientLoop loop;
    HttpClient http(server.port());
    const LeftOff left = receive_one_and_leave(server, loop, http, "late");
    send(http, "late", "m1");
    const dispatcher::Shard& shard = server.dispatcher().shard_for("late");
    const auto expired = [&] {
        return shard.stats().history.evicted[enum_index(EvictionReason::expired)].load();
    };
    ASSERT_TRUE(wait_until([&] { return expired() == 2; }, 10s)) << expired() << " expired";

    auto client = connect_v1(loop, server.port(), "late", resume_query(left.offset, left.epoch));

    ASSERT_TRUE(client->wait_open(10s)) << client->error();
    send(http, "late", "live");
    ASSERT_TRUE(client->wait_messages(2, 10s)) << client->message_count() << " frames";
    EXPECT_EQ(client->messages(), (std::vector<std::string>{gap_frame(1, left.epoch, "expired"),
                                                            data_frame("live", 3, left.epoch)}));
}

TEST(ClientResumeTest, FromAnotherEpochTheResumeGetsAnEpochGapThenEverythingHeld) {
    TestServer server;
    ClientLoop loop;
    HttpClient http(server.port());
    const LeftOff left = receive_one_and_leave(server, loop, http, "lost");
    send(http, "lost", "m1");
    send(http, "lost", "m2");
    ASSERT_TRUE(wait_until([&] { return held(server) == 2; }, 10s));

    auto client = connect_v1(loop, server.port(), "lost", resume_query(left.offset, "elsewhere"));

    ASSERT_TRUE(client->wait_open(10s)) << client->error();
    ASSERT_TRUE(client->wait_messages(4, 10s)) << client->message_count() << " frames";
    EXPECT_EQ(client->messages(),
              (std::vector<std::string>{
                  gap_frame(1, "elsewhere", "epoch"), data_frame("m0", 1, left.epoch),
                  data_frame("m1", 2, left.epoch), data_frame("m2", 3, left.epoch)}));
}

// A restarted server draws new epochs: the old one is unknown to it.
TEST(ClientResumeTest, AfterARestartTheResumeGetsAnEpochGapThenWhatTheNewServerHolds) {
    ClientLoop loop;
    LeftOff left;
    {
        TestServer before;
        HttpClient http(before.port());
        left = receive_one_and_leave(before, loop, http, "restarted");
    }
    TestServer after;
    HttpClient http(after.port());
    send(http, "restarted", "since the restart");
    ASSERT_TRUE(wait_until([&] { return held(after) == 1; }, 10s));
    const std::string epoch = after.dispatcher().shard_for("restarted").epoch();
    ASSERT_NE(epoch, left.epoch);

    auto client =
        connect_v1(loop, after.port(), "restarted", resume_query(left.offset, left.epoch));

    ASSERT_TRUE(client->wait_open(10s)) << client->error();
    ASSERT_TRUE(client->wait_messages(2, 10s)) << client->message_count() << " frames";
    EXPECT_EQ(client->messages(),
              (std::vector<std::string>{gap_frame(1, left.epoch, "epoch"),
                                        data_frame("since the restart", 1, epoch)}));
}

// Without history nothing carries a position; a client resuming from one it kept from
// elsewhere (an earlier server) learns that nothing is held, and live frames have none.
TEST(ClientResumeTest, WithoutHistoryTheResumeGetsAnUnavailableGapAndNothingReplayed) {
    dispatcher::DispatcherConfig config = test_dispatcher_config();
    config.history.enabled = false;
    TestServer server(config);
    ClientLoop loop;
    HttpClient http(server.port());
    auto first = connect_v1(loop, server.port(), "forgetful");
    ASSERT_TRUE(first->wait_open(10s)) << first->error();
    send(http, "forgetful", "m0");
    ASSERT_TRUE(first->wait_messages(1, 10s));
    EXPECT_EQ(first->messages(), std::vector<std::string>{R"({"data":"m0"})"});
    first->close();
    ASSERT_TRUE(first->wait_closed(10s));
    ASSERT_TRUE(wait_until([&] { return !online(http, "forgetful"); }, 10s));
    send(http, "forgetful", "lost");
    ASSERT_TRUE(
        wait_until([&] { return server.failed(dispatcher::FailureReason::no_session) == 1; }, 10s));

    auto client = connect_v1(loop, server.port(), "forgetful", resume_query(7, "elsewhere"));

    ASSERT_TRUE(client->wait_open(10s)) << client->error();
    send(http, "forgetful", "live");
    ASSERT_TRUE(client->wait_messages(2, 10s)) << client->message_count() << " frames";
    EXPECT_EQ(
        client->messages(),
        (std::vector<std::string>{gap_frame(7, "elsewhere", "unavailable"), R"({"data":"live"})"}));
}

// --- malformed resume points -------------------------------------------------------------

struct BadResume {
    const char* name;
    const char* query;
    const char* problem;  // in the 400's body
};

// A plain client never sees an offset, so it has none to resume from.
TEST(ClientResumeTest, AResumeWithoutShardcastV1IsRefusedWith400AndCountedAsBadResume) {
    TestServer server;
    ClientLoop loop;
    auto client = WsClient::start(loop, server.port(), "/ws/plain" + resume_query(1, "abc"));

    EXPECT_FALSE(client->wait_open(10s)) << "upgraded";
    EXPECT_EQ(client->refused_status(), 400);
    EXPECT_EQ(server.server().stats().refusals(transport::UpgradeRefusal::bad_resume), 1u);
}

void PrintTo(const BadResume& bad, std::ostream* out) { *out << bad.query; }

class MalformedResumeTest : public testing::TestWithParam<BadResume> {};

TEST_P(MalformedResumeTest, IsRefusedWith400AndCountedAsBadResume) {
    TestServer server;
    ClientLoop loop;
    auto client = connect_v1(loop, server.port(), "malformed", GetParam().query);

    EXPECT_FALSE(client->wait_open(10s)) << "upgraded";
    EXPECT_EQ(client->refused_status(), 400);
    EXPECT_NE(client->refused_body().find(GetParam().problem), std::string::npos)
        << client->refused_body();
    EXPECT_EQ(server.server().stats().refusals(transport::UpgradeRefusal::bad_resume), 1u);
    EXPECT_EQ(server.dispatcher().online(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    ClientResumeTest,
    MalformedResumeTest,
    testing::Values(
        BadResume{"SinceWithoutEpoch", "?since=5", "resume needs since and epoch"},
        BadResume{"NonNumericSince", "?since=five&epoch=abc", "since must be an offset"},
        BadResume{"EpochWithBadCharacters", "?since=5&epoch=a%2Fb", "epoch must be 1-64"},
        BadResume{"SinceWithABrokenEscape", "?since=%zz", "since"}),
    [](const testing::TestParamInfo<BadResume>& param_info) {
        return std::string(param_info.param.name);
    });

}  // namespace
}  // namespace shardcast::test
