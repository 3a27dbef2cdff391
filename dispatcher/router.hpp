// Router: maps a client id to its shard with a stable hash. Stateless, any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace shardcast::dispatcher {

// FNV-1a, 64 bit. Stable across builds, platforms and restarts, unlike std::hash,
// so an id lands on the same shard index in every instance with the same shard count.
constexpr std::uint64_t stable_hash(std::string_view id) {
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char c : id) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

class Router {
public:
    explicit Router(std::size_t shard_count) : shard_count_(shard_count) {}

    std::size_t shard_of(std::string_view client_id) const {
        return static_cast<std::size_t>(stable_hash(client_id) % shard_count_);
    }
    std::size_t shard_count() const { return shard_count_; }

private:
    std::size_t shard_count_;
};

}  // namespace shardcast::dispatcher
