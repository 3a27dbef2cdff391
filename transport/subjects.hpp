// Subjects: the NATS subject scheme of a cluster, in one place. Pure values, any thread.
//
//   <prefix>.client.<id>    messages for one client id (payload: the text to deliver);
//                           also claims and disconnects, marked by a Shardcast-Op header
//   <prefix>.broadcast      messages for every client
//   <prefix>.upstream.<id>  frames the client sent, with cluster.upstream
//
// With history, the cluster's JetStream stream holds (docs/cluster.md#history):
//   <prefix>.history.client.<id>   every message accepted for one client id
//   <prefix>.history.broadcast     every broadcast
//   <prefix>.history.epoch         epoch markers: a new one after messages went unstored
// and, outside the stream, <prefix>.history.broken tells the nodes that some went unstored.
// The stream republishes each message once stored, in stream order, with its sequence in a
// Nats-Sequence header: <prefix>.stored.client.<id>, <prefix>.stored.broadcast and
// <prefix>.stored.epoch. The nodes deliver live from these, so every node sees one client's
// messages in offset order, whichever node accepted them.
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
          upstream_(std::string(prefix) + ".upstream."),
          history_client_(std::string(prefix) + ".history.client."),
          history_broadcast_(std::string(prefix) + ".history.broadcast"),
          history_epoch_(std::string(prefix) + ".history.epoch"),
          history_broken_(std::string(prefix) + ".history.broken"),
          history_all_(std::string(prefix) + ".history.>"),
          stored_all_(std::string(prefix) + ".stored.>"),
          stored_client_(std::string(prefix) + ".stored.client."),
          stored_broadcast_(std::string(prefix) + ".stored.broadcast"),
          stored_epoch_(std::string(prefix) + ".stored.epoch") {}

    std::string client(std::string_view id) const { return client_ + std::string(id); }
    const std::string& broadcast() const { return broadcast_; }
    std::string upstream(std::string_view id) const { return upstream_ + std::string(id); }

    std::string history_client(std::string_view id) const {
        return history_client_ + std::string(id);
    }
    // Every client's history subject at once, for the stream's configuration.
    std::string history_clients() const { return history_client_ + ">"; }
    const std::string& history_broadcast() const { return history_broadcast_; }
    const std::string& history_epoch() const { return history_epoch_; }
    const std::string& history_broken() const { return history_broken_; }
    // The stream's republishing: what it maps, and where to.
    const std::string& history_all() const { return history_all_; }
    const std::string& stored_all() const { return stored_all_; }
    std::string stored_client(std::string_view id) const {
        return stored_client_ + std::string(id);
    }
    const std::string& stored_broadcast() const { return stored_broadcast_; }
    const std::string& stored_epoch() const { return stored_epoch_; }
    // Whether the subject is one the stream republished to.
    bool is_stored(std::string_view subject) const {
        return subject.starts_with(std::string_view(stored_all_).substr(0, stored_all_.size() - 1));
    }

    // The client id a client subject names, or nullopt for any other subject.
    std::optional<std::string_view> client_id_of(std::string_view subject) const {
        return after(client_, subject);
    }
    // The client id a history client subject names, or nullopt for any other subject.
    std::optional<std::string_view> history_client_id_of(std::string_view subject) const {
        return after(history_client_, subject);
    }
    // The client id a republished client subject names, or nullopt for any other subject.
    std::optional<std::string_view> stored_client_id_of(std::string_view subject) const {
        return after(stored_client_, subject);
    }

private:
    static std::optional<std::string_view> after(std::string_view start, std::string_view subject) {
        if (subject.size() <= start.size() || subject.substr(0, start.size()) != start) {
            return std::nullopt;
        }
        return subject.substr(start.size());
    }

    std::string client_;
    std::string broadcast_;
    std::string upstream_;
    std::string history_client_;
    std::string history_broadcast_;
    std::string history_epoch_;
    std::string history_broken_;
    std::string history_all_;
    std::string stored_all_;
    std::string stored_client_;
    std::string stored_broadcast_;
    std::string stored_epoch_;
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
// Set by JetStream on what Direct Get returns and on what the stream republishes: the
// stored message's sequence.
inline constexpr const char* kStreamSequence = "Nats-Sequence";
}  // namespace header

}  // namespace shardcast::transport
