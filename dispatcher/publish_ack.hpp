// PublishAck: tells a producer that the shards its messages went to have taken them. One is
// shared by the ack commands a Dispatcher::when_taken call puts behind those messages, one
// per shard; each shard that reaches its ack in stamp order, while still delivering, marks
// it taken at the end of that turn's writes. The last reference to go runs done once, on
// the thread that drops it (a shard's, or the caller's when nothing could be queued), with
// true only if every ack was taken.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <utility>

namespace shardcast::dispatcher {

class PublishAck {
public:
    using Done = std::function<void(bool taken)>;

    PublishAck(std::size_t shards, Done done) : missing_(shards), done_(std::move(done)) {}
    PublishAck(const PublishAck&) = delete;
    PublishAck& operator=(const PublishAck&) = delete;
    ~PublishAck() { done_(missing_.load(std::memory_order_acquire) == 0); }

    // One shard has delivered everything queued to it before its ack.
    void taken() { missing_.fetch_sub(1, std::memory_order_acq_rel); }

private:
    std::atomic<std::size_t> missing_;
    const Done done_;
};

}  // namespace shardcast::dispatcher
