// Slow and half-open clients over real sockets: the overflow policy, the send time limit and
// the heartbeat each remove the bad client, while a client on the same shard keeps receiving.
#include <gtest/gtest.h>

#include <future>
#include <string>
#include <vector>

#include "tests/integration/test_server.hpp"
#include "tests/support/clients.hpp"
#include "tests/support/hold_shard.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::test {
namespace {

using namespace std::chrono_literals;
using dispatcher::make_payload;
using dispatcher::RemovalReason;

// An id that lives on the same shard as `other`, so the test proves the shard stays healthy.
std::string neighbour_of(const TestServer& server, const std::string& other) {
    const auto& router = const_cast<TestServer&>(server).dispatcher().router();
    for (int i = 0;; ++i) {
        std::string id = "neighbour-" + std::to_string(i);
        if (router.shard_of(id) == router.shard_of(other)) return id;
    }
}

// Floods the stalled client while sending numbered messages to the neighbour, which must
// get every one of them.
void flood_and_check_neighbour(TestServer& server,
                               const std::string& slow_id,
                               WsClient& neighbour,
                               const dispatcher::Payload& chunk,
                               int chunks) {
    for (int i = 0; i < chunks; ++i) {
        server.dispatcher().send(slow_id, chunk);
        server.dispatcher().send(neighbour_of(server, slow_id), make_payload(std::to_string(i)));
    }
    ASSERT_TRUE(neighbour.wait_messages(static_cast<std::size_t>(chunks), 30s))
        << neighbour.message_count();
    const auto got = neighbour.messages();
    for (int i = 0; i < chunks; ++i) ASSERT_EQ(got[i], std::to_string(i));
}

TEST(SlowClientTest, OverflowTerminatesTheSlowClientOnly) {
    auto config = test_dispatcher_config();
    config.session.buffer_limit = 256 * 1024;
    config.session.close_timeout = 200ms;
    TestServer server(config);
    ClientLoop loop;
    StalledClient slow(server.port(), "/ws/slow");
    auto neighbour = WsClient::start(loop, server.port(), "/ws/" + neighbour_of(server, "slow"));
    ASSERT_TRUE(neighbour->wait_open(5s));

    flood_and_check_neighbour(server, "slow", *neighbour, make_payload(std::string(64 * 1024, 'x')),
                              300);
    ASSERT_TRUE(wait_until([&] { return server.cleaned(RemovalReason::overflow) == 1; }, 10s));
    EXPECT_TRUE(slow.wait_server_closed(10s));
    EXPECT_EQ(server.dispatcher().online(), 1u);
    EXPECT_TRUE(neighbour->is_open());
}

TEST(SlowClientTest, OverflowDropOldestKeepsTheSlowClientAndCountsDrops) {
    auto config = test_dispatcher_config();
    config.session.buffer_limit = 256 * 1024;
    config.session.overflow = dispatcher::OverflowPolicy::drop_oldest;
    config.session.send_time_limit = 60s;
    TestServer server(config);
    ClientLoop loop;
    StalledClient slow(server.port(), "/ws/slow");
    auto neighbour = WsClient::start(loop, server.port(), "/ws/" + neighbour_of(server, "slow"));
    ASSERT_TRUE(neighbour->wait_open(5s));

    flood_and_check_neighbour(server, "slow", *neighbour, make_payload(std::string(64 * 1024, 'x')),
                              300);
    ASSERT_TRUE(wait_until(
        [&] { return server.failed(dispatcher::FailureReason::overflow_dropped) > 0; }, 10s));
    EXPECT_EQ(server.cleaned(RemovalReason::overflow), 0u);
    EXPECT_EQ(server.dispatcher().online(), 2u);
}

TEST(SlowClientTest, StuckWriteHitsTheSendTimeLimit) {
    auto config = test_dispatcher_config();
    config.session.buffer_limit = 256 * 1024 * 1024;
    config.session.send_time_limit = 300ms;
    TestServer server(config);
    ClientLoop loop;
    StalledClient slow(server.port(), "/ws/stuck");
    auto neighbour = WsClient::start(loop, server.port(), "/ws/" + neighbour_of(server, "stuck"));
    ASSERT_TRUE(neighbour->wait_open(5s));

    flood_and_check_neighbour(server, "stuck", *neighbour,
                              make_payload(std::string(1024 * 1024, 'y')), 40);
    ASSERT_TRUE(wait_until([&] { return server.cleaned(RemovalReason::send_timeout) == 1; }, 10s));
    EXPECT_TRUE(slow.wait_server_closed(10s));
    EXPECT_GE(server.failed(dispatcher::FailureReason::send_timeout), 1u);
    EXPECT_TRUE(neighbour->is_open());
}

TEST(SlowClientTest, HalfOpenClientIsRemovedAfterTheHeartbeatTimeout) {
    auto config = test_dispatcher_config();
    config.session.heartbeat_interval = 100ms;
    config.session.heartbeat_timeout = 400ms;
    TestServer server(config);
    ClientLoop loop;
    StalledClient silent(server.port(), "/ws/silent");
    auto healthy = WsClient::start(loop, server.port(), "/ws/healthy");
    ASSERT_TRUE(healthy->wait_open(5s));
    ASSERT_TRUE(
        wait_until([&] { return server.cleaned(RemovalReason::heartbeat_timeout) == 1; }, 10s));
    EXPECT_TRUE(silent.wait_server_closed(10s));
    // The client that answers pings is still there.
    EXPECT_EQ(server.dispatcher().online(), 1u);
    EXPECT_TRUE(healthy->is_open());
}

// A pong owed while a write is stalled rides in the next write. When a second ping arrives
// while that write is in turn stalled, its pong must echo the second ping's payload
// (RFC 6455, 5.5.3), not go out empty once the first pong's write completes.
TEST(SlowClientTest, EachPongEchoesItsPingWhileWritesStall) {
    auto config = test_dispatcher_config();
    config.shards = 1;
    config.session.socket_send_buffer = 4096;
    config.session.buffer_limit = 4 * 1024 * 1024;
    TestServer server(config);
    StalledClient client(server.port(), "/ws/p");
    ASSERT_TRUE(wait_until([&] { return server.dispatcher().online() == 1; }, 5s));
    constexpr int kMessages = 2400;
    const auto chunk = make_payload(std::string(400, 'x'));
    // Held while they are sent: a shard that drained the first few as they came would write
    // them whole into the socket buffers, and the bytes below would never all be queued.
    std::promise<void> gate;
    hold_shard(server.dispatcher().shard(0), gate.get_future().share()).wait();
    for (int i = 0; i < kMessages; ++i) server.dispatcher().send("p", chunk);
    gate.set_value();
    // All queued on the session within drain turns that end by starting the first write
    // (256 messages, about 100 KB), which stalls: the client has read nothing.
    const auto& stats = server.dispatcher().shard(0).stats();
    ASSERT_TRUE(wait_until([&] { return stats.outbound_bytes.load() == kMessages * 400; }, 10s));
    ASSERT_TRUE(client.send_raw_frame(0x9, "AAAA"));
    // The first pong goes out at the front of the second write, which stalls in turn as the
    // client stops reading right after the pong.
    ASSERT_TRUE(client.read_until_pongs(1, 10s));
    ASSERT_TRUE(client.send_raw_frame(0x9, "BBBB"));
    ASSERT_TRUE(client.send_raw_frame(0x1, "after the second ping"));
    // The server reads a client's frames in order: once it has counted the text frame, it
    // has taken the second ping, while the second write is still in flight.
    ASSERT_TRUE(wait_until([&] { return stats.frames_received.load() == 1; }, 10s));
    ASSERT_TRUE(client.read_until_texts(kMessages, 30s)) << client.text_count();
    ASSERT_TRUE(client.read_until_pongs(2, 10s));
    EXPECT_EQ(client.pongs(), (std::vector<std::string>{"AAAA", "BBBB"}));
    EXPECT_EQ(server.dispatcher().online(), 1u);
}

// Payload bytes a client that never reads took before the first write stalled: 16 KiB
// messages are sent one at a time, each once the one before has been written whole.
std::size_t written_before_first_stall(std::size_t socket_send_buffer) {
    auto config = test_dispatcher_config();
    config.session.buffer_limit = 256 * 1024 * 1024;
    config.session.send_time_limit = 60s;
    config.session.socket_send_buffer = socket_send_buffer;
    TestServer server(config);
    StalledClient slow(server.port(), "/ws/slow");
    const auto chunk = make_payload(std::string(16 * 1024, 'x'));
    std::size_t written = 0;
    for (std::uint64_t i = 1; i <= 1024; ++i) {
        server.dispatcher().send("slow", chunk);
        if (!wait_until([&] { return server.sent() == i; }, 300ms)) {
            break;
        }
        written += chunk->size();
    }
    return written;
}

TEST(SlowClientTest, SocketSendBufferBoundsWhatTheKernelHoldsForAClientThatStoppedReading) {
    // The client's 4 KiB receive buffer keeps its own share small: what differs is the
    // server's send buffer, fixed at 2 x 16 KiB (Linux doubles it) or autotuned.
    const std::size_t bounded = written_before_first_stall(16 * 1024);
    const std::size_t autotuned = written_before_first_stall(0);
    EXPECT_LT(bounded, 128u * 1024u);
    EXPECT_LT(bounded, autotuned) << bounded << " bytes with SO_SNDBUF set";
}

// A client that stops reading costs only itself: once the bytes its shard holds pass
// publish.max_outbound_bytes, the client furthest behind is cut (slow_reader), and every
// publish, to it or anyone else, is taken throughout. A neighbour on the same shard keeps
// receiving.
TEST(SlowClientTest, AStalledClientIsCutInsteadOfRefusingPublishes) {
    auto config = test_dispatcher_config();
    config.session.buffer_limit = 64 * 1024 * 1024;
    config.session.send_time_limit = 60s;
    config.max_outbound_bytes = 1024 * 1024;
    TestServer server(config);
    ClientLoop loop;
    StalledClient slow(server.port(), "/ws/slow");
    const auto& router = server.dispatcher().router();
    std::string neighbour;
    for (int i = 0; neighbour.empty(); ++i) {
        std::string id = "neighbour-" + std::to_string(i);
        if (router.shard_of(id) == router.shard_of("slow")) neighbour = id;
    }
    auto other = WsClient::start(loop, server.port(), "/ws/" + neighbour);
    ASSERT_TRUE(other->wait_open(5s));
    ASSERT_TRUE(wait_until([&] { return server.dispatcher().online() == 2; }, 5s));

    // The stalled client fills its socket buffers, then the shard's 1 MiB.
    const std::string chunk(64 * 1024, 'x');
    HttpClient http(server.port());
    const std::string body = R"({"to":"slow","data":")" + chunk + R"("})";
    for (int i = 0; i < 2000 && server.cleaned(RemovalReason::slow_reader) == 0; ++i) {
        const auto answer = http.post("/api/v1/send", body);
        ASSERT_EQ(answer.status, 202) << answer.body;
    }
    EXPECT_EQ(server.cleaned(RemovalReason::slow_reader), 1u);
    EXPECT_EQ(server.server().stats().rejected(), 0u) << "no publish was refused";

    // The neighbour on the same shard is served as before.
    EXPECT_EQ(http.post("/api/v1/send", R"({"to":")" + neighbour + R"(","data":"fine"})").status,
              202);
    ASSERT_TRUE(other->wait_messages(1, 5s));
    EXPECT_EQ(other->messages().front(), "fine");
    EXPECT_TRUE(wait_until([&] { return server.dispatcher().online() == 1; }, 5s));
}

}  // namespace
}  // namespace shardcast::test
