// The two renderings of a Result. The JSON keys are stable: scripts parse them.
#include "bench/loadgen/report.hpp"

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

}  // namespace

void print_human(std::ostream& out, const Options& o, const Result& r) {
    out << printed("loadgen %s: %d clients, %d threads", std::string(to_string(o.workload)).c_str(),
                   o.clients, o.threads);
    if (o.publishes()) {
        out << printed(", %d publishers, %d B messages, rate %s, %s, %.1f s (+%.1f s warm-up)",
                       o.publishers, o.size,
                       o.rate > 0 ? printed("%.0f msg/s", o.rate).c_str() : "unpaced",
                       o.batch > 1 ? printed("batches of %d", o.batch).c_str() : "no batching",
                       seconds(o.duration), seconds(o.warmup));
    } else {
        out << printed(", held %.1f s", seconds(o.duration));
    }
    out << '\n';
    out << printed(
        "connect   %llu open, %llu failed, in %.2f s; connect time p50 %.0f us, p99 %.0f us\n",
        static_cast<unsigned long long>(r.connected),
        static_cast<unsigned long long>(r.connect_failures), r.connect_seconds, r.connect_p50_us,
        r.connect_p99_us);
    if (o.publishes()) {
        out << printed(
            "publish   %.0f msg/s accepted (%llu messages in %llu requests, %llu refused with "
            "429); request p50 %.0f us, p99 %.0f us\n",
            r.published_per_second, static_cast<unsigned long long>(r.published),
            static_cast<unsigned long long>(r.requests),
            static_cast<unsigned long long>(r.throttled), r.request_p50_us, r.request_p99_us);
        out << printed(
            "deliver   %.0f msg/s over %.1f s; latency p50 %.0f us, p99 %.0f us, "
            "p99.9 %.0f us, max %.0f us\n",
            r.delivered_per_second, r.window_seconds, r.latency_p50_us, r.latency_p99_us,
            r.latency_p999_us, r.latency_max_us);
        if (o.hot_fraction > 0) {
            out << printed("others    latency without the hot client: p50 %.0f us, p99 %.0f us\n",
                           r.others_latency_p50_us, r.others_latency_p99_us);
        }
        out << printed("check     received %llu", static_cast<unsigned long long>(r.received));
        if (r.expected > 0) {
            out << printed(" of %llu expected", static_cast<unsigned long long>(r.expected));
        }
        out << printed("; lost %llu, undelivered %llu, out of order %llu, duplicates %llu",
                       static_cast<unsigned long long>(r.lost),
                       static_cast<unsigned long long>(r.undelivered),
                       static_cast<unsigned long long>(r.reordered),
                       static_cast<unsigned long long>(r.duplicates));
        if (o.workload == Workload::churn) {
            out << printed("; %llu reconnects, %llu in flight at a close",
                           static_cast<unsigned long long>(r.reconnects),
                           static_cast<unsigned long long>(r.unconfirmed_tail));
        }
        out << '\n';
    }
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
    j["workload"] = to_string(o.workload);
    j["clients"] = o.clients;
    j["publishers"] = o.publishers;
    j["threads"] = o.threads;
    j["size"] = o.size;
    j["rate"] = o.rate;
    j["batch"] = o.batch;
    j["hot_fraction"] = o.hot_fraction;
    j["duration_s"] = seconds(o.duration);
    j["warmup_s"] = seconds(o.warmup);
    j["connected"] = r.connected;
    j["connect_failures"] = r.connect_failures;
    j["connect_s"] = r.connect_seconds;
    j["connect_p50_us"] = r.connect_p50_us;
    j["connect_p99_us"] = r.connect_p99_us;
    j["window_s"] = r.window_seconds;
    j["published"] = r.published;
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
    j["unconfirmed_tail"] = r.unconfirmed_tail;
    j["unexpected_closes"] = r.unexpected_closes;
    j["malformed"] = r.malformed;
    j["framing_errors"] = r.framing_errors;
    j["http_errors"] = r.http_errors;
    j["throttled"] = r.throttled;
    j["transport_errors"] = r.transport_errors;
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
    j["passed"] = r.passed();
    boost::json::array problems;
    for (const auto& problem : r.problems) problems.emplace_back(problem);
    j["problems"] = std::move(problems);
    out << boost::json::serialize(j) << '\n';
}

}  // namespace shardcast::loadgen
