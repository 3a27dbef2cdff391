// Outbound: one message as the sessions of one shard queue it, with when it was published.
//
// A broadcast puts one message into every session of a shard. Counted by the Payload's
// shared_ptr, that was a locked instruction per delivery and another per finished write: a
// third of the server's CPU in a burst fan-out. Only the shard thread ever copies or drops an
// Outbound, so its count is a plain integer, and the Payload inside, with its atomic count,
// is released once, when the last session lets go. A queue slot is one pointer.
//
// A targeted send makes one block per message. A shard thread keeps the blocks it frees for
// reuse (ThreadCache): malloc and free of them took a tenth of the CPU of a busy shard.
//
// Thread contract: created, copied and destroyed on one shard's thread only (or on the
// thread that destroys the shard, after its thread has ended).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "dispatcher/payload.hpp"
#include "dispatcher/position.hpp"
#include "dispatcher/shard_stats.hpp"

namespace shardcast::dispatcher {

class Outbound {
public:
    Outbound() = default;
    // bytes, when given, is the shard's count of the bytes its messages hold: the message
    // adds its size while it exists, once however many sessions share it. position is its
    // place in the stream clients resume from.
    Outbound(Payload payload,
             std::chrono::steady_clock::time_point enqueued,
             Gauge* bytes = nullptr,
             Position position = {})
        : block_(make_block(std::move(payload), enqueued, bytes, std::move(position))) {}
    Outbound(const Outbound& other) noexcept : block_(other.block_) {
        if (block_ != nullptr) ++block_->refs;
    }
    Outbound(Outbound&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
    Outbound& operator=(Outbound other) noexcept {
        std::swap(block_, other.block_);
        return *this;
    }
    ~Outbound() {
        if (block_ != nullptr && --block_->refs == 0) recycle(block_);
    }

    // Preconditions: not default-constructed or moved from.
    const Content& content() const { return *block_->payload; }
    const std::string& text() const { return block_->payload->text(); }
    std::size_t size() const { return block_->payload->size(); }
    std::chrono::steady_clock::time_point enqueued() const { return block_->enqueued; }
    std::uint64_t offset() const { return block_->position.offset; }
    // Null for the shard's own epoch.
    const std::string* epoch() const { return block_->position.epoch.get(); }

    bool empty() const { return block_ == nullptr; }

    // While one exists on a thread, that thread keeps up to kCachedBlocks freed blocks for
    // reuse; its destructor frees them. A shard thread holds one for its whole run. Blocks
    // freed on other threads go straight back to the allocator.
    class ThreadCache {
    public:
        ThreadCache();
        ThreadCache(const ThreadCache&) = delete;
        ThreadCache& operator=(const ThreadCache&) = delete;
        ~ThreadCache();
    };
    static constexpr std::size_t kCachedBlocks = 4096;

private:
    struct Block {
        Payload payload;
        std::chrono::steady_clock::time_point enqueued;
        Gauge* bytes = nullptr;  // counts the payload's size while the block holds it
        Position position;
        std::uint32_t refs = 1;
        Block* next_free = nullptr;  // while in the thread's cache
    };
    // The calling thread's freed blocks. Plain data, so the thread_local needs no guard and
    // no destructor: it is off until a ThreadCache turns it on.
    struct Cache {
        Block* head = nullptr;  // linked through next_free
        std::size_t size = 0;
        bool enabled = false;
    };
    static thread_local Cache cache_;

    static Block* make_block(Payload payload,
                             std::chrono::steady_clock::time_point enqueued,
                             Gauge* bytes,
                             Position position);
    static void recycle(Block* block);

    Block* block_ = nullptr;
};

}  // namespace shardcast::dispatcher
