// JsonReader: documents parse one after another in reused memory, each intact until the
// next; a malformed one is reported with its byte and leaves the reader usable; documents
// larger than the arena or nested deeper than the parser's buffer still parse.
#include "transport/json_reader.hpp"

#include <gtest/gtest.h>

#include <string>

namespace shardcast::transport {
namespace {

namespace json = boost::json;

std::string string_field(const json::value& value, std::string_view key) {
    const json::string& s = value.as_object().at(key).as_string();
    return std::string(s.data(), s.size());
}

TEST(JsonReaderTest, ParsesDocumentsOneAfterAnother) {
    JsonReader reader;
    for (int i = 0; i < 1000; ++i) {
        const std::string to = "client-" + std::to_string(i);
        const std::string data(200 + i % 50, static_cast<char>('a' + i % 26));
        ASSERT_EQ(reader.parse(R"({"to":")" + to + R"(","data":")" + data + R"("})"), "");
        EXPECT_EQ(string_field(reader.value(), "to"), to);
        EXPECT_EQ(string_field(reader.value(), "data"), data);
    }
}

TEST(JsonReaderTest, ReportsTheByteOfAMalformedDocumentAndRecovers) {
    JsonReader reader;
    const std::string problem = reader.parse(R"({"to":"a",)");
    EXPECT_EQ(problem.rfind("malformed JSON at byte 10: ", 0), 0u) << problem;
    EXPECT_EQ(reader.parse(R"({"to":"a"} x)").rfind("malformed JSON at byte 11: ", 0), 0u);
    ASSERT_EQ(reader.parse(R"({"to":"b"})"), "");
    EXPECT_EQ(string_field(reader.value(), "to"), "b");
}

TEST(JsonReaderTest, ParsesDocumentsLargerThanItsArena) {
    JsonReader reader;
    const std::string big(1 << 20, 'x');
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(reader.parse(R"({"data":")" + big + R"("})"), "");
        EXPECT_EQ(string_field(reader.value(), "data"), big);
        ASSERT_EQ(reader.parse(R"({"data":"small"})"), "");
        EXPECT_EQ(string_field(reader.value(), "data"), "small");
    }
}

TEST(JsonReaderTest, ParsesDeepAndWideDocuments) {
    JsonReader reader;
    const int depth = 30;  // Boost.JSON's default limit is 32
    std::string deep = std::string(depth, '[') + "1" + std::string(depth, ']');
    ASSERT_EQ(reader.parse(deep), "");
    const json::value* inner = &reader.value();
    for (int i = 0; i < depth; ++i) inner = &inner->as_array().at(0);
    EXPECT_EQ(inner->as_int64(), 1);

    std::string wide = "{";
    for (int i = 0; i < 2000; ++i) {
        wide += std::string(i == 0 ? "" : ",") + "\"k" + std::to_string(i) + "\":1";
    }
    wide += "}";
    ASSERT_EQ(reader.parse(wide), "");
    EXPECT_EQ(reader.value().as_object().size(), 2000u);
}

}  // namespace
}  // namespace shardcast::transport
