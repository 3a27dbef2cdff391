// ClusterConfig: the cluster.* keys. With no NATS servers the node runs alone.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace shardcast::transport {

// cluster.history.*: the JetStream stream that holds the cluster's history when
// history.enabled is set; history.size, history.ttl and history.max_bytes are its limits.
struct ClusterHistoryConfig {
    std::string stream;   // empty: <subject_prefix>_history, dots as underscores
    bool memory = false;  // memory storage instead of files
    int replicas = 1;
    // How long a stored message's live copy is held so that copies overtaken in transit go
    // back in stream order (SequenceOrder); zero delivers them as they come.
    std::chrono::milliseconds reorder_window{20};
};

struct ClusterConfig {
    // cluster.nats.url, split on commas: nats://host:port for each server to try.
    std::vector<std::string> nats_servers;
    // First delay between reconnect rounds; it doubles up to reconnect_wait_max.
    std::chrono::milliseconds reconnect_wait{100};
    std::chrono::milliseconds reconnect_wait_max{2'000};
    // This node's name in logs, metrics and /api/v1/stats; empty means <hostname>:<port>.
    std::string node;
    // First tokens of every subject, so deployments can share one NATS.
    std::string subject_prefix = "shardcast";
    // Publish the frames clients send to <prefix>.upstream.<id>.
    bool upstream = false;
    ClusterHistoryConfig history;

    bool enabled() const { return !nats_servers.empty(); }
};

}  // namespace shardcast::transport
