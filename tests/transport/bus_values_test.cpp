// The pure pieces of the cluster bus: the subject scheme, which client ids are safe as subject
// tokens, and the UTF-8 check on payloads from the bus.
#include <gtest/gtest.h>

#include "transport/client_id.hpp"
#include "transport/subjects.hpp"
#include "transport/utf8.hpp"

namespace shardcast::transport {
namespace {

TEST(SubjectsTest, NamesEverySubjectUnderThePrefix) {
    const Subjects subjects("acme.push");
    EXPECT_EQ(subjects.client("user-1"), "acme.push.client.user-1");
    EXPECT_EQ(subjects.broadcast(), "acme.push.broadcast");
    EXPECT_EQ(subjects.upstream("a.b"), "acme.push.upstream.a.b");
}

TEST(SubjectsTest, ReadsTheClientIdBackFromAClientSubject) {
    const Subjects subjects("shardcast");
    EXPECT_EQ(subjects.client_id_of("shardcast.client.a.b:c"), "a.b:c");
    EXPECT_EQ(subjects.client_id_of("shardcast.client."), std::nullopt);
    EXPECT_EQ(subjects.client_id_of("shardcast.broadcast"), std::nullopt);
    EXPECT_EQ(subjects.client_id_of("other.client.x"), std::nullopt);
}

TEST(ClientIdTest, DotsMaySeparateButNeverLeaveAnEmptySubjectToken) {
    EXPECT_TRUE(valid_client_id("a.b"));
    EXPECT_TRUE(valid_client_id("user@example.com"));
    EXPECT_FALSE(valid_client_id("."));
    EXPECT_FALSE(valid_client_id(".a"));
    EXPECT_FALSE(valid_client_id("a."));
    EXPECT_FALSE(valid_client_id("a..b"));
    EXPECT_FALSE(valid_client_id("a*"));
    EXPECT_FALSE(valid_client_id("a>"));
    EXPECT_FALSE(valid_client_id("a b"));
}

TEST(Utf8Test, AcceptsWellFormedText) {
    EXPECT_TRUE(valid_utf8(""));
    EXPECT_TRUE(valid_utf8("plain ascii"));
    EXPECT_TRUE(valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));  // é € 😀
    EXPECT_TRUE(valid_utf8("\xF4\x8F\xBF\xBF"));                           // U+10FFFF
}

TEST(Utf8Test, RejectsWhatAStrictClientWouldClose) {
    EXPECT_FALSE(valid_utf8("\xC3"));              // truncated
    EXPECT_FALSE(valid_utf8("\xC0\xAF"));          // overlong '/'
    EXPECT_FALSE(valid_utf8("\xE0\x80\xAF"));      // overlong, three bytes
    EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));      // surrogate U+D800
    EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
    EXPECT_FALSE(valid_utf8("\xFF"));
    EXPECT_FALSE(valid_utf8("a\x80z"));  // stray continuation byte
}

}  // namespace
}  // namespace shardcast::transport
