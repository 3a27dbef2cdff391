#include "dispatcher/outbound.hpp"

namespace shardcast::dispatcher {

thread_local Outbound::Cache Outbound::cache_;

Outbound::ThreadCache::ThreadCache() { cache_.enabled = true; }

Outbound::ThreadCache::~ThreadCache() {
    cache_.enabled = false;
    while (cache_.head != nullptr) {
        delete std::exchange(cache_.head, cache_.head->next_free);
    }
    cache_.size = 0;
}

Outbound::Block* Outbound::make_block(Payload payload,
                                      std::chrono::steady_clock::time_point enqueued,
                                      Gauge* bytes,
                                      Position position) {
    if (bytes != nullptr) {
        bytes->add(static_cast<std::int64_t>(payload->size()));
    }
    if (cache_.head == nullptr) {
        return new Block{std::move(payload), enqueued, bytes, std::move(position)};
    }
    Block* block = std::exchange(cache_.head, cache_.head->next_free);
    --cache_.size;
    block->payload = std::move(payload);
    block->enqueued = enqueued;
    block->bytes = bytes;
    block->position = std::move(position);
    block->refs = 1;
    block->next_free = nullptr;
    return block;
}

void Outbound::recycle(Block* block) {
    if (block->bytes != nullptr) {
        block->bytes->add(-static_cast<std::int64_t>(block->payload->size()));
    }
    if (!cache_.enabled || cache_.size >= kCachedBlocks) {
        delete block;
        return;
    }
    block->payload.reset();  // the message goes now; only the block is kept
    block->position.epoch.reset();
    block->next_free = std::exchange(cache_.head, block);
    ++cache_.size;
}

}  // namespace shardcast::dispatcher
