// Result: the figures of one loadgen run, and their two renderings: a human summary and a
// one-line JSON object for scripts. Main thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "bench/loadgen/options.hpp"

namespace shardcast::loadgen {

// A server (or loadgen's own) CPU and memory over the measured window.
struct ProcFigures {
    double cpu_percent = 0;  // of one core
    std::int64_t rss_start_bytes = 0;
    std::int64_t rss_end_bytes = 0;
};

// One point of a run's time series (--sample-interval): the server as /proc shows it, and
// loadgen's progress beside it.
struct Sample {
    double t_s = 0;  // seconds since the run began (before the first connection)
    std::int64_t server_rss_bytes = 0;
    int server_descriptors = 0;
    double server_cpu_seconds = 0;   // since the server started
    double server_wait_seconds = 0;  // runnable but waiting for a CPU, since it started
    std::uint64_t open = 0;          // loadgen's clients open
    std::uint64_t received = 0;      // messages received so far
};

struct Result {
    // Connections.
    std::uint64_t connected = 0;  // clients open once the connect phase ended
    std::uint64_t connect_failures = 0;
    double connect_seconds = 0;  // how long the connect phase took
    double connect_p50_us = 0;
    double connect_p99_us = 0;
    std::uint64_t reconnects = 0;
    std::uint64_t churned_handshake = 0;  // churn: connections ended with a close frame
    std::uint64_t churned_reset = 0;      // and with a TCP reset

    // Publishing and delivery over the window.
    double window_seconds = 0;
    std::uint64_t published = 0;      // messages accepted, whole run
    std::uint64_t broadcasts = 0;     // of them, broadcasts (each counts once)
    double published_per_second = 0;  // accepted in the window
    std::uint64_t requests = 0;
    std::uint64_t delivered_in_window = 0;
    double delivered_per_second = 0;
    std::uint64_t received = 0;  // whole run, warm-up and drain included
    std::uint64_t expected = 0;  // what received should be; 0 under churn, where it is unknown
    double latency_p50_us = 0;
    double latency_p99_us = 0;
    // With --hot-fraction: the latency of every client but the hot one.
    double others_latency_p50_us = 0;
    double others_latency_p99_us = 0;
    double latency_p999_us = 0;
    double latency_max_us = 0;
    double request_p50_us = 0;  // publish round trip (HTTP request to 202)
    double request_p99_us = 0;

    // Correctness.
    std::uint64_t lost = 0;         // missing, and a later message of the publisher arrived
    std::uint64_t undelivered = 0;  // missing after the last message that arrived
    std::uint64_t reordered = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t unconfirmed_tail = 0;  // churn: accepted before a close, never seen on it
    std::uint64_t unexpected_closes = 0;
    std::uint16_t last_close_code = 0;
    std::uint64_t malformed = 0;
    std::uint64_t framing_errors = 0;
    std::uint64_t http_errors = 0;
    std::uint64_t throttled = 0;
    std::uint64_t transport_errors = 0;
    std::string first_error;

    // Processes.
    std::optional<ProcFigures> server;
    std::optional<double> server_cpu_us_per_delivery;
    std::optional<double> server_rss_per_connection;  // idle: RSS growth / connections
    ProcFigures self;
    double self_max_thread_cpu_percent = 0;
    double self_rss_per_client = 0;
    // The machine's CPU time stolen by the hypervisor over the window, % of all CPU time.
    std::optional<double> steal_percent;
    // With --sample-interval: the time series, and where the window lies on its time axis.
    std::vector<Sample> samples;
    double window_start_s = 0;
    double window_end_s = 0;

    // Why the run failed; empty when it passed.
    std::vector<std::string> problems;
    bool passed() const { return problems.empty(); }
};

void print_human(std::ostream& out, const Options& options, const Result& result);
void print_json(std::ostream& out, const Options& options, const Result& result);

}  // namespace shardcast::loadgen
