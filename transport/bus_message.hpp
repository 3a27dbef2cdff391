// BusMessage: what the bus and the cluster's history share about NATS messages: an owned
// natsMsg built with headers, reading a header, and the payload a data message carries.
// Pure helpers, any thread.
#pragma once

#include <nats/nats.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "dispatcher/payload.hpp"
#include "transport/bus_stats.hpp"

namespace shardcast::transport {

class BusMessage {
public:
    BusMessage(const std::string& subject, std::string_view data);
    BusMessage(const BusMessage&) = delete;
    BusMessage& operator=(const BusMessage&) = delete;
    ~BusMessage() { natsMsg_Destroy(msg_); }

    BusMessage& set(const char* key, const std::string& value);
    natsStatus publish(natsConnection* connection);
    // Gives the message up, to a call that takes it over.
    natsMsg* release() { return std::exchange(msg_, nullptr); }

private:
    natsMsg* msg_ = nullptr;
};

std::optional<std::string_view> header_of(natsMsg* msg, const char* key);
std::string_view data_of(natsMsg* msg);

// A data message's payload: UTF-8 text, since clients receive text frames, or (header
// Shardcast-Data: json) a JSON value, which must parse, since shardcast.v1 clients receive it
// as one. Null when it is neither; error then says why.
dispatcher::Payload payload_of(natsMsg* msg, BusReceiveError& error);

}  // namespace shardcast::transport
