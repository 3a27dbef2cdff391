// The two renderings of a Result. The JSON keys are stable: scripts parse them.
#include "bench/loadgen/report.hpp"

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <cstdio>
#include <string>

namespace shardcast::loadgen {

namespace {

// A loadgen thread this busy may have capped the rate it reports.
constexpr double kSaturatedPercent = 90;

// snprintf into a std::string; every line printed here fits the buffer.
std::string printed(const char* fmt, auto... args) {
    char buffer[512];
    std::snprintf(buffer, sizeof buffer, fmt, args...);
    return buffer;
}

double mib(std::int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

double seconds(std::chrono::nanoseconds ns) { return static_cast<double>(ns.count()) / 1e9; }

// The time series in one line: its span, and how far RSS and descriptors moved.
std::string samples_line(const std::vector<Sample>& samples) {
    const auto [low, high] = std::minmax_element(
        samples.begin(), samples.end(),
        [](const Sample& a, const Sample& b) { return a.server_rss_bytes < b.server_rss_bytes; });
    return printed(
        "samples   %zu over %.0f s: server RSS %.1f to %.1f MiB, descriptors %d at the first, %d "
        "at the last\n",
        samples.size(), samples.back().t_s - samples.front().t_s, mib(low->server_rss_bytes),
        mib(high->server_rss_bytes), samples.front().server_descriptors,
        samples.back().server_descriptors);
}

boost::json::array to_json(const std::vector<Sample>& samples) {
    boost::json::array out;
    for (const Sample& s : samples) {
        out.push_back(boost::json::object{{"t_s", s.t_s},
                                          {"rss_bytes", s.server_rss_bytes},
                                          {"descriptors", s.server_descriptors},
                                          {"cpu_s", s.server_cpu_seconds},
                                          {"wait_s", s.server_wait_seconds},
                                          {"open", s.open},
                                          {"received", s.received}});
    }
    return out;
}

// The first line: what was run.
std::string heading(const Options& o) {
    std::string out = printed("loadgen %s: %d clients, %d threads",
                              std::string(to_string(o.workload)).c_str(), o.clients, o.threads);
    if (o.publishes()) {
        out += printed(", %d publishers, %d B messages, rate %s, %s, %.1f s (+%.1f s warm-up)",
                       o.publishers, o.size,
                       o.rate > 0 ? printed("%.0f msg/s", o.rate).c_str() : "unpaced",
                       o.batch > 1 ? printed("batches of %d", o.batch).c_str() : "no batching",
                       seconds(o.duration), seconds(o.warmup));
    } else {
        out += printed(", held %.1f s", seconds(o.duration));
    }
    if (o.workload == Workload::soak) {
        out += printed("; %.1f broadcasts/s", o.broadcast_rate);
    }
    if (o.churns()) {
        out += printed("; %.0f reconnects/s (%s)", o.churn_rate,
                       std::string(to_string(o.churn_close)).c_str());
    }
    return out + '\n';
}

// Publishing, delivery and the checks on what was delivered.
std::string delivery_lines(const Options& o, const Result& r) {
    std::string out = printed(
        "publish   %.0f msg/s accepted (%llu messages in %llu requests, %llu refused with "
        "429); request p50 %.0f us, p99 %.0f us\n",
        r.published_per_second, static_cast<unsigned long long>(r.published),
        static_cast<unsigned long long>(r.requests), static_cast<unsigned long long>(r.throttled),
        r.request_p50_us, r.request_p99_us);
    out += printed(
        "deliver   %.0f msg/s over %.1f s; latency p50 %.0f us, p99 %.0f us, "
        "p99.9 %.0f us, max %.0f us\n",
        r.delivered_per_second, r.window_seconds, r.latency_p50_us, r.latency_p99_us,
        r.latency_p999_us, r.latency_max_us);
    if (o.hot_fraction > 0) {
        out += printed("others    latency without the hot client: p50 %.0f us, p99 %.0f us\n",
                       r.others_latency_p50_us, r.others_latency_p99_us);
    }
    out += printed("check     received %llu", static_cast<unsigned long long>(r.received));
    if (r.expected > 0) {
        out += printed(" of %llu expected", static_cast<unsigned long long>(r.expected));
    }
    out += printed("; lost %llu, undelivered %llu, out of order %llu, duplicates %llu",
                   static_cast<unsigned long long>(r.lost),
                   static_cast<unsigned long long>(r.undelivered),
                   static_cast<unsigned long long>(r.reordered),
                   static_cast<unsigned long long>(r.duplicates));
    if (o.churns()) {
        out += printed(
            "; %llu reconnects (%llu by close frame, %llu by reset), %llu in flight at a close",
            static_cast<unsigned long long>(r.reconnects),
            static_cast<unsigned long long>(r.churned_handshake),
            static_cast<unsigned long long>(r.churned_reset),
            static_cast<unsigned long long>(r.unconfirmed_tail));
    }
    return out + '\n';
}

// What was asked for.
void add_options(boost::json::object& j, const Options& o) {
    j["workload"] = to_string(o.workload);
    j["clients"] = o.clients;
    j["publishers"] = o.publishers;
    j["threads"] = o.threads;
    j["size"] = o.size;
    j["rate"] = o.rate;
    j["batch"] = o.batch;
    j["hot_fraction"] = o.hot_fraction;
    j["ack_taken"] = o.ack_taken;
    if (o.churns()) {
        j["churn_rate"] = o.churn_rate;
        j["churn_close"] = to_string(o.churn_close);
    }
    if (o.workload == Workload::soak) j["broadcast_rate"] = o.broadcast_rate;
    j["duration_s"] = seconds(o.duration);
    j["warmup_s"] = seconds(o.warmup);
}

// Connections, publishing, delivery and the checks on it.
void add_delivery(boost::json::object& j, const Result& r) {
    j["connected"] = r.connected;
    j["connect_failures"] = r.connect_failures;
    j["connect_s"] = r.connect_seconds;
    j["connect_p50_us"] = r.connect_p50_us;
    j["connect_p99_us"] = r.connect_p99_us;
    j["window_s"] = r.window_seconds;
    j["published"] = r.published;
    j["broadcasts"] = r.broadcasts;
    j["published_per_s"] = r.published_per_second;
    j["requests"] = r.requests;
    j["request_p50_us"] = r.request_p50_us;
    j["request_p99_us"] = r.request_p99_us;
    j["delivered_in_window"] = r.delivered_in_window;
    j["delivered_per_s"] = r.delivered_per_second;
    j["received"] = r.received;
    j["expected"] = r.expected;
    j["latency_p50_us"] = r.latency_p50_us;
    j["latency_p99_us"] = r.latency_p99_us;
    j["others_latency_p50_us"] = r.others_latency_p50_us;
    j["others_latency_p99_us"] = r.others_latency_p99_us;
    j["latency_p999_us"] = r.latency_p999_us;
    j["latency_max_us"] = r.latency_max_us;
    j["lost"] = r.lost;
    j["undelivered"] = r.undelivered;
    j["reordered"] = r.reordered;
    j["duplicates"] = r.duplicates;
    j["reconnects"] = r.reconnects;
    j["churned_handshake"] = r.churned_handshake;
    j["churned_reset"] = r.churned_reset;
    j["unconfirmed_tail"] = r.unconfirmed_tail;
    j["unexpected_closes"] = r.unexpected_closes;
    j["malformed"] = r.malformed;
    j["framing_errors"] = r.framing_errors;
    j["http_errors"] = r.http_errors;
    j["throttled"] = r.throttled;
    j["transport_errors"] = r.transport_errors;
}

// What the server and loadgen spent, and the time series.
void add_processes(boost::json::object& j, const Result& r) {
    if (r.server) {
        j["server_cpu_percent"] = r.server->cpu_percent;
        j["server_rss_start_bytes"] = r.server->rss_start_bytes;
        j["server_rss_end_bytes"] = r.server->rss_end_bytes;
    }
    if (r.server_cpu_us_per_delivery) {
        j["server_cpu_us_per_delivery"] = *r.server_cpu_us_per_delivery;
    }
    if (r.server_rss_per_connection) {
        j["server_rss_per_connection_bytes"] = *r.server_rss_per_connection;
    }
    j["loadgen_cpu_percent"] = r.self.cpu_percent;
    j["loadgen_max_thread_cpu_percent"] = r.self_max_thread_cpu_percent;
    j["loadgen_rss_bytes"] = r.self.rss_end_bytes;
    j["loadgen_rss_per_client_bytes"] = r.self_rss_per_client;
    if (r.steal_percent) {
        j["steal_percent"] = *r.steal_percent;
    }
    if (!r.samples.empty()) {
        j["window_start_s"] = r.window_start_s;
        j["window_end_s"] = r.window_end_s;
        j["samples"] = to_json(r.samples);
    }
}

}  // namespace

void print_human(std::ostream& out, const Options& o, const Result& r) {
    out << heading(o);
    out << printed(
        "connect   %llu open, %llu failed, in %.2f s; connect time p50 %.0f us, p99 %.0f us\n",
        static_cast<unsigned long long>(r.connected),
        static_cast<unsigned long long>(r.connect_failures), r.connect_seconds, r.connect_p50_us,
        r.connect_p99_us);
    if (o.publishes()) out << delivery_lines(o, r);
    if (r.server) {
        out << printed("server    pid %d: CPU %.1f%% of a core", *o.server_pid,
                       r.server->cpu_percent);
        if (r.server_cpu_us_per_delivery) {
            out << printed(", %.3f us per delivered message", *r.server_cpu_us_per_delivery);
        }
        out << printed("; RSS %.1f -> %.1f MiB", mib(r.server->rss_start_bytes),
                       mib(r.server->rss_end_bytes));
        if (r.server_rss_per_connection) {
            out << printed(" (%.0f B per connection)", *r.server_rss_per_connection);
        }
        out << '\n';
    }
    if (!r.samples.empty()) out << samples_line(r.samples);
    out << printed(
        "loadgen   CPU %.1f%% (busiest thread %.1f%%), RSS %.1f MiB (%.0f B per client)\n",
        r.self.cpu_percent, r.self_max_thread_cpu_percent, mib(r.self.rss_end_bytes),
        r.self_rss_per_client);
    if (r.steal_percent) {
        out << printed("machine   %.1f%% of all CPU time stolen by the hypervisor\n",
                       *r.steal_percent);
    }
    if (r.self_max_thread_cpu_percent >= kSaturatedPercent) {
        out << "warning   a loadgen thread was busy for most of the window: the rates above may "
               "be loadgen's limit rather than the server's (try --threads)\n";
    }
    if (r.passed()) {
        out << "result    PASS\n";
    } else {
        out << "result    FAIL\n";
        for (const auto& problem : r.problems) out << "          " << problem << '\n';
    }
}

void print_json(std::ostream& out, const Options& o, const Result& r) {
    boost::json::object j;
    add_options(j, o);
    add_delivery(j, r);
    add_processes(j, r);
    j["passed"] = r.passed();
    boost::json::array problems;
    for (const auto& problem : r.problems) problems.emplace_back(problem);
    j["problems"] = std::move(problems);
    out << boost::json::serialize(j) << '\n';
}

}  // namespace shardcast::loadgen
