// session.write_delay over real sockets: messages published apart share one socket write when
// they fall within the delay, every one of them arrives in order, and a stop does not wait
// for the delay to deliver what it holds.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

#include "tests/integration/test_server.hpp"
#include "tests/support/clients.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

constexpr int kMessages = 10;

dispatcher::DispatcherConfig with_write_delay(std::chrono::milliseconds delay) {
    auto config = test_dispatcher_config();
    config.session.write_delay = delay;
    return config;
}

// A server with the given write delay, and one client connected to it as `id`.
struct Connected {
    Connected(std::chrono::milliseconds delay, const std::string& id)
        : server(with_write_delay(delay)),
          http(server.port()),
          client(WsClient::start(loop, server.port(), "/ws/" + id)) {}

    TestServer server;
    ClientLoop loop;
    HttpClient http;
    std::shared_ptr<WsClient> client;
};

struct Writes {
    std::int64_t messages = 0;
    std::int64_t socket_writes = 0;
};

// The lookup runs on the client's shard after every command published before it, so each
// send followed by a lookup gets a drain turn of its own.
Writes writes_of(HttpClient& http, const std::string& id) {
    auto info = json::parse(http.get("/api/v1/clients/" + id).body).as_object();
    return {info["messages_sent"].as_int64(), info["socket_writes"].as_int64()};
}

void send(HttpClient& http, const std::string& id, int i) {
    ASSERT_EQ(
        http.post("/api/v1/send", R"({"to":")" + id + R"(","data":"m)" + std::to_string(i) + "\"}")
            .status,
        202);
}

void expect_in_order(const WsClient& client) {
    const auto got = client.messages();
    ASSERT_EQ(got.size(), static_cast<std::size_t>(kMessages));
    for (int i = 0; i < kMessages; ++i) EXPECT_EQ(got[i], "m" + std::to_string(i));
}

TEST(WriteDelayTest, WithoutADelayEachTurnWritesWhatItQueued) {
    Connected c(0ms, "prompt");
    ASSERT_TRUE(c.client->wait_open(10s));

    for (int i = 0; i < kMessages; ++i) {
        send(c.http, "prompt", i);
        ASSERT_TRUE(c.client->wait_messages(static_cast<std::size_t>(i + 1), 10s));
    }
    expect_in_order(*c.client);
    // A write is counted once the kernel took it, which can be after the client read it.
    ASSERT_TRUE(wait_until([&] { return writes_of(c.http, "prompt").messages == kMessages; }, 10s));
    EXPECT_EQ(writes_of(c.http, "prompt").socket_writes, kMessages);
}

// The delay is far longer than ten round trips take, even under a sanitizer.
TEST(WriteDelayTest, MessagesPublishedWithinTheDelayShareOneWrite) {
    Connected c(1s, "delayed");
    ASSERT_TRUE(c.client->wait_open(10s));

    for (int i = 0; i < kMessages; ++i) {
        send(c.http, "delayed", i);
        EXPECT_EQ(writes_of(c.http, "delayed").socket_writes, 0);
    }
    ASSERT_TRUE(c.client->wait_messages(kMessages, 10s));
    expect_in_order(*c.client);
    ASSERT_TRUE(
        wait_until([&] { return writes_of(c.http, "delayed").messages == kMessages; }, 10s));
    EXPECT_EQ(writes_of(c.http, "delayed").socket_writes, 1);
}

TEST(WriteDelayTest, AStopWritesWhatTheDelayHoldsBeforeClosing) {
    Connected c(1s, "held");
    ASSERT_TRUE(c.client->wait_open(10s));

    for (int i = 0; i < kMessages; ++i) send(c.http, "held", i);
    ASSERT_EQ(writes_of(c.http, "held").socket_writes, 0);
    // No drain time: the shard closes every session at once.
    c.server.stop(0ms);
    ASSERT_TRUE(c.client->wait_closed(10s));
    expect_in_order(*c.client);
    ASSERT_TRUE(c.client->close_info().has_value());
    EXPECT_EQ(c.client->close_info()->code, 1001);
}

}  // namespace
}  // namespace shardcast::test
