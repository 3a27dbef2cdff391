#include "transport/bus_message.hpp"

#include <boost/json.hpp>

#include "transport/subjects.hpp"
#include "transport/utf8.hpp"

namespace shardcast::transport {

BusMessage::BusMessage(const std::string& subject, std::string_view data) {
    natsMsg_Create(&msg_, subject.c_str(), nullptr, data.data(), static_cast<int>(data.size()));
}

BusMessage& BusMessage::set(const char* key, const std::string& value) {
    if (msg_ != nullptr) {
        natsMsgHeader_Set(msg_, key, value.c_str());
    }
    return *this;
}

natsStatus BusMessage::publish(natsConnection* connection) {
    return msg_ == nullptr ? NATS_NO_MEMORY : natsConnection_PublishMsg(connection, msg_);
}

std::optional<std::string_view> header_of(natsMsg* msg, const char* key) {
    const char* value = nullptr;
    if (natsMsgHeader_Get(msg, key, &value) != NATS_OK || value == nullptr) {
        return std::nullopt;
    }
    return std::string_view(value);
}

std::string_view data_of(natsMsg* msg) {
    return {natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))};
}

dispatcher::Payload payload_of(natsMsg* msg, BusReceiveError& error) {
    const std::string_view data = data_of(msg);
    if (!valid_utf8(data)) {
        error = BusReceiveError::invalid_utf8;
        return nullptr;
    }
    if (header_of(msg, header::kData) != "json") {
        return dispatcher::make_payload(std::string(data));
    }
    boost::system::error_code ec;
    boost::json::parse(data, ec);
    if (ec) {
        error = BusReceiveError::bad_header;
        return nullptr;
    }
    return dispatcher::make_json_payload(std::string(data));
}

}  // namespace shardcast::transport
