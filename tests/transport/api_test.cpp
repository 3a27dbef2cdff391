// Api::handle called directly, without sockets or an HttpSession, over a real started
// two-shard Dispatcher: routes, methods, the validation of each publish call with its exact
// message, readiness, and the 429 of an overloaded shard. Answers are read with Boost.JSON.
#include "transport/api.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstddef>
#include <future>
#include <optional>
#include <string>
#include <string_view>

#include "tests/support/hold_shard.hpp"
#include "tests/support/totals.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::transport {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
using dispatcher::Dispatcher;
using dispatcher::DispatcherConfig;
using dispatcher::FailureReason;
using test::wait_until;

DispatcherConfig two_shards() {
    DispatcherConfig config;
    config.shards = 2;
    return config;
}

// An Api over its own started Dispatcher, which it stops at the end of the test.
class ApiUnderTest {
public:
    explicit ApiUnderTest(DispatcherConfig config = two_shards())
        : dispatcher(std::move(config)), api(transport, dispatcher, accepting, http_stats) {
        dispatcher.start();
    }
    ~ApiUnderTest() { dispatcher.stop(1s); }

    // The answer handle() gives at once; every route here answers at once.
    ApiResponse call(std::string_view method, std::string_view target, std::string_view body = {}) {
        std::optional<ApiResponse> response = api.handle(
            {method, target, body}, [](const ApiResponse&) { ADD_FAILURE() << "answered later"; });
        EXPECT_TRUE(response.has_value()) << method << " " << target << " was not answered at once";
        return response.value_or(ApiResponse{});
    }
    ApiResponse post(std::string_view target, std::string_view body) {
        return call("POST", target, body);
    }

    TransportConfig transport;
    Dispatcher dispatcher;
    std::atomic<bool> accepting{true};
    HttpStats http_stats;
    Api api;
};

json::object body_of(const ApiResponse& response) {
    EXPECT_EQ(response.content_type, "application/json");
    return json::parse(response.body).as_object();
}

// The "error" text of a JSON error answer.
std::string error_of(const ApiResponse& response) {
    return std::string(body_of(response).at("error").as_string());
}

// The first of c0, c1, ... that the dispatcher places on the given shard.
std::string id_on(const Dispatcher& d, std::size_t shard) {
    for (int i = 0; i < 1000; ++i) {
        std::string id = "c" + std::to_string(i);
        if (d.router().shard_of(id) == shard) return id;
    }
    ADD_FAILURE() << "no id found for shard " << shard;
    return {};
}

constexpr std::string_view kInvalidTo =
    "\"to\" is not a valid client id (1-128 of A-Z a-z 0-9 . _ : @ -)";

TEST(ApiTest, UnknownRouteIs404NamingThePath) {
    ApiUnderTest served;
    const ApiResponse response = served.call("GET", "/api/v1/nope?x=1");
    EXPECT_EQ(response.status, 404u);
    EXPECT_EQ(error_of(response), "no route for /api/v1/nope");
}

TEST(ApiTest, WrongMethodIs405NamingTheAllowedMethods) {
    ApiUnderTest served;
    const struct {
        std::string_view method, target, allow;
    } cases[] = {
        {"GET", "/api/v1/send", "POST"},        {"PUT", "/api/v1/broadcast", "POST"},
        {"GET", "/api/v1/batch", "POST"},       {"DELETE", "/api/v1/disconnect", "POST"},
        {"POST", "/healthz", "GET, HEAD"},      {"POST", "/readyz", "GET, HEAD"},
        {"POST", "/api/v1/stats", "GET, HEAD"}, {"POST", "/api/v1/clients/a", "GET, HEAD"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(std::string(c.method) + " " + std::string(c.target));
        const ApiResponse response = served.call(c.method, c.target);
        EXPECT_EQ(response.status, 405u);
        EXPECT_EQ(response.allow, c.allow);
        EXPECT_EQ(error_of(response), "method not allowed; use " + std::string(c.allow));
    }
}

TEST(ApiTest, AValidSendIsAcceptedAndReachesTheShard) {
    ApiUnderTest served;
    const ApiResponse response = served.post("/api/v1/send", R"({"to":"a","data":"x"})");
    EXPECT_EQ(response.status, 202u);
    EXPECT_EQ(body_of(response), (json::object{{"accepted", 1}}));
    EXPECT_TRUE(wait_until([&] { return test::held(served.dispatcher) == 1; }, 5s))
        << "the send never reached its shard";
}

TEST(ApiTest, SendWithoutToIs400) {
    ApiUnderTest served;
    const ApiResponse response = served.post("/api/v1/send", R"({"data":"x"})");
    EXPECT_EQ(response.status, 400u);
    EXPECT_EQ(error_of(response), "missing field \"to\"");
}

TEST(ApiTest, SendWithAnUnknownFieldIs400NamingIt) {
    ApiUnderTest served;
    const ApiResponse response = served.post("/api/v1/send", R"({"to":"a","data":1,"ttl":5})");
    EXPECT_EQ(response.status, 400u);
    EXPECT_EQ(error_of(response), "unknown field \"ttl\"");
}

TEST(ApiTest, SendToAnInvalidIdIs400) {
    ApiUnderTest served;
    for (std::string_view body : {R"({"to":"has space","data":1})", R"({"to":"","data":1})",
                                  R"({"to":".a","data":1})", R"({"to":"*","data":1})"}) {
        SCOPED_TRACE(body);
        const ApiResponse response = served.post("/api/v1/send", body);
        EXPECT_EQ(response.status, 400u);
        EXPECT_EQ(error_of(response), kInvalidTo);
    }
    const ApiResponse not_a_string = served.post("/api/v1/send", R"({"to":5,"data":1})");
    EXPECT_EQ(not_a_string.status, 400u);
    EXPECT_EQ(error_of(not_a_string), "\"to\" must be a string");
}

TEST(ApiTest, SendWithoutDataIs400) {
    ApiUnderTest served;
    const ApiResponse response = served.post("/api/v1/send", R"({"to":"a"})");
    EXPECT_EQ(response.status, 400u);
    EXPECT_EQ(error_of(response), "missing field \"data\"");
}

TEST(ApiTest, PublishingSomethingOtherThanAnObjectIs400) {
    ApiUnderTest served;
    for (std::string_view target : {"/api/v1/send", "/api/v1/broadcast", "/api/v1/disconnect"}) {
        for (std::string_view body : {R"([{"to":"a","data":1}])", R"("a")", "42", "null"}) {
            SCOPED_TRACE(std::string(target) + " " + std::string(body));
            const ApiResponse response = served.post(target, body);
            EXPECT_EQ(response.status, 400u);
            EXPECT_EQ(error_of(response), "expected a JSON object");
        }
    }
}

TEST(ApiTest, MalformedJsonIs400SayingWhere) {
    ApiUnderTest served;
    const ApiResponse response = served.post("/api/v1/send", R"({"to":"a",)");
    EXPECT_EQ(response.status, 400u);
    EXPECT_TRUE(error_of(response).starts_with("malformed JSON at byte ")) << response.body;
}

// A broadcast reaches everyone: "to" is not one of its fields.
TEST(ApiTest, BroadcastWithToIs400) {
    ApiUnderTest served;
    const ApiResponse response = served.post("/api/v1/broadcast", R"({"to":"a","data":1})");
    EXPECT_EQ(response.status, 400u);
    EXPECT_EQ(error_of(response), "unknown field \"to\"");
}

TEST(ApiTest, BroadcastExceptingAnInvalidIdIs400) {
    ApiUnderTest served;
    const ApiResponse response =
        served.post("/api/v1/broadcast", R"({"data":1,"except":"no spaces"})");
    EXPECT_EQ(response.status, 400u);
    EXPECT_EQ(error_of(response), "\"except\" is not a valid client id");
}

// Lines are numbered from 1, blank ones included; good lines are published, bad ones listed.
TEST(ApiTest, ABatchReportsAcceptedAndRejectedLinesWithTheirNumbers) {
    ApiUnderTest served;
    const std::string body =
        "{\"to\":\"a\",\"data\":1}\n"          // 1: a send
        "not json\n"                           // 2
        "\n"                                   // 3: blank, skipped
        "{\"to\":\"*\",\"data\":\"all\"}\r\n"  // 4: a broadcast, CRLF
        "{\"data\":\"x\"}\n"                   // 5
        "{\"to\":\"b\",\"data\":2,\"x\":0}";   // 6, no final newline
    const ApiResponse response = served.post("/api/v1/batch", body);
    EXPECT_EQ(response.status, 202u);
    const json::object answer = body_of(response);
    EXPECT_EQ(answer.at("accepted"), 2);
    EXPECT_EQ(answer.at("rejected"), 3);
    const json::array& errors = answer.at("errors").as_array();
    ASSERT_EQ(errors.size(), 3u) << response.body;
    EXPECT_EQ(errors[0].at("line"), 2);
    EXPECT_TRUE(errors[0].at("error").as_string().starts_with("malformed JSON at byte "));
    EXPECT_EQ(errors[1], (json::object{{"line", 5}, {"error", "missing field \"to\""}}));
    EXPECT_EQ(errors[2], (json::object{{"line", 6}, {"error", "unknown field \"x\""}}));
    EXPECT_EQ(served.http_stats.rejected_batch_lines(), 3u);
    const auto batch_published = [&] {
        return served.dispatcher.totals()
            .published[static_cast<std::size_t>(dispatcher::PublishKind::batch)];
    };
    EXPECT_TRUE(wait_until([&] { return batch_published() == 2; }, 5s))
        << "published " << batch_published();
}

TEST(ApiTest, AnEmptyBatchIs400) {
    ApiUnderTest served;
    for (std::string_view body : {"", "\n", " \r\n\t\n"}) {
        SCOPED_TRACE(json::serialize(json::string(body)));
        const ApiResponse response = served.post("/api/v1/batch", body);
        EXPECT_EQ(response.status, 400u);
        EXPECT_EQ(error_of(response), "empty batch: expected one JSON object per line");
    }
    EXPECT_EQ(served.http_stats.rejected_batch_lines(), 0u);
}

TEST(ApiTest, DisconnectWithACodeAServerMayNotSendIs400) {
    ApiUnderTest served;
    for (int code : {-1, 0, 999, 1001, 1006, 2999, 5000, 70000}) {
        SCOPED_TRACE(code);
        const ApiResponse response =
            served.post("/api/v1/disconnect", R"({"to":"a","code":)" + std::to_string(code) + "}");
        EXPECT_EQ(response.status, 400u);
        EXPECT_EQ(error_of(response), "\"code\" must be 1000 or from 3000 to 4999");
    }
    for (int code : {1000, 3000, 4999}) {
        SCOPED_TRACE(code);
        EXPECT_EQ(
            served.post("/api/v1/disconnect", R"({"to":"a","code":)" + std::to_string(code) + "}")
                .status,
            202u);
    }
}

// A close frame has room for 123 bytes of reason.
TEST(ApiTest, DisconnectWithAReasonOver123BytesIs400) {
    ApiUnderTest served;
    const auto with_reason = [](std::size_t bytes) {
        return R"({"to":"a","reason":")" + std::string(bytes, 'r') + "\"}";
    };
    const ApiResponse too_long = served.post("/api/v1/disconnect", with_reason(124));
    EXPECT_EQ(too_long.status, 400u);
    EXPECT_EQ(error_of(too_long), "\"reason\" is longer than 123 bytes");
    EXPECT_EQ(served.post("/api/v1/disconnect", with_reason(123)).status, 202u);
}

TEST(ApiTest, DisconnectWithoutAValidToIs400) {
    ApiUnderTest served;
    for (std::string_view body : {R"({"code":4000})", R"({"to":"a b"})"}) {
        SCOPED_TRACE(body);
        const ApiResponse response = served.post("/api/v1/disconnect", body);
        EXPECT_EQ(response.status, 400u);
        EXPECT_EQ(error_of(response), "\"to\" is missing or not a valid client id");
    }
}

TEST(ApiTest, ReadinessIs503WhileNotAccepting) {
    ApiUnderTest served;
    const ApiResponse ready = served.call("GET", "/readyz");
    EXPECT_EQ(ready.status, 200u);
    EXPECT_EQ(body_of(ready), (json::object{{"status", "ready"}}));
    served.accepting.store(false);
    const ApiResponse not_ready = served.call("GET", "/readyz");
    EXPECT_EQ(not_ready.status, 503u);
    EXPECT_EQ(body_of(not_ready), (json::object{{"status", "not ready"}}));
}

// Shard `busy` of served holds two commands behind a handler that occupies its thread; with
// publish.max_queue_depth 1 it is overloaded until the returned gate opens.
std::promise<void> overload(ApiUnderTest& served, std::size_t busy) {
    std::promise<void> gate;
    test::hold_shard(served.dispatcher.shard(busy), gate.get_future().share()).wait();
    const std::string id = id_on(served.dispatcher, busy);
    served.dispatcher.send(id, dispatcher::make_payload("1"));
    served.dispatcher.send(id, dispatcher::make_payload("2"));
    return gate;
}

DispatcherConfig overload_config() {
    DispatcherConfig config = two_shards();
    config.max_queue_depth = 1;
    return config;
}

// The producer is told to slow down for the shard that is behind, and only for that shard.
TEST(ApiTest, ASendToAnOverloadedShardIs429WhileTheOtherShardAccepts) {
    ApiUnderTest served(overload_config());
    std::promise<void> gate = overload(served, 0);
    const ApiResponse refused = served.post(
        "/api/v1/send", R"({"to":")" + id_on(served.dispatcher, 0) + R"(","data":"3"})");
    const ApiResponse taken = served.post(
        "/api/v1/send", R"({"to":")" + id_on(served.dispatcher, 1) + R"(","data":"4"})");
    const std::size_t depth = served.dispatcher.shard(0).queue_depth();
    gate.set_value();

    EXPECT_EQ(refused.status, 429u);
    EXPECT_EQ(refused.retry_after, "1");
    EXPECT_EQ(error_of(refused),
              "overloaded: shard 0 has 2 commands waiting (publish.max_queue_depth 1); retry "
              "later");
    EXPECT_EQ(depth, 2u) << "the refused send was queued";
    EXPECT_EQ(served.http_stats.overloaded(dispatcher::OverloadLimit::queue_depth), 1u);
    EXPECT_EQ(taken.status, 202u) << taken.body;
    const auto held = [&](std::size_t shard) {
        return served.dispatcher.shard(shard).stats().held.load();
    };
    EXPECT_TRUE(wait_until([&] { return held(0) == 2 && held(1) == 1; }, 5s));
}

// A broadcast reaches every shard, so one that is behind refuses it.
TEST(ApiTest, ABroadcastWhileAnyShardIsOverloadedIs429) {
    ApiUnderTest served(overload_config());
    std::promise<void> gate = overload(served, 1);
    const ApiResponse refused = served.post("/api/v1/broadcast", R"({"data":"all"})");
    gate.set_value();
    EXPECT_EQ(refused.status, 429u);
    EXPECT_EQ(refused.retry_after, "1");
    EXPECT_TRUE(error_of(refused).starts_with("overloaded: shard 1 has 2 commands waiting"))
        << refused.body;
}

// publish.max_queue_delay: one command held past the limit is enough for 429, with the same
// shape and Retry-After as the depth limit, counted under its own reason; once the shard has
// delivered it, the same send is taken.
TEST(ApiTest, ASendToAShardWhoseOldestCommandWaitedTooLongIs429UntilItCatchesUp) {
    DispatcherConfig config = two_shards();
    config.max_queue_delay = 20ms;
    ApiUnderTest served(config);
    const std::string id = id_on(served.dispatcher, 0);
    std::promise<void> gate;
    test::hold_shard(served.dispatcher.shard(0), gate.get_future().share()).wait();
    served.dispatcher.send(id, dispatcher::make_payload("1"));
    const auto waited_too_long = [&] {
        return served.dispatcher.overload_of(id).limit == dispatcher::OverloadLimit::queue_delay;
    };
    ASSERT_TRUE(wait_until(waited_too_long, 5s)) << "the held command never counted as late";
    const std::string body = R"({"to":")" + id + R"(","data":"2"})";
    const ApiResponse refused = served.post("/api/v1/send", body);
    gate.set_value();

    EXPECT_EQ(refused.status, 429u);
    EXPECT_EQ(refused.retry_after, "1");
    EXPECT_TRUE(error_of(refused).starts_with("overloaded: shard 0's oldest command has waited "))
        << refused.body;
    EXPECT_TRUE(error_of(refused).ends_with(" ms (publish.max_queue_delay 20ms); retry later"))
        << refused.body;
    EXPECT_EQ(served.http_stats.overloaded(dispatcher::OverloadLimit::queue_delay), 1u);
    EXPECT_EQ(served.http_stats.overloaded(dispatcher::OverloadLimit::queue_depth), 0u);
    ASSERT_TRUE(wait_until([&] { return !served.dispatcher.overload_of(id); }, 5s))
        << "still refused once the shard had caught up";
    const ApiResponse taken = served.post("/api/v1/send", body);
    EXPECT_EQ(taken.status, 202u) << taken.body;
    const json::object stats = json::parse(served.call("GET", "/api/v1/stats").body).as_object();
    EXPECT_EQ(stats.at("totals").at("overloaded_by_reason"),
              (json::object{{"queue_depth", 0}, {"queue_delay", 1}}));
}

}  // namespace
}  // namespace shardcast::transport
