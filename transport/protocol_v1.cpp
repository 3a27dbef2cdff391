#include "transport/protocol_v1.hpp"

#include <boost/json.hpp>

#include "transport/connect_token.hpp"

namespace shardcast::transport::v1 {
namespace json = boost::json;

std::optional<Refresh> parse_refresh(std::string_view frame) {
    // Most frames are data: only an object naming "refresh" is parsed.
    const std::size_t first = frame.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos || frame[first] != '{' ||
        frame.find(R"("refresh")") == std::string_view::npos) {
        return std::nullopt;
    }
    boost::system::error_code ec;
    const json::value value = json::parse(frame, ec);
    const json::object* object = value.if_object();
    if (ec || object == nullptr || !object->contains("refresh")) {
        return std::nullopt;
    }
    Refresh refresh;
    const json::string* token = object->at("refresh").if_string();
    if (object->size() != 1 || token == nullptr) {
        refresh.error = R"(expected {"refresh":"<token>"})";
    } else if (token->size() > kMaxTokenBytes) {
        refresh.error = "token too long";
    } else {
        refresh.token.assign(token->data(), token->size());
    }
    return refresh;
}

std::string refreshed(std::optional<std::int64_t> exp) {
    return R"({"refreshed":{"exp":)" + (exp ? std::to_string(*exp) : std::string("null")) + "}}";
}

}  // namespace shardcast::transport::v1
