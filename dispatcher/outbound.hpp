// Outbound: one message as the sessions of one shard queue it, with when it was published.
//
// A broadcast puts one message into every session of a shard. Counted by the Payload's
// shared_ptr, that was a locked instruction per delivery and another per finished write: a
// third of the server's CPU in a burst fan-out. Only the shard thread ever copies or drops an
// Outbound, so its count is a plain integer, and the Payload inside, with its atomic count,
// is released once, when the last session lets go. A queue slot is one pointer.
//
// Thread contract: created, copied and destroyed on one shard's thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "dispatcher/payload.hpp"

namespace shardcast::dispatcher {

class Outbound {
public:
    Outbound() = default;
    Outbound(Payload payload, std::chrono::steady_clock::time_point enqueued)
        : block_(new Block{std::move(payload), enqueued, 1}) {}
    Outbound(const Outbound& other) noexcept : block_(other.block_) {
        if (block_ != nullptr) ++block_->refs;
    }
    Outbound(Outbound&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
    Outbound& operator=(Outbound other) noexcept {
        std::swap(block_, other.block_);
        return *this;
    }
    ~Outbound() {
        if (block_ != nullptr && --block_->refs == 0) delete block_;
    }

    // Preconditions: not default-constructed or moved from.
    const std::string& text() const { return *block_->payload; }
    std::size_t size() const { return block_->payload->size(); }
    std::chrono::steady_clock::time_point enqueued() const { return block_->enqueued; }

    bool empty() const { return block_ == nullptr; }

private:
    struct Block {
        Payload payload;
        std::chrono::steady_clock::time_point enqueued;
        std::uint32_t refs;
    };
    Block* block_ = nullptr;
};

}  // namespace shardcast::dispatcher
