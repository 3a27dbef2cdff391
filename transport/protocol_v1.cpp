#include "transport/protocol_v1.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <cstring>

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

std::size_t data_after(char* out, std::uint64_t offset, std::string_view epoch) {
    char* at = out;
    auto put = [&](std::string_view text) {
        std::memcpy(at, text.data(), text.size());
        at += text.size();
    };
    if (offset == 0) {
        put("}");
        return 1;
    }
    put(R"(,"offset":)");
    at = std::to_chars(at, out + kMaxDataAfter, offset).ptr;
    put(R"(,"epoch":")");
    put(epoch.substr(0, kMaxEpochBytes));
    put(R"("})");
    return static_cast<std::size_t>(at - out);
}

bool valid_epoch(std::string_view epoch) {
    return !epoch.empty() && epoch.size() <= kMaxEpochBytes &&
           std::all_of(epoch.begin(), epoch.end(), [](char c) {
               return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                      c == ':' || c == '-';
           });
}

std::string gap(std::uint64_t since, std::string_view epoch, std::string_view reason) {
    return R"({"gap":{"since":)" + std::to_string(since) + R"(,"epoch":")" +
           std::string(epoch.substr(0, kMaxEpochBytes)) + R"(","reason":")" + std::string(reason) +
           R"("}})";
}

std::string refreshed(std::optional<std::int64_t> exp) {
    return R"({"refreshed":{"exp":)" + (exp ? std::to_string(*exp) : std::string("null")) + "}}";
}

}  // namespace shardcast::transport::v1
