// FrameSet: which kinds of frame a connection owes its client (pending) or is writing (in
// flight). A plain value on one connection's thread.
#pragma once

#include <cstdint>

namespace shardcast::transport::ws {

// The frames a server writes, in the order one write lays them out: control frames that are
// owed promptly, the session's data, and a close once no data is left before it.
enum class FrameKind : std::uint8_t { pong = 1, ping = 2, reply = 4, data = 8, close = 16 };

class FrameSet {
public:
    bool empty() const { return bits_ == 0; }
    bool has(FrameKind kind) const { return (bits_ & bit(kind)) != 0; }
    void add(FrameKind kind) { bits_ |= bit(kind); }
    // Removes the kind; true when it was there.
    bool take(FrameKind kind) {
        const bool had = has(kind);
        bits_ &= static_cast<std::uint8_t>(~bit(kind));
        return had;
    }

private:
    static std::uint8_t bit(FrameKind kind) { return static_cast<std::uint8_t>(kind); }

    std::uint8_t bits_ = 0;
};

}  // namespace shardcast::transport::ws
