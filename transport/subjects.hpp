// Subjects: the NATS subject scheme of a cluster, in one place. Pure values, any thread.
//
//   <prefix>.client.<id>    messages for one client id (payload: the text to deliver);
//                           also claims and disconnects, marked by a Shardcast-Op header
//   <prefix>.broadcast      messages for every client
//   <prefix>.upstream.<id>  frames the client sent, with cluster.upstream
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace shardcast::transport {

class Subjects {
public:
    explicit Subjects(std::string_view prefix)
        : client_(std::string(prefix) + ".client."),
          broadcast_(std::string(prefix) + ".broadcast"),
          upstream_(std::string(prefix) + ".upstream.") {}

    std::string client(std::string_view id) const { return client_ + std::string(id); }
    const std::string& broadcast() const { return broadcast_; }
    std::string upstream(std::string_view id) const { return upstream_ + std::string(id); }

    // The client id a client subject names, or nullopt for any other subject.
    std::optional<std::string_view> client_id_of(std::string_view subject) const {
        if (subject.size() <= client_.size() || subject.substr(0, client_.size()) != client_) {
            return std::nullopt;
        }
        return subject.substr(client_.size());
    }

private:
    std::string client_;
    std::string broadcast_;
    std::string upstream_;
};

// Headers of the node-to-node messages on client subjects. A message without Shardcast-Op
// is data, whoever published it.
namespace header {
inline constexpr const char* kOp = "Shardcast-Op";          // "claim" or "disconnect"
inline constexpr const char* kNode = "Shardcast-Node";      // the publishing node
inline constexpr const char* kSince = "Shardcast-Since";    // claim: Unix time in ns
inline constexpr const char* kCode = "Shardcast-Code";      // disconnect: the close code
inline constexpr const char* kExcept = "Shardcast-Except";  // broadcast: the id to skip
// Data: "json" when the payload is a JSON value other than a string (what the publish API
// took as {"data":{...}}), so shardcast.v1 clients on every node see the same value.
inline constexpr const char* kData = "Shardcast-Data";
// Upstream: the info claim of the client's connect token (a JSON object), when it has one.
inline constexpr const char* kInfo = "Shardcast-Info";
}  // namespace header

}  // namespace shardcast::transport
