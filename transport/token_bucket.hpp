// TokenBucket: a rate limit of a few bytes, for each of a connection's limits. The rate and
// burst are the shard's configuration, passed in, not stored: ten thousand connections keep
// eight bytes per limit. A plain value on one connection's thread.
#pragma once

#include <algorithm>
#include <cstdint>

namespace shardcast::transport {

class TokenBucket {
public:
    // Full: a new connection may send its burst at once.
    explicit TokenBucket(std::uint32_t burst = 0) : tokens_(static_cast<float>(burst)) {}

    // Spends cost tokens at now_ms (a millisecond clock that may wrap), after refilling at
    // rate per second up to burst. False, spending nothing, when there are not enough.
    bool take(std::uint32_t cost, std::uint32_t now_ms, std::uint32_t rate, std::uint32_t burst) {
        const std::uint32_t elapsed = now_ms - last_ms_;  // wraps correctly
        last_ms_ = now_ms;
        tokens_ =
            std::min(static_cast<float>(burst),
                     tokens_ + static_cast<float>(elapsed) * static_cast<float>(rate) / 1000.0f);
        if (tokens_ < static_cast<float>(cost)) {
            return false;
        }
        tokens_ -= static_cast<float>(cost);
        return true;
    }

private:
    float tokens_;
    std::uint32_t last_ms_ = 0;
};

}  // namespace shardcast::transport
