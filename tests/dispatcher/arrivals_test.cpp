// Arrivals with a scripted source in place of the Inbox: each pop_bulk() returns the next
// chunk of the script, and an empty chunk is a pass that found every producer empty. One
// behaviour per test; no threads, so the order of every pop is the script's.
#include "dispatcher/arrivals.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace shardcast::dispatcher {
namespace {

// A command whose stamp is also written into its id, so a test can tell that the command that
// comes out is the one that went in, not only one with the same stamp.
Command stamped(std::uint64_t stamp) {
    Command command;
    command.stamp = stamp;
    command.client_id = "c" + std::to_string(stamp);
    return command;
}

// Plays back a script of pops. Each pop_bulk() call takes the next chunk (never more than max:
// a script that asks for more fails the test); once the script runs out, every pass is empty.
class ScriptedSource {
public:
    // One pop that returns these stamps, in this order (one producer's commands come in
    // stamp order; several producers' come grouped by producer).
    ScriptedSource& then(const std::vector<std::uint64_t>& stamps) {
        std::vector<Command> chunk;
        for (std::uint64_t stamp : stamps) chunk.push_back(stamped(stamp));
        chunks_.push_back(std::move(chunk));
        return *this;
    }
    // A pass that finds every producer empty.
    ScriptedSource& then_empty() { return then({}); }
    // count commands stamped first, first + 1, ... in pops of Arrivals::kPopChunk.
    ScriptedSource& then_run(std::uint64_t first, std::size_t count) {
        for (std::size_t done = 0; done < count;) {
            std::vector<std::uint64_t> stamps;
            for (; done < count && stamps.size() < Arrivals::kPopChunk; ++done) {
                stamps.push_back(first + done);
            }
            then(stamps);
        }
        return *this;
    }

    std::size_t pop_bulk(std::vector<Command>& out, std::size_t max) {
        ++calls_;
        if (chunks_.empty()) {
            return 0;
        }
        std::vector<Command> chunk = std::move(chunks_.front());
        chunks_.pop_front();
        EXPECT_LE(chunk.size(), max) << "the script pops more than asked for";
        for (Command& command : chunk) out.push_back(std::move(command));
        return chunk.size();
    }

    // pop_bulk() calls so far, and the scripted pops not yet played.
    std::size_t calls() const { return calls_; }
    std::size_t chunks_left() const { return chunks_.size(); }

private:
    std::deque<std::vector<Command>> chunks_;
    std::size_t calls_ = 0;
};

// Delivers everything the batch holds and returns the stamps in delivery order, checking that
// each command is the one its stamp names.
std::vector<std::uint64_t> deliver_all(Arrivals& arrivals) {
    std::vector<std::uint64_t> stamps;
    while (arrivals.has_next()) {
        const Command& command = arrivals.next();
        EXPECT_EQ(command.client_id, "c" + std::to_string(command.stamp));
        stamps.push_back(command.stamp);
    }
    return stamps;
}

std::vector<std::uint64_t> run(std::uint64_t first, std::size_t count) {
    std::vector<std::uint64_t> stamps;
    for (std::size_t i = 0; i < count; ++i) stamps.push_back(first + i);
    return stamps;
}

TEST(ArrivalsTest, StartsEmpty) {
    Arrivals arrivals;
    EXPECT_TRUE(arrivals.empty());
    EXPECT_FALSE(arrivals.has_next());
    EXPECT_EQ(arrivals.waiting(), 0u);
    EXPECT_EQ(arrivals.undelivered(), 0u);
}

TEST(ArrivalsTest, ACollectionThatFindsNothingLeavesItEmpty) {
    Arrivals arrivals;
    ScriptedSource source;
    source.then_empty();
    arrivals.collect(source);
    EXPECT_EQ(source.calls(), 1u);
    EXPECT_TRUE(arrivals.empty());
    EXPECT_FALSE(arrivals.has_next());
}

// Three producers' commands, popped grouped by producer, come out in stamp order.
TEST(ArrivalsTest, CommandsPoppedInOneCollectionComeOutInStampOrder) {
    Arrivals arrivals;
    ScriptedSource source;
    source.then({0, 3, 6}).then({1, 4}).then({2, 5, 7}).then_empty();
    arrivals.collect(source);
    EXPECT_EQ(deliver_all(arrivals), run(0, 8));
}

// A collection goes on popping after a pass that found something, and joins the batch only
// after a pass that found every producer empty: pops after that are the next collection's.
TEST(ArrivalsTest, ACollectionPopsUntilAPassComesUpEmpty) {
    Arrivals arrivals;
    ScriptedSource source;
    source.then({2, 3}).then({1}).then_empty().then({4});
    arrivals.collect(source);
    EXPECT_EQ(source.calls(), 3u);
    EXPECT_EQ(source.chunks_left(), 1u) << "popped past the empty pass";
    EXPECT_EQ(deliver_all(arrivals), (std::vector<std::uint64_t>{1, 2, 3}));
}

// A producer that took its stamp and was preempted before it enqueued: its command arrives a
// collection after later-stamped ones, and is still delivered before those still waiting.
TEST(ArrivalsTest, AnEarlierStampArrivingLaterIsDeliveredBeforeLaterOnesStillWaiting) {
    Arrivals arrivals;
    ScriptedSource source;
    source.then({1, 3, 5}).then_empty();
    arrivals.collect(source);
    ASSERT_TRUE(arrivals.has_next());
    EXPECT_EQ(arrivals.next().stamp, 1u);
    source.then({2, 6}).then({4}).then_empty();
    arrivals.collect(source);
    EXPECT_EQ(deliver_all(arrivals), (std::vector<std::uint64_t>{2, 3, 4, 5, 6}));
}

// What a collection joins after the batch has been delivered in part still goes behind it.
TEST(ArrivalsTest, LaterStampsJoinBehindWhatIsStillWaiting) {
    Arrivals arrivals;
    ScriptedSource source;
    source.then(run(0, 6)).then_empty();
    arrivals.collect(source);
    for (int i = 0; i < 4; ++i) arrivals.next();  // the delivered front is dropped next time
    source.then({8, 9}).then({6, 7}).then_empty();
    arrivals.collect(source);
    EXPECT_EQ(deliver_all(arrivals), run(4, 6));
}

// A flood that never lets a pass come up empty: one call pops kMax commands and stops, joins
// none of them, and the next call goes on with the same collection.
TEST(ArrivalsTest, ACollectionStopsAtKMaxPopsAndGoesOnAtTheNextCall) {
    constexpr std::size_t kMax = Arrivals::kMax;
    Arrivals arrivals;
    ScriptedSource source;
    // Two producers, the second popped first: stamps 1..kMax/2 come after the rest.
    source.then_run(kMax / 2 + 1, kMax / 2).then_run(1, kMax / 2);
    // At the next call: stamp 0, taken first and enqueued last, then one more, then empty.
    source.then({0, kMax + 1}).then_empty();
    arrivals.collect(source);
    EXPECT_EQ(source.calls(), kMax / Arrivals::kPopChunk);
    EXPECT_FALSE(arrivals.has_next()) << "joined the batch before a pass came up empty";
    EXPECT_EQ(arrivals.waiting(), 0u);
    EXPECT_EQ(arrivals.undelivered(), kMax);
    EXPECT_FALSE(arrivals.empty());

    arrivals.collect(source);
    EXPECT_EQ(source.chunks_left(), 0u);
    EXPECT_EQ(arrivals.waiting(), kMax + 2);
    const std::vector<std::uint64_t> delivered = deliver_all(arrivals);
    ASSERT_EQ(delivered.size(), kMax + 2);
    EXPECT_EQ(delivered, run(0, kMax + 2));
}

// A shard that is kMax behind leaves its backlog in the inbox until it catches up.
TEST(ArrivalsTest, NoCollectionBeginsWhileKMaxCommandsWait) {
    constexpr std::size_t kMax = Arrivals::kMax;
    Arrivals arrivals;
    ScriptedSource source;
    source.then_run(0, kMax).then_empty();
    arrivals.collect(source);  // kMax pops
    arrivals.collect(source);  // the empty pass: they join
    ASSERT_EQ(arrivals.waiting(), kMax);
    source.then({kMax}).then_empty();
    const std::size_t calls = source.calls();

    arrivals.collect(source);
    EXPECT_EQ(source.calls(), calls) << "popped while kMax commands wait";
    EXPECT_EQ(arrivals.waiting(), kMax);

    EXPECT_EQ(arrivals.next().stamp, 0u);  // one below the limit: the next call collects
    arrivals.collect(source);
    EXPECT_EQ(source.chunks_left(), 0u);
    EXPECT_EQ(arrivals.waiting(), kMax);
    EXPECT_EQ(deliver_all(arrivals), run(1, kMax));
}

TEST(ArrivalsTest, UndeliveredCountsTheRestOfTheBatchAndACollectionGoingOn) {
    Arrivals arrivals;
    ScriptedSource source;
    source.then(run(0, 5)).then_empty();
    arrivals.collect(source);
    arrivals.next();
    arrivals.next();
    EXPECT_EQ(arrivals.undelivered(), 3u);
    EXPECT_EQ(arrivals.waiting(), 3u);
    source.then_run(100, Arrivals::kMax);  // no empty pass: the collection stays open
    arrivals.collect(source);
    EXPECT_EQ(arrivals.undelivered(), 3u + Arrivals::kMax);
    EXPECT_EQ(arrivals.waiting(), 3u);
}

TEST(ArrivalsTest, IsEmptyOnlyOnceEveryCommandIsDelivered) {
    Arrivals arrivals;
    ScriptedSource source;
    source.then({0, 1}).then_empty();
    arrivals.collect(source);
    EXPECT_FALSE(arrivals.empty());
    arrivals.next();
    EXPECT_FALSE(arrivals.empty());
    arrivals.next();
    EXPECT_TRUE(arrivals.empty());
}

// Delivered commands are dropped, with their payloads, as soon as the whole batch is
// delivered, not at the next collection.
TEST(ArrivalsTest, ReleaseDeliveredDropsTheDeliveredBatchAndItsPayloads) {
    Arrivals arrivals;
    ScriptedSource source;
    source.then({0, 1}).then_empty();
    arrivals.collect(source);
    const Payload payload = make_payload("kept by the batch");
    arrivals.next().payload = payload;
    arrivals.next().payload = payload;
    EXPECT_EQ(payload.use_count(), 3);
    arrivals.release_delivered();
    EXPECT_EQ(payload.use_count(), 1);
    EXPECT_TRUE(arrivals.empty());
    EXPECT_EQ(arrivals.undelivered(), 0u);
}

TEST(ArrivalsTest, ReleaseDeliveredKeepsABatchNotYetDelivered) {
    Arrivals arrivals;
    ScriptedSource source;
    source.then({0, 1, 2}).then_empty();
    arrivals.collect(source);
    arrivals.next();
    arrivals.release_delivered();
    EXPECT_EQ(arrivals.waiting(), 2u);
    EXPECT_EQ(deliver_all(arrivals), (std::vector<std::uint64_t>{1, 2}));
}

// A stopped shard counts what it took and never delivered: the rest of the batch and a
// collection still going on, each once.
TEST(ArrivalsTest, DiscardCountsEveryCommandTakenAndNotDeliveredThenDropsThem) {
    Arrivals arrivals;
    ScriptedSource source;
    source.then({0, 1, 2}).then_empty();
    arrivals.collect(source);
    arrivals.next();
    source.then_run(10, Arrivals::kMax);  // a collection stopped at kMax
    arrivals.collect(source);
    ASSERT_EQ(arrivals.undelivered(), 2u + Arrivals::kMax);

    std::vector<std::uint64_t> counted;
    arrivals.discard([&](const Command& command) { counted.push_back(command.stamp); });
    std::vector<std::uint64_t> expected{1, 2};
    for (std::uint64_t stamp : run(10, Arrivals::kMax)) expected.push_back(stamp);
    EXPECT_EQ(counted, expected);
    EXPECT_TRUE(arrivals.empty());
    EXPECT_EQ(arrivals.undelivered(), 0u);
    EXPECT_FALSE(arrivals.has_next());
}

}  // namespace
}  // namespace shardcast::dispatcher
