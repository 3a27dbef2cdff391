// The shardcast.v1 subprotocol (docs/protocol.md): the frames a v1 client receives around
// its data, and the control frames it may send. Pure functions, any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shardcast::transport::v1 {

// A data frame is kDataBefore + the message as a JSON value + what data_after() writes:
// {"data":<value>,"offset":<offset>,"epoch":"<epoch>"}.
inline constexpr std::string_view kDataBefore = R"({"data":)";
// The longest epoch a frame carries; and so the most data_after() writes.
inline constexpr std::size_t kMaxEpochBytes = 64;
inline constexpr std::size_t kMaxDataAfter = 10 + 20 + 10 + kMaxEpochBytes + 2;

// Writes ,"offset":<offset>,"epoch":"<epoch>"} into out (room for kMaxDataAfter) and returns
// its length; only } for offset 0, a message that was not stored. The epoch holds only
// [A-Za-z0-9._:-] (valid_epoch), so it needs no escaping.
std::size_t data_after(char* out, std::uint64_t offset, std::string_view epoch);

// 1 to kMaxEpochBytes of A-Z a-z 0-9 . _ : -, as a resume's epoch must be.
bool valid_epoch(std::string_view epoch);

// {"gap":{"since":<since>,"epoch":"<epoch>","reason":"<reason>"}}: what a resume from since
// in epoch lacks, said before what it replays.
std::string gap(std::uint64_t since, std::string_view epoch, std::string_view reason);

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
