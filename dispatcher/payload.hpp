// Payload: the immutable bytes of one message. Any thread may create, copy or read one.
#pragma once

#include <memory>
#include <string>

namespace shardcast::dispatcher {

// Shared, never mutated after creation: a broadcast hands the same bytes to every
// session of every shard, so copying it costs one reference count, not the text.
using Payload = std::shared_ptr<const std::string>;

inline Payload make_payload(std::string text) {
    return std::make_shared<const std::string>(std::move(text));
}

}  // namespace shardcast::dispatcher
