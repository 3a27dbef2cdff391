// SequenceOrder: items that cross within the window are released lowest sequence first; a
// window of zero releases each at once; stop() hands over what is still held.
#include "transport/sequence_order.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace shardcast::transport {
namespace {

using namespace std::chrono_literals;

class Released {
public:
    void add(int item, std::uint64_t sequence) {
        std::lock_guard lock(mutex_);
        items_.push_back(item);
        sequences_.push_back(sequence);
    }
    std::vector<std::uint64_t> sequences() const {
        std::lock_guard lock(mutex_);
        return sequences_;
    }
    // Waits, at most 5 s, until `count` items were released.
    bool wait_for(std::size_t count) const {
        for (int i = 0; i < 5'000; ++i) {
            if (sequences().size() >= count) return true;
            std::this_thread::sleep_for(1ms);
        }
        return false;
    }

private:
    mutable std::mutex mutex_;
    std::vector<int> items_;
    std::vector<std::uint64_t> sequences_;
};

TEST(SequenceOrderTest, ItemsThatCrossedAreReleasedInSequenceOrder) {
    Released released;
    SequenceOrder<int> order(500ms, [&](int item, std::uint64_t s) { released.add(item, s); });
    EXPECT_EQ(order.hold(37, 37), Arrival::in_order);
    EXPECT_EQ(order.hold(40, 40), Arrival::in_order);
    // Overtaken by 37 and 40, well within the window.
    EXPECT_EQ(order.hold(36, 36), Arrival::overtaken);
    EXPECT_EQ(order.hold(38, 38), Arrival::overtaken);
    ASSERT_TRUE(released.wait_for(4));
    EXPECT_EQ(released.sequences(), (std::vector<std::uint64_t>{36, 37, 38, 40}));
}

TEST(SequenceOrderTest, AnItemBehindOneAlreadyReleasedIsLate) {
    Released released;
    SequenceOrder<int> order(10ms, [&](int item, std::uint64_t s) { released.add(item, s); });
    EXPECT_EQ(order.hold(5, 5), Arrival::in_order);
    ASSERT_TRUE(released.wait_for(1));
    EXPECT_EQ(order.hold(4, 4), Arrival::late);  // the window could not put it back
    EXPECT_EQ(order.hold(6, 6), Arrival::in_order);
    ASSERT_TRUE(released.wait_for(3));
    EXPECT_EQ(released.sequences(), (std::vector<std::uint64_t>{5, 4, 6}));
}

TEST(SequenceOrderTest, AnItemIsHeldForTheWindowThenReleased) {
    Released released;
    SequenceOrder<int> order(30ms, [&](int item, std::uint64_t s) { released.add(item, s); });
    const auto start = std::chrono::steady_clock::now();
    order.hold(1, 1);
    ASSERT_TRUE(released.wait_for(1));
    EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
}

TEST(SequenceOrderTest, ZeroWindowReleasesAtOnceOnTheCallersThread) {
    std::vector<std::uint64_t> sequences;
    SequenceOrder<int> order(0ms, [&](int, std::uint64_t s) { sequences.push_back(s); });
    EXPECT_EQ(order.hold(2, 2), Arrival::in_order);
    EXPECT_EQ(order.hold(1, 1), Arrival::late);  // with no window, every overtaken item is
    EXPECT_EQ(sequences, (std::vector<std::uint64_t>{2, 1}));
}

TEST(SequenceOrderTest, StopHandsOverWhatIsStillHeld) {
    Released released;
    SequenceOrder<int> order(10s, [&](int item, std::uint64_t s) { released.add(item, s); });
    order.hold(5, 5);
    order.hold(6, 6);
    std::vector<int> dropped;
    order.stop([&](int item) { dropped.push_back(item); });
    EXPECT_TRUE(released.sequences().empty());
    EXPECT_EQ(dropped.size(), 2u);
    order.stop();  // a second stop does nothing
}

TEST(SequenceOrderTest, ManyProducersEachReleasedOnceInOrder) {
    Released released;
    // A window far longer than the holds take, even on a loaded machine under TSan.
    SequenceOrder<int> order(2s, [&](int item, std::uint64_t s) { released.add(item, s); });
    std::vector<std::thread> producers;
    for (int p = 0; p < 4; ++p) {
        producers.emplace_back([&order, p] {
            for (int i = 0; i < 250; ++i) order.hold(i, std::uint64_t(i * 4 + p + 1));
        });
    }
    for (auto& t : producers) t.join();
    ASSERT_TRUE(released.wait_for(1000));
    const auto sequences = released.sequences();
    ASSERT_EQ(sequences.size(), 1000u);
    for (std::size_t i = 0; i < sequences.size(); ++i) EXPECT_EQ(sequences[i], i + 1);
}

}  // namespace
}  // namespace shardcast::transport
