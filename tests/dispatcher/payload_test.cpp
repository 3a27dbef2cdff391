// Content: a message's text and its JSON value, made once however many threads ask.
#include "dispatcher/payload.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace shardcast::dispatcher {
namespace {

TEST(PayloadTest, TextBecomesAJsonStringAndJsonStaysAsItIs) {
    EXPECT_EQ(make_payload("hi")->json(), R"("hi")");
    EXPECT_EQ(make_payload("hi")->text(), "hi");
    EXPECT_EQ(make_json_payload(R"({"n":1})")->json(), R"({"n":1})");
    EXPECT_EQ(make_json_payload(R"({"n":1})")->text(), R"({"n":1})");
}

TEST(PayloadTest, QuoteJsonEscapesWhatJsonRequiresAndKeepsUtf8) {
    EXPECT_EQ(quote_json("a\"b\\c\n\t\x01 é"), "\"a\\\"b\\\\c\\n\\t\\u0001 é\"");
    EXPECT_EQ(quote_json(""), "\"\"");
}

TEST(PayloadTest, JsonFormIsMadeOnceForEveryThread) {
    const Payload payload = make_payload("shared \"text\"");
    std::vector<const char*> seen(8);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < seen.size(); ++i) {
        threads.emplace_back([&, i] { seen[i] = payload->json().data(); });
    }
    for (auto& thread : threads) thread.join();
    for (const char* address : seen) {
        EXPECT_EQ(address, seen.front()) << "two threads got different copies";
    }
    EXPECT_EQ(payload->json(), R"("shared \"text\"")");
}

}  // namespace
}  // namespace shardcast::dispatcher
