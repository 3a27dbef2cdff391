// The HTTP publish API over real sockets: each answer as specified, bad input rejected with
// a precise error and a counter, and the server serving everyone else throughout.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <future>
#include <string>
#include <string_view>

#include "tests/integration/test_server.hpp"
#include "tests/support/clients.hpp"
#include "tests/support/hold_shard.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

json::value parse(const std::string& body) { return json::parse(body); }

// The "error" text of a JSON error answer.
std::string error_of(const HttpClient::Response& response) {
    return std::string(parse(response.body).as_object().at("error").as_string());
}

std::string header_of(const HttpClient::Response& response, std::string_view name) {
    for (const auto& [field, value] : response.headers) {
        if (field == name) return value;
    }
    return {};
}

class HttpApiTest : public ::testing::Test {
protected:
    TestServer server_;
    ClientLoop loop_;
    HttpClient http_{server_.port()};

    std::shared_ptr<WsClient> connect(const std::string& id) {
        auto client = WsClient::start(loop_, server_.port(), "/ws/" + id);
        EXPECT_TRUE(client->wait_open(10s)) << id;
        return client;
    }
};

TEST_F(HttpApiTest, SendDeliversStringDataAsItsText) {
    auto client = connect("alice");
    auto response = http_.post("/api/v1/send", R"({"to":"alice","data":"hi alice"})");
    EXPECT_EQ(response.status, 202);
    EXPECT_EQ(parse(response.body), parse(R"({"accepted":1})"));
    EXPECT_EQ(response.content_type, "application/json");
    ASSERT_TRUE(client->wait_messages(1, 5s));
    EXPECT_EQ(client->messages().front(), "hi alice");
}

TEST_F(HttpApiTest, SendDeliversOtherJsonAsSerialisedJson) {
    auto client = connect("bob");
    ASSERT_EQ(
        http_.post("/api/v1/send", R"({"to":"bob","data":{"n": [1, 2.5, true, null]}})").status,
        202);
    ASSERT_TRUE(client->wait_messages(1, 5s));
    EXPECT_EQ(parse(client->messages().front()), parse(R"({"n":[1,2.5,true,null]})"));
}

TEST_F(HttpApiTest, SendToOfflineIdIsAcceptedAndHeldForItsResume) {
    EXPECT_EQ(http_.post("/api/v1/send", R"({"to":"ghost","data":"x"})").status, 202);
    ASSERT_TRUE(wait_until([&] { return test::held(server_.dispatcher()) == 1; }, 5s));
    EXPECT_EQ(server_.failed(dispatcher::FailureReason::no_session), 0u);
}

TEST_F(HttpApiTest, BroadcastReachesAllButTheExceptedClient) {
    auto a = connect("a");
    auto b = connect("b");
    auto c = connect("c");
    EXPECT_EQ(http_.post("/api/v1/broadcast", R"({"data":"news","except":"b"})").status, 202);
    ASSERT_TRUE(a->wait_messages(1, 5s));
    ASSERT_TRUE(c->wait_messages(1, 5s));
    http_.post("/api/v1/send", R"({"to":"b","data":"marker"})");
    ASSERT_TRUE(b->wait_messages(1, 5s));
    EXPECT_EQ(b->messages(), std::vector<std::string>{"marker"});
}

TEST_F(HttpApiTest, BatchPublishesGoodLinesInOrderAndReportsBadOnes) {
    auto a = connect("a");
    auto b = connect("b");
    const std::string body =
        "{\"to\":\"a\",\"data\":\"1\"}\n"
        "{\"to\":\"a\",\"data\":\"2\"\n"  // line 2: truncated JSON
        "\n"
        "{\"to\":\"*\",\"data\":\"all\"}\r\n"
        "{\"to\":\"bad id!\",\"data\":\"x\"}\n"  // line 5: invalid id
        "{\"data\":\"no to\"}\n"                 // line 6: missing field
        "{\"to\":\"a\",\"data\":\"3\"}";
    auto response = http_.post("/api/v1/batch", body);
    ASSERT_EQ(response.status, 202) << response.body;
    auto answer = parse(response.body).as_object();
    EXPECT_EQ(answer["accepted"].as_int64(), 3);
    EXPECT_EQ(answer["rejected"].as_int64(), 3);
    auto& errors = answer["errors"].as_array();
    ASSERT_EQ(errors.size(), 3u);
    EXPECT_EQ(errors[0].as_object().at("line").as_int64(), 2);
    EXPECT_EQ(errors[1].as_object().at("line").as_int64(), 5);
    EXPECT_EQ(errors[2].as_object().at("line").as_int64(), 6);
    EXPECT_NE(std::string(errors[2].as_object().at("error").as_string()).find("\"to\""),
              std::string::npos);
    ASSERT_TRUE(a->wait_messages(3, 5s));
    EXPECT_EQ(a->messages(), (std::vector<std::string>{"1", "all", "3"}));
    ASSERT_TRUE(b->wait_messages(1, 5s));
    EXPECT_EQ(b->messages(), std::vector<std::string>{"all"});
}

// ?ack=taken: the answer waits for the shard, so a publisher that waits for it cannot run
// ahead of delivery. 200 and the usual body once the shard has taken the message.
TEST_F(HttpApiTest, SendWithAckTakenIsAnsweredOnceTheShardHasTakenIt) {
    auto client = connect("alice");
    std::promise<void> gate;
    hold_shard(server_.dispatcher().shard_for("alice"), gate.get_future().share()).wait();
    auto answer = std::async(std::launch::async, [&] {
        HttpClient publisher(server_.port());
        return publisher.post("/api/v1/send?ack=taken", R"({"to":"alice","data":"hi"})");
    });
    EXPECT_EQ(answer.wait_for(200ms), std::future_status::timeout) << "answered while held";
    gate.set_value();
    const auto response = answer.get();
    EXPECT_EQ(response.status, 200) << response.body;
    EXPECT_EQ(parse(response.body), parse(R"({"accepted":1})"));
    ASSERT_TRUE(client->wait_messages(1, 5s));
    EXPECT_EQ(client->messages().front(), "hi");
}

TEST_F(HttpApiTest, BatchWithAckTakenWaitsForEveryShardItReached) {
    auto a = connect("a");
    std::string other = "b";
    dispatcher::Dispatcher& d = server_.dispatcher();
    for (int i = 0; d.router().shard_of(other) == d.router().shard_of("a"); ++i) {
        other = "b" + std::to_string(i);
    }
    auto b = connect(other);
    std::promise<void> gate;
    hold_shard(d.shard_for(other), gate.get_future().share()).wait();
    auto answer = std::async(std::launch::async, [&] {
        HttpClient publisher(server_.port());
        return publisher.post(
            "/api/v1/batch?ack=taken",
            "{\"to\":\"a\",\"data\":\"1\"}\n{\"to\":\"" + other + "\",\"data\":\"2\"}\n");
    });
    ASSERT_TRUE(a->wait_messages(1, 5s));
    EXPECT_EQ(answer.wait_for(100ms), std::future_status::timeout) << "answered before " << other;
    gate.set_value();
    const auto response = answer.get();
    EXPECT_EQ(response.status, 200) << response.body;
    EXPECT_EQ(parse(response.body).as_object().at("accepted").as_int64(), 2);
    ASSERT_TRUE(b->wait_messages(1, 5s));
}

TEST_F(HttpApiTest, AnUnknownAckIsABadRequestAndPublishesNothing) {
    auto client = connect("alice");
    const auto response = http_.post("/api/v1/send?ack=later", R"({"to":"alice","data":"no"})");
    EXPECT_EQ(response.status, 400);
    EXPECT_EQ(error_of(response), R"("ack" must be "queued" or "taken")");
    EXPECT_EQ(http_.post("/api/v1/send?ack=queued", R"({"to":"alice","data":"yes"})").status, 202);
    ASSERT_TRUE(client->wait_messages(1, 5s));
    EXPECT_EQ(client->messages(), std::vector<std::string>{"yes"});
}

TEST_F(HttpApiTest, EmptyBatchIsABadRequest) {
    auto response = http_.post("/api/v1/batch", "\n \n");
    EXPECT_EQ(response.status, 400);
    EXPECT_NE(response.body.find("empty batch"), std::string::npos);
}

TEST_F(HttpApiTest, DisconnectClosesEverySessionOfTheIdWithTheGivenCode) {
    auto client = connect("kicked");
    auto bystander = connect("stays");
    auto response =
        http_.post("/api/v1/disconnect", R"({"to":"kicked","code":4100,"reason":"bye"})");
    EXPECT_EQ(response.status, 202) << response.body;
    ASSERT_TRUE(client->wait_closed(5s));
    EXPECT_EQ(client->close_info()->code, 4100);
    EXPECT_EQ(client->close_info()->reason, "bye");
    ASSERT_TRUE(wait_until(
        [&] { return server_.cleaned(dispatcher::RemovalReason::disconnected) == 1; }, 5s));
    EXPECT_TRUE(bystander->is_open());
}

TEST_F(HttpApiTest, DisconnectRejectsCodesAServerMustNotSend) {
    EXPECT_EQ(error_of(http_.post("/api/v1/disconnect", R"({"to":"a","code":1006})")),
              "\"code\" must be 1000 or from 3000 to 4999");
    EXPECT_EQ(error_of(http_.post("/api/v1/disconnect", R"({"code":4000})")),
              "\"to\" is missing or not a valid client id");
    EXPECT_EQ(
        http_.post("/api/v1/disconnect", R"({"to":"a","reason":")" + std::string(124, 'r') + "\"}")
            .status,
        400);
}

TEST_F(HttpApiTest, ClientLookupReportsOnlineStateAndShard) {
    auto client = connect("look");
    auto response = http_.get("/api/v1/clients/look");
    ASSERT_EQ(response.status, 200);
    auto info = parse(response.body).as_object();
    EXPECT_EQ(info["id"].as_string(), "look");
    EXPECT_TRUE(info["online"].as_bool());
    EXPECT_EQ(info["sessions"].as_int64(), 1);
    EXPECT_EQ(info["shard"].as_int64(),
              static_cast<std::int64_t>(server_.dispatcher().router().shard_of("look")));
    EXPECT_EQ(info["messages_sent"].as_int64(), 0);
    EXPECT_EQ(info["socket_writes"].as_int64(), 0);
    auto offline = parse(http_.get("/api/v1/clients/nobody").body).as_object();
    EXPECT_FALSE(offline["online"].as_bool());
    EXPECT_EQ(offline["sessions"].as_int64(), 0);
}

// 40 messages that wait in the inbox together are taken by one drain turn and leave in
// writes of many. The shard is held while they are published: a shard that keeps pace with
// the batch's lines would otherwise take them one turn each.
TEST_F(HttpApiTest, ClientLookupCountsMessagesAndTheWritesThatCarriedThem) {
    auto client = connect("counted");
    std::string lines;
    for (int i = 0; i < 40; ++i)
        lines += R"({"to":"counted","data":"m)" + std::to_string(i) + "\"}\n";
    std::promise<void> gate;
    hold_shard(server_.dispatcher().shard_for("counted"), gate.get_future().share()).wait();
    const auto published = http_.post("/api/v1/batch", lines);
    gate.set_value();
    ASSERT_EQ(published.status, 202);
    ASSERT_TRUE(client->wait_messages(40, 5s));
    // A write is counted after the kernel took it, which can be after the client read it.
    ASSERT_TRUE(wait_until([&] { return server_.sent() == 40; }, 5s)) << server_.sent();
    auto info = parse(http_.get("/api/v1/clients/counted").body).as_object();
    EXPECT_EQ(info["messages_sent"].as_int64(), 40);
    EXPECT_GE(info["socket_writes"].as_int64(), 1);
    EXPECT_LT(info["socket_writes"].as_int64(), 40);
}

TEST_F(HttpApiTest, StatsHaveTotalsAndPerShardFigures) {
    auto client = connect("st");
    http_.post("/api/v1/send", R"({"to":"st","data":"x"})");
    ASSERT_TRUE(client->wait_messages(1, 5s));
    ASSERT_TRUE(wait_until([&] { return server_.sent() == 1; }, 5s));
    auto response = http_.get("/api/v1/stats");
    ASSERT_EQ(response.status, 200);
    auto stats = parse(response.body).as_object();
    EXPECT_EQ(stats["totals"].as_object()["online"].as_int64(), 1);
    EXPECT_EQ(stats["totals"].as_object()["sent"].as_int64(), 1);
    EXPECT_EQ(stats["shards"].as_array().size(), server_.dispatcher().shard_count());
}

TEST_F(HttpApiTest, HealthAndReadiness) {
    EXPECT_EQ(http_.get("/healthz").status, 200);
    EXPECT_EQ(http_.get("/readyz").status, 200);
    server_.server().stop_accepting();
    EXPECT_EQ(http_.get("/readyz").status, 503);
}

TEST_F(HttpApiTest, MalformedJsonIsRejectedNamingTheProblem) {
    auto response = http_.post("/api/v1/send", R"({"to":"a","data":)");
    EXPECT_EQ(response.status, 400);
    EXPECT_EQ(error_of(response).rfind("malformed JSON at byte 17", 0), 0u) << response.body;
    auto wrong_type = http_.post("/api/v1/send", R"({"to":5,"data":"x"})");
    EXPECT_EQ(wrong_type.status, 400);
    EXPECT_EQ(error_of(wrong_type), "\"to\" must be a string");
    auto unknown = http_.post("/api/v1/send", R"({"to":"a","data":"x","tO":"b"})");
    EXPECT_EQ(unknown.status, 400);
    EXPECT_EQ(error_of(unknown), "unknown field \"tO\"");
    auto not_object = http_.post("/api/v1/broadcast", R"([1,2])");
    EXPECT_EQ(not_object.status, 400);
}

TEST_F(HttpApiTest, UnknownRouteIs404AndWrongMethodIs405) {
    auto missing = http_.get("/api/v2/whatever");
    EXPECT_EQ(missing.status, 404);
    EXPECT_NE(missing.body.find("no route"), std::string::npos);
    auto wrong = http_.get("/api/v1/send");
    EXPECT_EQ(wrong.status, 405);
    bool allow = false;
    for (const auto& [name, value] : wrong.headers) allow |= (name == "Allow" && value == "POST");
    EXPECT_TRUE(allow) << "405 without Allow: POST";
}

TEST_F(HttpApiTest, AnUnknownTargetIsEchoedPrintableAndShort) {
    // Bytes above 0x7F are legal in a target; echoed raw they would make the body invalid
    // UTF-8, so not JSON. A target can also run to the header limit.
    const std::string answer = raw_exchange(server_.port(),
                                            "GET /nope/\xff\xfe" + std::string(2000, 'a') +
                                                " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                            5s);
    ASSERT_EQ(answer.rfind("HTTP/1.1 404", 0), 0u) << answer;
    const std::string error = std::string(
        parse(answer.substr(answer.find("\r\n\r\n") + 4)).as_object().at("error").as_string());
    EXPECT_EQ(error.rfind("no route for /nope/%FF%FEaaa", 0), 0u) << error;
    EXPECT_LT(error.size(), 200u) << error;
    EXPECT_EQ(error.substr(error.size() - 3), "...") << error;
}

TEST_F(HttpApiTest, HeadAnswersLikeGetWithoutABody) {
    // Three requests on one connection: a body after either HEAD answer would be read as the
    // start of the next answer.
    const std::string answer =
        raw_exchange(server_.port(),
                     "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     "HEAD /api/v1/send HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     5s);
    ASSERT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
    const auto second = answer.find("\r\n\r\nHTTP/1.1 405");
    ASSERT_NE(second, std::string::npos) << answer;
    const auto third = answer.find("\r\n\r\nHTTP/1.1 200", second + 4);
    ASSERT_NE(third, std::string::npos) << answer;
    // The HEAD answer carries the length a GET would have; only the GET's body follows.
    EXPECT_NE(answer.substr(0, second + 2).find("Content-Length: 15\r\n"), std::string::npos)
        << answer;
    EXPECT_NE(answer.substr(second, third - second).find("Allow: POST\r\n"), std::string::npos)
        << answer;
    EXPECT_EQ(answer.find('{'), answer.size() - 15) << answer;
    EXPECT_EQ(answer.substr(answer.size() - 15), R"({"status":"ok"})");
}

TEST_F(HttpApiTest, OversizedBodyIs413BeforeTheBodyIsRead) {
    // Content-Length says 1 GiB but no body follows: only the header can have decided.
    const std::string answer = raw_exchange(server_.port(),
                                            "POST /api/v1/send HTTP/1.1\r\nHost: x\r\n"
                                            "Content-Length: 1073741824\r\n\r\n",
                                            5s);
    EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
    EXPECT_NE(answer.find("http.max_body"), std::string::npos);
}

TEST_F(HttpApiTest, PipelinedLargeBatchesAreEachReadWholeAndInOrder) {
    // Two batches of about 70 KB each, sent in one write: each body is larger than one read,
    // and the second request's bytes are already buffered when the first is answered.
    auto a = connect("a");
    constexpr int kLines = 300;
    const std::string padding(200, 'x');
    auto batch = [&](int first) {
        std::string body;
        for (int i = first; i < first + kLines; ++i) {
            body += R"({"to":"a","data":")" + std::to_string(i) + padding + "\"}\n";
        }
        return body;
    };
    auto request = [](const std::string& body, const char* connection) {
        return "POST /api/v1/batch HTTP/1.1\r\nHost: x\r\nConnection: " + std::string(connection) +
               "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    };
    const std::string answer = raw_exchange(
        server_.port(), request(batch(0), "keep-alive") + request(batch(kLines), "close"), 10s);
    const auto first = answer.find("HTTP/1.1 202");
    ASSERT_NE(first, std::string::npos) << answer;
    EXPECT_NE(answer.find("HTTP/1.1 202", first + 1), std::string::npos) << answer;
    ASSERT_TRUE(a->wait_messages(2 * kLines, 10s)) << a->messages().size();
    const auto messages = a->messages();
    for (int i = 0; i < 2 * kLines; ++i) {
        ASSERT_EQ(messages[i], std::to_string(i) + padding) << "message " << i;
    }
}

TEST_F(HttpApiTest, MalformedHttpGetsA400AndTheServerKeepsServing) {
    auto client = connect("steady");
    const std::string answer = raw_exchange(server_.port(), "THIS IS NOT HTTP\r\n\r\n", 5s);
    EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
    ASSERT_EQ(http_.post("/api/v1/send", R"({"to":"steady","data":"still here"})").status, 202);
    ASSERT_TRUE(client->wait_messages(1, 5s));
    EXPECT_GE(server_.server().stats().rejected(), 1u);
}

TEST(HttpApiAuthTest, ApiKeysGuardPublishAndStatsButNotHealth) {
    auto transport = test_transport_config();
    transport.auth.api_keys = {"k1", "k2"};
    TestServer server(test_dispatcher_config(), transport);
    HttpClient http(server.port());
    EXPECT_EQ(http.post("/api/v1/send", R"({"to":"a","data":"x"})").status, 401);
    EXPECT_EQ(
        http.post("/api/v1/send", R"({"to":"a","data":"x"})", {{"Authorization", "Bearer nope"}})
            .status,
        401);
    EXPECT_EQ(http.get("/api/v1/stats").status, 401);
    EXPECT_EQ(
        http.post("/api/v1/send", R"({"to":"a","data":"x"})", {{"Authorization", "Bearer k2"}})
            .status,
        202);
    EXPECT_EQ(http.get("/api/v1/stats", {{"Authorization", "Bearer k1"}}).status, 200);
    EXPECT_EQ(http.get("/healthz").status, 200);
}

// publish.max_queue_delay over real sockets: a publish for a shard whose oldest command has
// waited past the limit gets 429 with Retry-After and a JSON error, counted in /metrics
// under its reason, while the other shard takes publishes; once the shard has caught up,
// its publishes are taken again.
TEST(HttpApiAdmissionTest, APublishForAShardBehindMaxQueueDelayIs429UntilItCatchesUp) {
    dispatcher::DispatcherConfig config = test_dispatcher_config();
    config.max_queue_delay = 20ms;
    TestServer server(config);
    HttpClient http(server.port());
    dispatcher::Dispatcher& d = server.dispatcher();
    const std::string late = "late";
    std::string other = "other";
    for (int i = 0; d.router().shard_of(other) == d.router().shard_of(late); ++i) {
        other = "other" + std::to_string(i);
    }
    const auto send_to = [&](const std::string& id) {
        return http.post("/api/v1/send", R"({"to":")" + id + R"(","data":"x"})");
    };
    std::promise<void> gate;
    hold_shard(d.shard_for(late), gate.get_future().share()).wait();
    ASSERT_EQ(send_to(late).status, 202);
    ASSERT_TRUE(wait_until([&] { return static_cast<bool>(d.overload_of(late)); }, 5s));
    const auto refused = send_to(late);
    const auto taken = send_to(other);
    const std::string metrics = http.get("/metrics").body;
    gate.set_value();

    EXPECT_EQ(refused.status, 429);
    EXPECT_EQ(header_of(refused, "Retry-After"), "1");
    EXPECT_TRUE(error_of(refused).find("publish.max_queue_delay 20ms") != std::string::npos)
        << refused.body;
    EXPECT_EQ(taken.status, 202) << taken.body;
    const std::string counted = "\nshardcast_publish_overloaded_total{reason=\"queue_delay\"} ";
    const auto at = metrics.find(counted);
    ASSERT_NE(at, std::string::npos) << metrics;
    EXPECT_EQ(std::stod(metrics.substr(at + counted.size())), 1.0);
    ASSERT_TRUE(wait_until([&] { return !d.overload_of(late); }, 5s))
        << "still refused once the shard had caught up";
    EXPECT_EQ(send_to(late).status, 202);
    ASSERT_TRUE(wait_until([&] { return test::held(d) == 3; }, 5s)) << test::held(d);
}

}  // namespace
}  // namespace shardcast::test
