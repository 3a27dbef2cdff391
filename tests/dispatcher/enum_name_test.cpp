// enum_name: every enum's names and count come from the enum itself, so the labels metrics
// and JSON use are the enumerators, in order, and a new enumerator is counted at once.
#include "dispatcher/enum_name.hpp"

#include <gtest/gtest.h>

#include "dispatcher/failure_reason.hpp"
#include "dispatcher/removal_reason.hpp"

namespace shardcast {
namespace {

enum class Fruit : unsigned char { apple, blood_orange, kiwi };

TEST(EnumNameTest, NamesAndCountComeFromTheEnumerators) {
    static_assert(enum_count<Fruit> == 3);
    static_assert(enum_name(Fruit::blood_orange) == "blood_orange");
    EXPECT_EQ(enum_names<Fruit>[2], "kiwi");
    EXPECT_EQ(enum_name(static_cast<Fruit>(7)), "unknown");
}

TEST(EnumNameTest, LabelsOfTheCountedReasons) {
    static_assert(dispatcher::kFailureReasonCount == 7);
    EXPECT_EQ(enum_name(dispatcher::FailureReason::no_session), "no_session");
    EXPECT_EQ(enum_name(dispatcher::FailureReason::bus_unavailable), "bus_unavailable");
    EXPECT_EQ(enum_name(dispatcher::RemovalReason::refresh_refused), "refresh_refused");
}

}  // namespace
}  // namespace shardcast
