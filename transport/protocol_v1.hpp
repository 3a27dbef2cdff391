// The shardcast.v1 subprotocol (docs/protocol.md): the frames a v1 client receives around
// its data, and the control frames it may send. Pure functions, any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shardcast::transport::v1 {

// A data frame is kDataBefore + the message as a JSON value + kDataAfter.
inline constexpr std::string_view kDataBefore = R"({"data":)";
inline constexpr std::string_view kDataAfter = "}";

// A client's {"refresh":"<token>"}.
struct Refresh {
    std::string token;  // the new token; empty when the frame is malformed
    std::string error;  // why the frame is not a valid refresh
};

// The refresh a text frame asks for, or nullopt when the frame is not a control frame (it
// is data then, for cluster.upstream). A frame is a refresh when it is a JSON object with a
// "refresh" member.
std::optional<Refresh> parse_refresh(std::string_view frame);

// {"refreshed":{"exp":<unix seconds>}}, or "exp":null for a token without one.
std::string refreshed(std::optional<std::int64_t> exp);

}  // namespace shardcast::transport::v1
