// The WebSocket side over real sockets: upgrade rules, close codes, heartbeats and the
// graceful stop, each seen from the client.
#include <gtest/gtest.h>

#include <string>

#include "dispatcher/close_code.hpp"
#include "tests/integration/test_server.hpp"
#include "tests/support/clients.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::test {
namespace {

using namespace std::chrono_literals;
using dispatcher::RemovalReason;
namespace close_code = dispatcher::close_code;

TEST(WebSocketTest, InvalidClientIdIsRefusedWith400BeforeUpgrade) {
    TestServer server;
    ClientLoop loop;
    for (const std::string& bad : std::vector<std::string>{
             "/ws/has%20space", "/ws/", "/ws/" + std::string(129, 'x'), "/ws/a/b"}) {
        auto client = WsClient::start(loop, server.port(), bad);
        ASSERT_TRUE(client->wait_closed(5s)) << bad;
        EXPECT_EQ(client->refused_status(), 400) << bad;
        EXPECT_NE(client->refused_body().find("invalid client id"), std::string::npos);
    }
    auto longest = WsClient::start(loop, server.port(), "/ws/" + std::string(128, 'x'));
    EXPECT_TRUE(longest->wait_open(5s));
    auto symbols = WsClient::start(loop, server.port(), "/ws/a.b_c:d@e-F9");
    EXPECT_TRUE(symbols->wait_open(5s));
}

TEST(WebSocketTest, PlainGetOnWsPathIs426AndPostIs405) {
    TestServer server;
    HttpClient http(server.port());
    EXPECT_EQ(http.get("/ws/someone").status, 426);
    EXPECT_EQ(http.post("/ws/someone", "").status, 405);
}

TEST(WebSocketTest, NewConnectionReplacesOldWith4001) {
    TestServer server;
    ClientLoop loop;
    auto first = WsClient::start(loop, server.port(), "/ws/dup");
    ASSERT_TRUE(first->wait_open(5s));
    auto second = WsClient::start(loop, server.port(), "/ws/dup");
    ASSERT_TRUE(second->wait_open(5s));
    ASSERT_TRUE(first->wait_closed(5s));
    EXPECT_EQ(first->close_info()->code, close_code::kReplaced);
    server.dispatcher().send("dup", dispatcher::make_payload("to the new one"));
    ASSERT_TRUE(second->wait_messages(1, 5s));
    EXPECT_EQ(first->message_count(), 0u);
    EXPECT_EQ(server.cleaned(RemovalReason::replaced), 1u);
}

TEST(WebSocketTest, AllowModeRefusesOverMaxPerClientWith409) {
    TestServer server(allow_mode_config(2));
    ClientLoop loop;
    auto a = WsClient::start(loop, server.port(), "/ws/many");
    auto b = WsClient::start(loop, server.port(), "/ws/many");
    ASSERT_TRUE(a->wait_open(5s));
    ASSERT_TRUE(b->wait_open(5s));
    auto c = WsClient::start(loop, server.port(), "/ws/many");
    ASSERT_TRUE(c->wait_closed(5s));
    EXPECT_EQ(c->refused_status(), 409);
    server.dispatcher().send("many", dispatcher::make_payload("both"));
    ASSERT_TRUE(a->wait_messages(1, 5s));
    ASSERT_TRUE(b->wait_messages(1, 5s));
}

TEST(WebSocketTest, OversizedClientFrameClosesWith1009AndOthersKeepWorking) {
    auto config = test_dispatcher_config();
    config.session.max_message_size = 1024;
    TestServer server(config);
    ClientLoop loop;
    auto bystander = WsClient::start(loop, server.port(), "/ws/bystander");
    auto offender = WsClient::start(loop, server.port(), "/ws/offender");
    ASSERT_TRUE(bystander->wait_open(5s));
    ASSERT_TRUE(offender->wait_open(5s));
    offender->send_text(std::string(2048, 'x'));
    ASSERT_TRUE(offender->wait_closed(5s));
    EXPECT_EQ(offender->close_info()->code, close_code::kTooBig) << offender->error();
    ASSERT_TRUE(wait_until([&] { return server.cleaned(RemovalReason::read_error) == 1; }, 5s));
    server.dispatcher().send("bystander", dispatcher::make_payload("fine"));
    ASSERT_TRUE(bystander->wait_messages(1, 5s));
}

TEST(WebSocketTest, ClientFramesAreReadAndCounted) {
    TestServer server;
    ClientLoop loop;
    auto client = WsClient::start(loop, server.port(), "/ws/talker");
    ASSERT_TRUE(client->wait_open(5s));
    client->send_text("one");
    client->send_binary("two");
    auto frames = [&] {
        std::uint64_t n = 0;
        for (std::size_t i = 0; i < server.dispatcher().shard_count(); ++i)
            n += server.dispatcher().shard(i).stats().frames_received.load();
        return n;
    };
    ASSERT_TRUE(wait_until([&] { return frames() == 2; }, 5s));
    EXPECT_TRUE(client->is_open());
}

TEST(WebSocketTest, ClientThatAnswersPingsStaysConnected) {
    auto config = test_dispatcher_config();
    config.session.heartbeat_interval = 50ms;
    config.session.heartbeat_timeout = 300ms;
    TestServer server(config);
    ClientLoop loop;
    auto client = WsClient::start(loop, server.port(), "/ws/alive");
    ASSERT_TRUE(client->wait_open(5s));
    // Many heartbeat timeouts' worth of pings, each answered.
    ASSERT_TRUE(wait_until([&] { return client->ping_count() >= 20; }, 10s));
    EXPECT_TRUE(client->is_open());
    EXPECT_EQ(server.cleaned(RemovalReason::heartbeat_timeout), 0u);
}

TEST(WebSocketTest, PeerCloseRemovesTheSessionAtOnce) {
    TestServer server;
    ClientLoop loop;
    auto client = WsClient::start(loop, server.port(), "/ws/leaver");
    ASSERT_TRUE(client->wait_open(5s));
    ASSERT_TRUE(wait_until([&] { return server.dispatcher().online() == 1; }, 5s));
    client->close();
    ASSERT_TRUE(wait_until([&] { return server.dispatcher().online() == 0; }, 5s));
    EXPECT_EQ(server.cleaned(RemovalReason::peer_closed), 1u);
}

TEST(WebSocketTest, VanishedClientIsRemovedWhenItsSocketEnds) {
    TestServer server;
    ClientLoop loop;
    auto client = WsClient::start(loop, server.port(), "/ws/vanisher");
    ASSERT_TRUE(client->wait_open(5s));
    client->abort();
    ASSERT_TRUE(wait_until([&] { return server.dispatcher().online() == 0; }, 5s));
    EXPECT_EQ(server.cleaned(RemovalReason::peer_closed), 1u);
}

TEST(WebSocketTest, GracefulStopFlushesQueuedMessagesThenCloses1001) {
    TestServer server;
    ClientLoop loop;
    auto client = WsClient::start(loop, server.port(), "/ws/last");
    ASSERT_TRUE(client->wait_open(5s));
    for (int i = 0; i < 1000; ++i) {
        server.dispatcher().send("last", dispatcher::make_payload(std::to_string(i)));
    }
    server.stop(5s);
    ASSERT_TRUE(client->wait_closed(5s));
    EXPECT_EQ(client->message_count(), 1000u);
    EXPECT_EQ(client->close_info()->code, close_code::kGoingAway);
    EXPECT_EQ(server.cleaned(RemovalReason::server_shutdown), 1u);
}

}  // namespace
}  // namespace shardcast::test
