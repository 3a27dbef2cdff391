// GET /metrics over real sockets: the text format passes promtool, and every counter says
// exactly what the test did.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "tests/integration/test_server.hpp"
#include "tests/support/clients.hpp"
#include "tests/support/process.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::test {
namespace {

using namespace std::chrono_literals;

// Every sample line as "name{labels}" -> value.
std::map<std::string, double> samples(const std::string& text) {
    std::map<std::string, double> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        const auto space = line.rfind(' ');
        out[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
    return out;
}

double sum_of(const std::map<std::string, double>& all, const std::string& prefix) {
    double total = 0;
    for (const auto& [key, value] : all) {
        if (key.rfind(prefix, 0) == 0) total += value;
    }
    return total;
}

TEST(MetricsTest, ExpositionPassesPromtoolCheckMetrics) {
    TestServer server;
    HttpClient http(server.port());
    http.post("/api/v1/send", R"({"to":"nobody","data":"x"})");
    auto response = http.get("/metrics");
    ASSERT_EQ(response.status, 200);
    EXPECT_EQ(response.content_type, "text/plain; version=0.0.4; charset=utf-8");
    const std::string file =
        ::testing::TempDir() + "shardcast-metrics." + std::to_string(::getpid());
    std::ofstream(file) << response.body;
    Process promtool({"/bin/sh", "-c", "promtool check metrics < " + file}, file + ".out");
    const auto code = promtool.wait(30s);
    std::remove(file.c_str());
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 0) << promtool.output();
}

TEST(MetricsTest, CountersMatchTheTraffic) {
    TestServer server;
    ClientLoop loop;
    auto a = WsClient::start(loop, server.port(), "/ws/a");
    auto b = WsClient::start(loop, server.port(), "/ws/b");
    ASSERT_TRUE(a->wait_open(5s));
    ASSERT_TRUE(b->wait_open(5s));
    HttpClient http(server.port());
    for (int i = 0; i < 7; ++i) http.post("/api/v1/send", R"({"to":"a","data":"x"})");
    for (int i = 0; i < 5; ++i) http.post("/api/v1/send", R"({"to":"offline","data":"x"})");
    http.post("/api/v1/broadcast", R"({"data":"all"})");
    http.post("/api/v1/batch", "{\"to\":\"b\",\"data\":1}\nnot json\n");
    ASSERT_TRUE(a->wait_messages(8, 5s));
    ASSERT_TRUE(b->wait_messages(2, 5s));
    b->close();
    ASSERT_TRUE(wait_until([&] { return server.dispatcher().online() == 1; }, 5s));
    ASSERT_TRUE(wait_until([&] { return server.sent() == 10; }, 5s));

    const auto m = samples(http.get("/metrics").body);
    EXPECT_EQ(m.at(R"(shardcast_messages_published_total{kind="send"})"), 12);
    EXPECT_EQ(m.at(R"(shardcast_messages_published_total{kind="broadcast"})"), 1);
    EXPECT_EQ(m.at(R"(shardcast_messages_published_total{kind="batch"})"), 1);
    EXPECT_EQ(sum_of(m, "shardcast_messages_sent_total{"), 10);
    EXPECT_EQ(sum_of(m, "shardcast_messages_held_total{"), 5);
    EXPECT_EQ(sum_of(m, "shardcast_messages_failed_total{"), 0);
    // Every send, the batch line, and the broadcast once on each of the two shards.
    EXPECT_EQ(m.at("shardcast_history_messages"), 12 + 1 + 2);
    EXPECT_EQ(m.at(R"(shardcast_sessions_cleaned_total{reason="peer_closed"})"), 1);
    EXPECT_EQ(m.at("shardcast_connections_total"), 2);
    EXPECT_EQ(sum_of(m, "shardcast_sessions{"), 1);
    EXPECT_EQ(m.at("shardcast_batch_lines_rejected_total"), 1);
    EXPECT_EQ(m.at(R"(shardcast_http_requests_total{route="send",code="202"})"), 12);
    EXPECT_EQ(sum_of(m, "shardcast_delivery_latency_seconds_count{"), 10);
    EXPECT_EQ(m.at(R"(shardcast_build_info{version="test",revision="test"})"), 1);
    EXPECT_GT(m.at("process_resident_memory_bytes"), 0);
    EXPECT_GT(m.at("process_open_fds"), 0);
    EXPECT_GT(m.at("process_start_time_seconds"), 1.6e9);
}

TEST(MetricsTest, HandshakeFailuresAreCountedByReason) {
    TestServer server;
    ClientLoop loop;
    auto bad = WsClient::start(loop, server.port(), "/ws/bad%id");
    ASSERT_TRUE(bad->wait_closed(5s));
    HttpClient http(server.port());
    http.get("/ws/plain-get");
    const auto m = samples(http.get("/metrics").body);
    EXPECT_EQ(m.at(R"(shardcast_handshake_failures_total{reason="invalid_client_id"})"), 1);
    EXPECT_EQ(m.at(R"(shardcast_handshake_failures_total{reason="not_upgrade"})"), 1);
}

// The shard decides an upgrade's answer: a session it refuses is a 409, not a 101.
TEST(MetricsTest, UpgradesAreCountedWithTheAnswerTheShardGave) {
    TestServer server(allow_mode_config(1));
    ClientLoop loop;
    auto first = WsClient::start(loop, server.port(), "/ws/one");
    ASSERT_TRUE(first->wait_open(5s));
    auto second = WsClient::start(loop, server.port(), "/ws/one");
    ASSERT_TRUE(second->wait_closed(5s));
    ASSERT_EQ(second->refused_status(), 409);
    HttpClient http(server.port());
    const auto m = samples(http.get("/metrics").body);
    EXPECT_EQ(m.at(R"(shardcast_http_requests_total{route="websocket",code="101"})"), 1);
    EXPECT_EQ(m.at(R"(shardcast_http_requests_total{route="websocket",code="409"})"), 1);
}

// A header too large to read never names its route: its 431 is not the previous request's.
TEST(MetricsTest, AnOversizedHeaderIsCountedUnderNoRoute) {
    TestServer server;
    HttpClient http(server.port());
    ASSERT_EQ(http.get("/healthz").status, 200);
    ASSERT_EQ(http.get("/healthz", {{"X-Padding", std::string(20 * 1024, 'p')}}).status, 431);
    HttpClient fresh(server.port());
    const auto m = samples(fresh.get("/metrics").body);
    auto value = [&](const std::string& key) {
        const auto it = m.find(key);
        return it == m.end() ? 0.0 : it->second;
    };
    EXPECT_EQ(value(R"(shardcast_http_requests_total{route="unknown",code="431"})"), 1);
    EXPECT_EQ(value(R"(shardcast_http_requests_total{route="healthz",code="431"})"), 0);
}

// With a metrics port, the metrics live there only: the main port, which faces clients, no
// longer serves them.
TEST(MetricsTest, SeparateMetricsPortServesOnlyMetricsAndHealth) {
    auto transport = test_transport_config();
    transport.metrics_listen = transport::Endpoint{"127.0.0.1", 0};
    TestServer server(test_dispatcher_config(), transport);
    ASSERT_TRUE(server.server().metrics_port().has_value());
    HttpClient metrics(*server.server().metrics_port());
    EXPECT_EQ(metrics.get("/metrics").status, 200);
    EXPECT_EQ(metrics.get("/healthz").status, 200);
    EXPECT_EQ(metrics.post("/api/v1/send", R"({"to":"a","data":"x"})").status, 404);
    HttpClient main(server.port());
    const auto answer = main.get("/metrics");
    EXPECT_EQ(answer.status, 404);
    EXPECT_NE(answer.body.find("metrics.listen"), std::string::npos) << answer.body;
    EXPECT_EQ(main.get("/healthz").status, 200);
}

// With API keys set, the main port's /metrics needs one (metrics.require_key), or not when
// that is turned off.
TEST(MetricsTest, MainPortMetricsNeedAKeyOnceKeysAreSet) {
    auto transport = test_transport_config();
    transport.auth.api_keys = {"k1"};
    TestServer server(test_dispatcher_config(), transport);
    HttpClient main(server.port());
    EXPECT_EQ(main.get("/metrics").status, 401);
    EXPECT_EQ(main.get("/metrics", {{"Authorization", "Bearer k1"}}).status, 200);

    transport.metrics_require_key = false;
    TestServer open(test_dispatcher_config(), transport);
    HttpClient scrape(open.port());
    EXPECT_EQ(scrape.get("/metrics").status, 200);
}

}  // namespace
}  // namespace shardcast::test
