// request_target: the path, query parameters (percent-decoded, repeated, broken), and the
// target as a log line shows it, with every token value hidden.
#include "transport/request_target.hpp"

#include <gtest/gtest.h>

#include <string>

namespace shardcast::transport {
namespace {

TEST(RequestTargetTest, PathEndsAtTheQuery) {
    EXPECT_EQ(path_of("/ws/alice?token=x"), "/ws/alice");
    EXPECT_EQ(path_of("/ws"), "/ws");
}

TEST(RequestTargetTest, QueryParamIsPercentDecodedAndFirstWins) {
    EXPECT_EQ(query_param("/ws?a=1&token=a%2Eb+c&token=2", "token"), "a.b c");
    EXPECT_EQ(query_count("/ws?a=1&token=a%2Eb+c&token=2", "token"), 2u);
    EXPECT_EQ(query_param("/ws?a=1", "token"), std::nullopt);
    EXPECT_EQ(query_param("/ws", "token"), std::nullopt);
    EXPECT_EQ(query_param("/ws?token", "token"), "");
    EXPECT_EQ(query_param("/ws?token=%4", "token"), std::nullopt) << "a broken escape";
    EXPECT_EQ(query_param("/ws?token=%zz", "token"), std::nullopt) << "a broken escape";
}

TEST(RequestTargetTest, LoggableTargetHidesEveryTokenValue) {
    const std::string shown = loggable_target("/ws/alice?x=1&token=eyJ.secret.sig&token=again&y");
    EXPECT_EQ(shown, "/ws/alice?x=1&token=***&token=***&y");
    EXPECT_EQ(loggable_target("/ws?token="), "/ws?token=***");
    EXPECT_EQ(loggable_target("/api/v1/stats"), "/api/v1/stats");
}

TEST(RequestTargetTest, LoggableTargetHidesTheTokenBeforeCuttingALongTarget) {
    const std::string token(300, 'T');
    const std::string shown = loggable_target("/ws?token=" + token + "&after=1");
    EXPECT_EQ(shown.find("TTT"), std::string::npos) << shown;
    EXPECT_EQ(shown, "/ws?token=***&after=1");
}

}  // namespace
}  // namespace shardcast::transport
