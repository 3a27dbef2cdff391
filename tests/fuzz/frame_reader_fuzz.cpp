// libFuzzer target: ws::FrameReader, which parses every byte a WebSocket client sends, also
// in the discard mode of a closing connection (FrameReader::discard_messages).
//
// Input: byte 0 picks max_message_size (its low two bits: 125, 1000, 64 KiB, 1 MiB) and when
// to discard (its high six bits, k): never (0), before the first byte (1), or from inside the
// handler of event k - 2 (as a connection starts closing on a message). Byte 1 is 0 to feed
// the rest as one read, or seeds the sizes (1 to 64 bytes) of the reads it is cut into. The
// rest is the client's byte stream. Each read is its own heap block, so ASan sees a read past
// its end. A third reader takes the same reads and starts discarding between two of them
// (the k-th), as a close begun by the server does.
//
// Besides ASan and UBSan, it checks what the reader promises: the same events whether the
// stream comes in one read or in many; no message over max_message_size and no control
// payload over 125 bytes; nothing parsed after an error or a close; an assembly buffer
// bounded by the limit, and at most 4 KiB of it kept while idle; once discarding, no message
// event, no more than a control frame's payload held, and the events before it the same as
// a reader that never discards.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "transport/ws_frame.hpp"

namespace {

using shardcast::fuzz::check;
using shardcast::transport::ws::Event;
using shardcast::transport::ws::FrameReader;

constexpr std::size_t kLimits[] = {125, 1000, 64 * 1024, 1024 * 1024};
constexpr std::size_t kKeptCapacity = 4096;
constexpr std::size_t kMaxControlPayload = 125;

// An event with its views copied out, to compare after the reader has moved on.
struct Seen {
    Event::Kind kind;
    int message_type;
    std::string data;
    std::uint16_t close_code;
    std::string error;
    bool operator==(const Seen&) const = default;
};

// Never discard, or discard before the first byte; otherwise inside the handler of event
// discard_at - kDiscardInHandler.
constexpr std::size_t kNeverDiscard = 0;
constexpr std::size_t kDiscardFirst = 1;
constexpr std::size_t kDiscardInHandler = 2;
// Discarding, the reader holds at most a control frame's payload that spans reads.
constexpr std::size_t kDiscardingCapacity = 2 * kMaxControlPayload + 64;

class Run {
public:
    Run(std::size_t limit, std::size_t discard_at)
        : limit_(limit), discard_at_(discard_at), reader_(limit) {
        if (discard_at_ == kDiscardFirst) discard();
    }

    // Feeds one read; returns whether the reader wants more.
    bool feed(std::vector<char>& bytes) {
        if (stopped_) {
            const bool more = reader_.feed(std::span<char>(bytes), [](const Event&) {
                check(false, "an event after the reader stopped");
            });
            check(!more, "feed() returned true after the reader stopped");
            return false;
        }
        stopped_ = !reader_.feed(std::span<char>(bytes), [this](const Event& e) { record(e); });
        check(reader_.buffer_capacity() <= 2 * (limit_ + kMaxControlPayload) + 64,
              "the assembly buffer outgrew max_message_size");
        check(!reader_.idle() || reader_.buffer_capacity() <= kKeptCapacity,
              "an idle reader kept more than 4 KiB");
        check(!reader_.discarding() || reader_.buffer_capacity() <= kDiscardingCapacity,
              "a discarding reader held more than a control frame");
        return !stopped_;
    }

    // From now on no message event may come.
    void discard() {
        reader_.discard_messages();
        check(reader_.discarding(), "discard_messages() did not set discarding()");
        discarded_after_ = events_.size();
    }

    const std::vector<Seen>& events() const { return events_; }
    std::size_t discarded_after() const { return discarded_after_; }

private:
    void record(const Event& e) {
        switch (e.kind) {
            case Event::Kind::message:
                check(e.data.size() <= limit_, "a message over max_message_size");
                check(!reader_.discarding(), "a message event while discarding");
                break;
            case Event::Kind::ping:
            case Event::Kind::pong:
                check(e.data.size() <= kMaxControlPayload, "a control payload over 125 bytes");
                break;
            case Event::Kind::close:
                check(e.data.size() + 2 <= kMaxControlPayload, "a close reason over 123 bytes");
                break;
            case Event::Kind::error:
                check(e.close_code != 0 && !e.error.empty(), "an error without a code or reason");
                break;
        }
        events_.push_back(Seen{e.kind, static_cast<int>(e.message_type), std::string(e.data),
                               e.close_code, std::string(e.error)});
        if (discard_at_ >= kDiscardInHandler && events_.size() == discard_at_ - 1) discard();
    }

    std::size_t limit_;
    std::size_t discard_at_;
    FrameReader reader_;
    std::vector<Seen> events_;
    std::size_t discarded_after_ = std::numeric_limits<std::size_t>::max();
    bool stopped_ = false;
};

// Cuts the stream into the reads a socket might return: all of it when seed is 0, else 1 to
// 64 bytes each, the same cuts for the same seed.
std::vector<std::vector<char>> cut(std::span<const std::uint8_t> stream, std::uint32_t seed) {
    std::vector<std::vector<char>> reads;
    std::size_t at = 0;
    while (at < stream.size()) {
        std::size_t n = stream.size() - at;
        if (seed != 0) {
            seed = seed * 1103515245u + 12345u;
            n = std::min<std::size_t>(n, 1 + (seed >> 16) % 64);
        }
        reads.emplace_back(stream.begin() + static_cast<std::ptrdiff_t>(at),
                           stream.begin() + static_cast<std::ptrdiff_t>(at + n));
        at += n;
    }
    return reads;
}

// Feeds the reads in turn, calling before(i) ahead of the i-th. Once the reader stops, it is
// fed once more with all that is left: a stopped reader must parse none of it.
template <class Before>
void feed_all(Run& run, std::vector<std::vector<char>> reads, Before&& before) {
    for (std::size_t i = 0; i < reads.size(); ++i) {
        before(i);
        if (!run.feed(reads[i])) {
            std::vector<char> rest;
            for (std::size_t j = i + 1; j < reads.size(); ++j) {
                rest.insert(rest.end(), reads[j].begin(), reads[j].end());
            }
            run.feed(rest);
            return;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) {
        return 0;
    }
    const std::size_t limit = kLimits[data[0] & 3];
    const std::size_t discard_at = data[0] >> 2;
    const std::span<const std::uint8_t> stream(data + 2, size - 2);
    const std::vector<std::vector<char>> reads = cut(stream, data[1]);
    auto nothing = [](std::size_t) {};

    Run whole(limit, discard_at);
    feed_all(whole, cut(stream, 0), nothing);
    Run pieces(limit, discard_at);
    feed_all(pieces, reads, nothing);
    check(whole.events() == pieces.events(), "events differ between one read and many");

    // Discarding from between two reads: what came before is what a reader that never
    // discards saw first.
    Run plain(limit, kNeverDiscard);
    feed_all(plain, reads, nothing);
    Run between(limit, kNeverDiscard);
    feed_all(between, reads, [&](std::size_t i) {
        if (i == discard_at) between.discard();
    });
    const std::size_t before = std::min(between.discarded_after(), between.events().size());
    check(before <= plain.events().size() &&
              std::equal(between.events().begin(),
                         between.events().begin() + static_cast<std::ptrdiff_t>(before),
                         plain.events().begin()),
          "events before discarding differ from a reader that never discards");
    return 0;
}
