// loadgen: the end-to-end load generator. Real WebSocket clients on 127.0.0.1 and HTTP
// publishers drive a running shardcast (or any server with the same API) and report delivered
// messages per second, latency, connect times, and the server's CPU time and memory per
// delivered message or per connection, read from /proc/<--server-pid>. Every message is
// checked for loss, order and duplicates; the exit status is 1 when any check failed, 2 on a
// usage error.
//
// Workloads:
//   fanout    every message is a broadcast to all clients (/api/v1/broadcast)
//   targeted  every message goes to one client (/api/v1/send), a --hot-fraction of them to
//             client lg0; at high rates use --batch K to send K per /api/v1/batch request, or
//             the publishers' HTTP round trips cap the rate
//   idle      connect the clients and hold them: server RSS per connection
//   churn     broadcasts (or sends, with --churn-targeted) while clients close and reconnect
//   soak      targeted sends (--rate over --publishers) and broadcasts (--broadcast-rate, one
//             publisher more) at once while clients close and reconnect; with --server-pid and
//             --sample-interval, the server's RSS, descriptors and CPU as a time series
//             (bench/soak.sh runs it)
//
// Threads: --threads Loops, each one io_context on one thread, holding its share of the
// clients and publishers; the main thread only orchestrates. Typical runs, server on CPU 0
// and loadgen on CPU 1:
//   taskset -c 0 shardcast --listen 127.0.0.1:8080 -s log.summary_interval=0 &
//   taskset -c 1 loadgen --url 127.0.0.1:8080 --server-pid $! --workload fanout --clients 1000
//   taskset -c 1 loadgen --url 127.0.0.1:8080 --server-pid $! --workload targeted
//       --size 256 --rate 100000 --batch 50 --publishers 4
//
// Reading the figures:
// - Latency runs from the publisher building the request to the client's read handler, so
//   it includes loadgen's own turn: in fanout one thread reads a broadcast's copies one
//   client after another, and the last client's latency carries all the reads before it.
// - Server CPU comes from /proc/<pid>/stat in clock ticks (10 ms): measure for 5 s or more.
//   CPU per delivery falls as load rises, since the server and the clients then handle
//   several messages per wake-up; compare servers at the same offered rate.
// - loadgen spends about 3 us of CPU per message it receives, mostly in the kernel (one
//   read per message when each message arrives in its own TCP segment): one thread tops out
//   near 300,000 messages per second. The summary warns when a thread was busy 90% of the
//   window; add --threads (and cores) before trusting a rate above that.
// - Each process needs a descriptor per connection (RLIMIT_NOFILE is raised to the hard
//   limit), and past about 28,000 clients --source-ips spreads them over 127.0.0.x.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "bench/loadgen/options.hpp"
#include "bench/loadgen/report.hpp"
#include "bench/loadgen/scenario.hpp"

namespace {

using shardcast::loadgen::ChurnClose;
using shardcast::loadgen::Options;
using shardcast::loadgen::Workload;

// Connections per source address before another one is taken; each source address has
// about 28,000 ephemeral ports toward the one server port.
constexpr int kClientsPerSource = 25000;

std::chrono::nanoseconds to_ns(double seconds) {
    return std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9));
}

// host:port, where host must be a loopback address: loadgen measures this machine only.
std::string parse_url(const std::string& url, Options& options) {
    std::string rest = url;
    for (const char* scheme : {"http://", "ws://"}) {
        if (rest.starts_with(scheme)) rest.erase(0, std::string(scheme).size());
    }
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos) return "--url: expected host:port, got \"" + url + "\"";
    std::string host = rest.substr(0, colon);
    if (host == "localhost") host = "127.0.0.1";
    if (!host.starts_with("127.")) return "--url: only loopback (127.x.x.x) is supported";
    int port = 0;
    try {
        port = std::stoi(rest.substr(colon + 1));
    } catch (const std::exception&) {
        port = 0;
    }
    if (port <= 0 || port > 65535) return "--url: bad port in \"" + url + "\"";
    options.host = host;
    options.port = static_cast<std::uint16_t>(port);
    return {};
}

// What the command line gives as text or seconds; into_options() turns it into Options.
struct Arguments {
    std::string url = "127.0.0.1:8080";
    std::string workload = "fanout";
    std::string churn_close = "handshake";
    double warmup = 2;
    double duration = 10;
    double drain_timeout = 5;
    double connect_timeout = 10;
    double sample_interval = 0;
    int server_pid = 0;
};

const std::map<std::string, Workload>& workloads() {
    static const std::map<std::string, Workload> by_name{{"fanout", Workload::fanout},
                                                         {"targeted", Workload::targeted},
                                                         {"idle", Workload::idle},
                                                         {"churn", Workload::churn},
                                                         {"soak", Workload::soak}};
    return by_name;
}

const std::map<std::string, ChurnClose>& closes() {
    static const std::map<std::string, ChurnClose> by_name{{"handshake", ChurnClose::handshake},
                                                           {"reset", ChurnClose::reset},
                                                           {"alternate", ChurnClose::alternate}};
    return by_name;
}

// What is offered: the workload, its clients and publishers, and how messages are sent.
void add_load_options(CLI::App& app, Options& options, Arguments& args) {
    app.add_option("--url", args.url, "server host:port, loopback only")->capture_default_str();
    app.add_option("-w,--workload", args.workload, "fanout | targeted | idle | churn | soak")
        ->check(CLI::IsMember(workloads()))
        ->capture_default_str();
    app.add_option("-c,--clients", options.clients, "WebSocket clients, ids lg0 .. lg<N-1>")
        ->check(CLI::Range(1, 1'000'000))
        ->capture_default_str();
    app.add_option("-p,--publishers", options.publishers,
                   "HTTP keep-alive publisher connections, each with one request in flight")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    app.add_option("-t,--threads", options.threads, "loadgen threads, one io_context each")
        ->check(CLI::Range(1, 256))
        ->capture_default_str();
    app.add_option("-r,--rate", options.rate,
                   "messages published per second over all publishers (soak: over the targeted "
                   "ones), 0 = as fast as the answers come (a broadcast counts once, however "
                   "many clients get it)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("-s,--size", options.size, "bytes of each message's data string")
        ->check(CLI::Range(32, 16 * 1024 * 1024))
        ->capture_default_str();
    app.add_option("-b,--batch", options.batch,
                   "messages per request; above 1 they go as NDJSON lines to /api/v1/batch")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    app.add_option("--hot-fraction", options.hot_fraction,
                   "targeted: share of messages sent to the one hot client lg0")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    app.add_flag("--ack-taken", options.ack_taken,
                 "publish with ?ack=taken: each answer waits until the shards took the messages");
    app.add_option("--connect-rate", options.connect_rate,
                   "new connections per second over all threads, 0 = unpaced")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
}

// How clients come and go under churn and soak, and the soak's broadcasts.
void add_churn_options(CLI::App& app, Options& options, Arguments& args) {
    app.add_option("--churn-rate", options.churn_rate,
                   "churn, soak: connections closed (and reopened) per second")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--churn-close", args.churn_close,
                   "churn, soak: how a client leaves, handshake (close frame), reset (TCP RST) "
                   "or alternate (each in turn)")
        ->check(CLI::IsMember(closes()))
        ->capture_default_str();
    app.add_flag("--churn-targeted", options.churn_targeted,
                 "churn: publish with /api/v1/send to random clients instead of broadcasts");
    app.add_option("--broadcast-rate", options.broadcast_rate,
                   "soak: broadcasts per second, from one publisher of their own; 0 = none")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
}

// How long each phase lasts, what is measured, and how the result is printed.
void add_run_options(CLI::App& app, Options& options, Arguments& args) {
    app.add_option("-d,--duration", args.duration, "seconds measured (idle: seconds held)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--warmup", args.warmup, "seconds of publishing before the measurement starts")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--drain-timeout", args.drain_timeout,
                   "seconds to wait for messages still in flight after publishing stops")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--connect-timeout", args.connect_timeout,
                   "seconds the connect phase may take beyond what --connect-rate implies")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--source-ips", options.source_ips,
                   "bind clients to 127.0.0.1 .. 127.0.0.N, for more than ~28,000 "
                   "connections; 0 = one address per 25,000 clients")
        ->check(CLI::Range(0, 250))
        ->capture_default_str();
    app.add_option("--server-pid", args.server_pid,
                   "server process: report its CPU per delivered message and its RSS")
        ->check(CLI::PositiveNumber);
    app.add_option("--sample-interval", args.sample_interval,
                   "with --server-pid: seconds between samples of the server's RSS, descriptors "
                   "and CPU, from the first connection to the end of the drain (--json gives "
                   "the series); 0 = none")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_flag("--json", options.json,
                 "print the result as one JSON line on stdout (the summary goes to stderr)");
}

// The parsed arguments into options; what is wrong with them, or empty.
std::string into_options(const Arguments& args, Options& options) {
    if (std::string problem = parse_url(args.url, options); !problem.empty()) return problem;
    options.workload = workloads().at(args.workload);
    options.churn_close = closes().at(args.churn_close);
    options.warmup = to_ns(args.warmup);
    options.duration = to_ns(args.duration);
    options.drain_timeout = to_ns(args.drain_timeout);
    options.connect_timeout = to_ns(args.connect_timeout);
    options.sample_interval = to_ns(args.sample_interval);
    if (args.server_pid > 0) options.server_pid = args.server_pid;
    if (options.source_ips == 0) {
        options.source_ips = (options.clients + kClientsPerSource - 1) / kClientsPerSource;
    }
    return {};
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    Arguments args;
    CLI::App app{"loadgen: end-to-end load generator for shardcast's WebSocket and HTTP API"};
    add_load_options(app, options, args);
    add_churn_options(app, options, args);
    add_run_options(app, options, args);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int status = app.exit(e);  // prints the help, or the error
        return status == 0 ? 0 : 2;
    }
    if (const std::string problem = into_options(args, options); !problem.empty()) {
        std::fprintf(stderr, "loadgen: %s\n", problem.c_str());
        return 2;
    }

    const auto result = shardcast::loadgen::run(options);
    if (options.json) {
        shardcast::loadgen::print_json(std::cout, options, result);
        shardcast::loadgen::print_human(std::cerr, options, result);
    } else {
        shardcast::loadgen::print_human(std::cout, options, result);
    }
    return result.passed() ? 0 : 1;
}
