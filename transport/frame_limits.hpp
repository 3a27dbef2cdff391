// FrameLimits: what one client's frames may cost its shard. Per connection, token buckets for
// messages, pings (each costs the shard a pong) and payload bytes; per shard, a budget for the
// memory unfinished messages hold (PartialBudget). A plain value on its connection's (and
// shard's) thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "transport/limits_config.hpp"
#include "transport/token_bucket.hpp"
#include "transport/ws_frame.hpp"

namespace shardcast::transport {

// Bytes a shard's connections hold for messages their clients have not finished. Written by
// its shard's thread only; read by the metrics scrape.
struct PartialBudget {
    std::atomic<std::int64_t> bytes{0};
    void add(std::int64_t n) {
        bytes.store(bytes.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
};

class FrameLimits {
public:
    explicit FrameLimits(const LimitsConfig& config)
        : messages_(config.client_message_burst),
          pings_(config.client_ping_burst),
          bytes_(config.client_byte_burst) {}

    // Whether the client may send this event now (at now_ms, a millisecond clock).
    bool allow(const ws::Event& event, std::uint32_t now_ms, const LimitsConfig& config) {
        const auto size = static_cast<std::uint32_t>(event.data.size());
        if (!bytes_.take(size, now_ms, config.client_bytes_per_second, config.client_byte_burst)) {
            return false;
        }
        switch (event.kind) {
            case ws::Event::Kind::message:
            case ws::Event::Kind::pong:
                return messages_.take(1, now_ms, config.client_messages_per_second,
                                      config.client_message_burst);
            case ws::Event::Kind::ping:
                return pings_.take(1, now_ms, config.client_pings_per_second,
                                   config.client_ping_burst);
            case ws::Event::Kind::close:
            case ws::Event::Kind::error:
                return true;
        }
        return true;
    }

    // A millisecond clock for allow(): wraps every 49 days, which the buckets allow for.
    static std::uint32_t now_ms() {
        return static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::steady_clock::now().time_since_epoch())
                                              .count());
    }

private:
    TokenBucket messages_;
    TokenBucket pings_;
    TokenBucket bytes_;
};

}  // namespace shardcast::transport
