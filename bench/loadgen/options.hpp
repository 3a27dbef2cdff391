// Options: what one loadgen run does, as parsed from the command line by main.cpp. A plain
// struct, read by every thread and written by none once the run has begun.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shardcast::loadgen {

enum class Workload { fanout, targeted, idle, churn, soak };

// How a churned client leaves: a WebSocket close handshake, or a TCP reset that the server
// only notices on its next read or write; alternate takes each in turn.
enum class ChurnClose { handshake, reset, alternate };

struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    Workload workload = Workload::fanout;
    int clients = 1000;
    int publishers = 1;
    int threads = 1;
    double rate = 1000;  // messages per second over the `publishers`; 0 = no pacing
    int size = 64;       // bytes of each message's data string
    int batch = 1;       // lines per /api/v1/batch request; 1 = /api/v1/send
    double hot_fraction = 0;
    // Publishes ask for ?ack=taken: answered once the server's shards have taken them, not
    // when queued (a server that does not know the parameter answers as always).
    bool ack_taken = false;
    double connect_rate = 5000;  // connections per second; 0 = no pacing
    double churn_rate = 100;     // reconnections per second over all clients
    ChurnClose churn_close = ChurnClose::handshake;
    bool churn_targeted = false;  // churn with /send traffic instead of broadcasts
    // soak: broadcasts per second, from one publisher of their own beside the targeted ones.
    double broadcast_rate = 2;
    std::chrono::nanoseconds warmup = std::chrono::seconds(2);
    std::chrono::nanoseconds duration = std::chrono::seconds(10);
    std::chrono::nanoseconds drain_timeout = std::chrono::seconds(5);
    std::chrono::nanoseconds connect_timeout = std::chrono::seconds(10);
    int source_ips = 0;  // 127.0.0.1 .. 127.0.0.N as client source addresses; 0 = by client count
    std::optional<int> server_pid;
    // With server_pid: how often the server's RSS, descriptors and CPU are sampled into the
    // result's time series; 0 = never.
    std::chrono::nanoseconds sample_interval{0};
    bool json = false;

    bool publishes() const { return workload != Workload::idle; }
    bool churns() const { return workload == Workload::churn || workload == Workload::soak; }
    // Every publisher: the `publishers` that --rate paces, and the soak's broadcaster after them.
    int publisher_count() const {
        return publishers + (workload == Workload::soak && broadcast_rate > 0 ? 1 : 0);
    }
    // Whether publisher p's messages go to one client each (/send, /batch) rather than to all
    // (/broadcast).
    bool targets(int publisher) const {
        switch (workload) {
            case Workload::targeted:
                return true;
            case Workload::churn:
                return churn_targeted;
            case Workload::soak:
                return publisher < publishers;
            case Workload::fanout:
            case Workload::idle:
                return false;
        }
        return false;
    }
};

inline std::string_view to_string(Workload workload) {
    switch (workload) {
        case Workload::fanout:
            return "fanout";
        case Workload::targeted:
            return "targeted";
        case Workload::idle:
            return "idle";
        case Workload::churn:
            return "churn";
        case Workload::soak:
            return "soak";
    }
    return "?";
}

inline std::string_view to_string(ChurnClose close) {
    switch (close) {
        case ChurnClose::handshake:
            return "handshake";
        case ChurnClose::reset:
            return "reset";
        case ChurnClose::alternate:
            return "alternate";
    }
    return "?";
}

}  // namespace shardcast::loadgen
