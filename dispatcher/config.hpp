// Configuration of the dispatcher: plain values with defaults, validated by the caller
// (the server validates them while loading YAML). Read-only once a Dispatcher exists.
#pragma once

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>

namespace shardcast::dispatcher {

// What a session does when its outbound buffer would exceed buffer_limit.
enum class OverflowPolicy : unsigned char {
    terminate,    // close the session with 1008 and count it
    drop_oldest,  // drop the oldest queued messages until the new one fits
};

// What a new session does when its client id already has one.
enum class DuplicatePolicy : unsigned char {
    replace,  // the new session replaces the old, which closes with 4001
    allow,    // both stay; every session of the id gets each message
};

struct SessionConfig {
    std::size_t buffer_limit = 1024 * 1024;
    OverflowPolicy overflow = OverflowPolicy::terminate;
    std::chrono::milliseconds send_time_limit{10'000};
    std::chrono::milliseconds heartbeat_interval{25'000};
    std::chrono::milliseconds heartbeat_timeout{60'000};
    std::chrono::milliseconds cleanup_interval{30'000};
    DuplicatePolicy on_duplicate = DuplicatePolicy::replace;
    std::size_t max_per_client = 8;
    std::size_t max_message_size = 64 * 1024;
    // How long a closing handshake may take before the socket is cut.
    std::chrono::milliseconds close_timeout{2'000};
    // SO_SNDBUF of each WebSocket socket; 0 keeps the kernel's autotuning, under which one
    // socket can absorb megabytes for a client that stopped reading before buffer_limit,
    // send_time_limit or publish admission see any of it.
    std::size_t socket_send_buffer = 0;
    // How long a message that finds its session idle waits before its write starts, so the
    // messages that follow it within that time share its socket write. 0 writes at the end of
    // the drain turn that queued it. A delay trades latency for CPU: each write is a system
    // call and a trip through the kernel's TCP path, however few bytes it carries.
    std::chrono::milliseconds write_delay{0};
};

// What a shard keeps for clients to resume from (History).
struct HistoryConfig {
    bool enabled = true;
    std::size_t size = 100;                                 // messages per client id
    std::chrono::milliseconds ttl{5 * 60 * 1000};           // how long a message is kept
    std::size_t max_bytes = std::size_t{64} * 1024 * 1024;  // payload per shard
};

struct DispatcherConfig {
    std::size_t shards = default_shards();
    SessionConfig session;
    // Commands a shard delivers per turn before it lets its sockets' I/O run.
    std::size_t drain_budget = 1024;
    // Publish admission: a shard with more commands than this waiting in its inbox is behind
    // (its CPU), and the HTTP API refuses publishes for it with 429 until it catches up.
    std::size_t max_queue_depth = 65'536;
    // Publish admission by time: a shard whose oldest undelivered command has waited longer
    // than this is behind however few commands it holds, and gets 429 the same way. What a
    // publish accepted then waits is about this plus one drain turn, so it bounds latency
    // where a count cannot (a command's cost varies with its sessions). 0 turns it off.
    // Off by default until a measurement on a quiet machine shows it pays (bench/README.md).
    std::chrono::milliseconds max_queue_delay{0};
    // The bytes a shard's queued messages may hold (a broadcast once, however many sessions
    // queue it). Past it, the sessions furthest behind are cut (slow_reader) until it fits.
    // 0 turns a limit off.
    std::size_t max_outbound_bytes = std::size_t{64} * 1024 * 1024;
    HistoryConfig history;

    static constexpr std::size_t kMaxShards = 256;

    // One shard per CPU this process may run on, as nproc counts them: the affinity mask set
    // by taskset, a container's cpuset or Kubernetes' static CPU manager, not every CPU of
    // the host. More shards than CPUs only adds thread switches.
    static std::size_t default_shards() {
        cpu_set_t cpus;
        std::size_t n = 0;
        if (sched_getaffinity(0, sizeof cpus, &cpus) == 0) {
            n = static_cast<std::size_t>(CPU_COUNT(&cpus));
        }
        if (n == 0) {
            n = std::thread::hardware_concurrency();
        }
        return std::clamp<std::size_t>(n, 1, kMaxShards);
    }
};

}  // namespace shardcast::dispatcher
