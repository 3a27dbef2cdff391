// hold_shard: occupies a shard's thread with a handler of its own until a gate opens, so a
// test can line up commands, drain turns or other handlers behind it. Any thread.
#pragma once

#include <boost/asio/post.hpp>
#include <future>
#include <memory>

#include "dispatcher/shard.hpp"

namespace shardcast::test {

// The returned future is ready once the thread is held. Handlers posted meanwhile queue
// behind it.
inline std::future<void> hold_shard(dispatcher::Shard& shard, std::shared_future<void> gate) {
    auto holding = std::make_shared<std::promise<void>>();
    auto held = holding->get_future();
    boost::asio::post(shard.io_context(), [holding, gate] {
        holding->set_value();
        gate.wait();
    });
    return held;
}

}  // namespace shardcast::test
