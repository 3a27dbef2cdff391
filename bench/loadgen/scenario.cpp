// The phases of run() and the evaluation of what was received. Main thread only.
#include "bench/loadgen/scenario.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/loadgen/clients.hpp"
#include "bench/loadgen/loop.hpp"
#include "bench/loadgen/message.hpp"
#include "bench/loadgen/proc_stats.hpp"
#include "bench/loadgen/publisher.hpp"
#include "bench/loadgen/sampler.hpp"

namespace shardcast::loadgen {

namespace {

constexpr std::int64_t kSecond = 1'000'000'000;
// Publishers need this long to connect before their first request is due.
constexpr std::int64_t kPublisherConnectNs = 100'000'000;
// Publishers finish their request in flight within the request timeout (10 s) after the
// window ends; this bounds the wait for them with room to spare.
constexpr std::int64_t kPublisherFinishNs = 15 * kSecond;
// Under churn nobody knows how many messages must still arrive: the drain ends once nothing
// has arrived for this long.
constexpr std::int64_t kChurnQuietNs = 300'000'000;

// Every client is a descriptor: lift the soft limit to the hard one.
void raise_descriptor_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

void sleep_until_ns(std::int64_t ns) {
    std::this_thread::sleep_until(
        std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns)));
}

// Polls predicate every 10 ms until it holds or deadline_ns passes; returns whether it held.
template <class Predicate>
bool wait_until(Predicate predicate, std::int64_t deadline_ns) {
    while (!predicate()) {
        if (now_ns() >= deadline_ns) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

// The processes' figures at one instant.
struct Snapshot {
    std::optional<ProcSample> server;
    std::optional<ProcSample> self;
    std::vector<std::optional<ProcSample>> threads;  // one per Loop
    std::optional<MachineSample> machine;
};

double cpu_percent(const ProcSample& a, const ProcSample& b) {
    const double seconds = static_cast<double>(b.at_ns - a.at_ns) / 1e9;
    return seconds > 0 ? (b.cpu_seconds - a.cpu_seconds) / seconds * 100 : 0;
}

ProcFigures figures(const ProcSample& a, const ProcSample& b) {
    return ProcFigures{cpu_percent(a, b), a.rss_bytes, b.rss_bytes};
}

double to_us(std::uint64_t ns) { return static_cast<double>(ns) / 1e3; }

class Run {
public:
    explicit Run(const Options& options) : options_(options) {
        const auto threads = static_cast<std::size_t>(options.threads);
        std::vector<std::vector<int>> indices(threads);
        for (int i = 0; i < options.clients; ++i) indices[i % threads].push_back(i);
        for (std::size_t t = 0; t < threads; ++t) {
            loops_.push_back(std::make_unique<Loop>());
            groups_.push_back(
                std::make_unique<ClientGroup>(*loops_[t], options, std::move(indices[t])));
        }
        if (options.publishes()) {
            for (int p = 0; p < options.publisher_count(); ++p) {
                publishers_.push_back(
                    std::make_unique<Publisher>(*loops_[p % threads], options, p));
            }
        }
    }

    Result run() {
        zero_ns_ = now_ns();
        for (auto& loop : loops_) loop->start();
        start_sampler();
        connect();
        if (options_.publishes()) {
            publish();
        } else {
            hold();
        }
        // The last sample still has the clients connected: what the server holds once they
        // have gone is for the caller to read, when the server has had time to notice.
        if (sampler_) {
            sampler_->stop();
            result_.samples = sampler_->samples();
        }
        stop();
        evaluate();
        return std::move(result_);
    }

private:
    void start_sampler() {
        if (!options_.server_pid || options_.sample_interval.count() <= 0) return;
        sampler_ = std::make_unique<Sampler>(
            *options_.server_pid, options_.sample_interval, zero_ns_, [this] {
                return Sampler::Progress{sum(&LoopStats::open), sum(&LoopStats::received)};
            });
        sampler_->start();
    }

    void connect() {
        before_connect_ = snapshot();
        const std::int64_t start = now_ns();
        for (std::size_t t = 0; t < loops_.size(); ++t) {
            loops_[t]->post([group = groups_[t].get()] { group->connect_all(); });
        }
        const double paced_seconds =
            options_.connect_rate > 0 ? options_.clients / options_.connect_rate : 0;
        const std::int64_t deadline = start + options_.connect_timeout.count() +
                                      static_cast<std::int64_t>(paced_seconds * 1e9);
        const auto clients = static_cast<std::uint64_t>(options_.clients);
        if (!wait_until([&] { return sum(&LoopStats::connects_done) >= clients; }, deadline)) {
            result_.problems.push_back(
                std::to_string(clients - sum(&LoopStats::connects_done)) +
                " clients were still connecting when the connect phase timed out");
        }
        result_.connect_seconds = static_cast<double>(now_ns() - start) / 1e9;
        result_.connected = sum(&LoopStats::open);
        after_connect_ = snapshot();
    }

    void hold() {
        const Snapshot a = after_connect_;
        sleep_until_ns(now_ns() + options_.duration.count());
        const Snapshot b = snapshot();
        measure(a, b);
        if (result_.server && before_connect_.server && result_.connected > 0) {
            // Memory from before the first connection, CPU over the hold only.
            result_.server->rss_start_bytes = before_connect_.server->rss_bytes;
            result_.server_rss_per_connection =
                static_cast<double>(b.server->rss_bytes - before_connect_.server->rss_bytes) /
                static_cast<double>(result_.connected);
        }
    }

    void publish() {
        const std::int64_t begin = now_ns() + kPublisherConnectNs;
        const Window window{begin + options_.warmup.count(),
                            begin + options_.warmup.count() + options_.duration.count()};
        const bool churn = options_.churns();
        for (std::size_t t = 0; t < loops_.size(); ++t) {
            Loop* loop = loops_[t].get();
            ClientGroup* group = groups_[t].get();
            loop->post([loop, group, window, churn] {
                loop->window = window;
                if (churn) group->churn_until(window.end_ns);
            });
        }
        // Every Loop gets the window well before it matters: the first request is due
        // kPublisherConnectNs from now, and the window opens only after the warm-up.
        for (std::size_t p = 0; p < publishers_.size(); ++p) {
            loops_[p % loops_.size()]->post([publisher = publishers_[p].get(), begin, window] {
                publisher->start(begin, window);
            });
        }
        sleep_until_ns(window.start_ns);
        const Snapshot a = snapshot();
        sleep_until_ns(window.end_ns);
        const Snapshot b = snapshot();
        result_.window_seconds = static_cast<double>(window.end_ns - window.start_ns) / 1e9;
        result_.window_start_s = static_cast<double>(window.start_ns - zero_ns_) / 1e9;
        result_.window_end_s = static_cast<double>(window.end_ns - zero_ns_) / 1e9;

        if (!wait_until([&] { return all_published(); }, window.end_ns + kPublisherFinishNs)) {
            result_.problems.push_back("a publisher did not finish its last request");
        }
        drain();
        measure(a, b);
    }

    // Waits for the messages still on their way when publishing stopped: until every one
    // has arrived when that number is known, else until none has arrived for a while.
    void drain() {
        const std::int64_t deadline = now_ns() + options_.drain_timeout.count();
        // A publisher that is not done may still be writing its result.
        if (options_.churns() || !all_published()) {
            std::uint64_t seen = sum(&LoopStats::received);
            std::int64_t quiet_since = now_ns();
            wait_until(
                [&] {
                    const std::uint64_t now_seen = sum(&LoopStats::received);
                    if (now_seen != seen) {
                        seen = now_seen;
                        quiet_since = now_ns();
                    }
                    return now_ns() - quiet_since >= kChurnQuietNs;
                },
                deadline);
            return;
        }
        std::uint64_t expected = 0;
        for (std::size_t p = 0; p < publishers_.size(); ++p) {
            const std::uint64_t accepted = publishers_[p]->result().accepted;
            expected +=
                options_.targets(static_cast<int>(p)) ? accepted : accepted * result_.connected;
        }
        result_.expected = expected;
        wait_until([&] { return sum(&LoopStats::received) >= expected; }, deadline);
    }

    void stop() {
        for (std::size_t t = 0; t < loops_.size(); ++t) {
            loops_[t]->post([group = groups_[t].get()] { group->close_all(); });
        }
        for (auto& loop : loops_) loop->stop();
    }

    // CPU and memory over the window, from two snapshots.
    void measure(const Snapshot& a, const Snapshot& b) {
        if (a.self && b.self) {
            result_.self = figures(*a.self, *b.self);
            if (result_.window_seconds == 0) {
                result_.window_seconds = static_cast<double>(b.self->at_ns - a.self->at_ns) / 1e9;
            }
        }
        for (std::size_t t = 0; t < loops_.size(); ++t) {
            if (a.threads[t] && b.threads[t]) {
                result_.self_max_thread_cpu_percent = std::max(
                    result_.self_max_thread_cpu_percent, cpu_percent(*a.threads[t], *b.threads[t]));
            }
        }
        if (before_connect_.self && after_connect_.self && result_.connected > 0) {
            result_.self_rss_per_client = static_cast<double>(after_connect_.self->rss_bytes -
                                                              before_connect_.self->rss_bytes) /
                                          static_cast<double>(result_.connected);
        }
        if (a.machine && b.machine && b.machine->total_seconds > a.machine->total_seconds) {
            result_.steal_percent = (b.machine->steal_seconds - a.machine->steal_seconds) /
                                    (b.machine->total_seconds - a.machine->total_seconds) * 100;
        }
        if (options_.server_pid) {
            if (a.server && b.server) {
                result_.server = figures(*a.server, *b.server);
                server_cpu_seconds_ = b.server->cpu_seconds - a.server->cpu_seconds;
            } else {
                result_.problems.push_back("cannot read /proc/" +
                                           std::to_string(*options_.server_pid));
            }
        }
    }

    // After the Loops have stopped: totals, and every connection checked against what its
    // publishers had accepted for it.
    void evaluate() {
        Histogram latency;
        Histogram others_latency;
        Histogram connect;
        Histogram request;
        for (auto& loop : loops_) {
            const LoopStats& stats = loop->stats();
            latency.merge(stats.latency);
            others_latency.merge(stats.others_latency);
            connect.merge(stats.connect);
            result_.delivered_in_window += stats.delivered_in_window;
            result_.received += stats.received.load();
            result_.connect_failures += stats.connect_failures;
            result_.unexpected_closes += stats.unexpected_closes;
            result_.malformed += stats.malformed;
            result_.framing_errors += stats.framing_errors;
            if (result_.first_error.empty()) result_.first_error = stats.first_error;
            result_.reconnects += stats.reconnects;
            result_.churned_handshake += stats.churned_handshake;
            result_.churned_reset += stats.churned_reset;
            if (stats.last_close_code != 0) result_.last_close_code = stats.last_close_code;
            for (const ConnectionRecord& record : stats.connections) check(record);
        }
        std::uint64_t accepted_in_window = 0;
        for (std::size_t p = 0; p < publishers_.size(); ++p) {
            const PublisherResult& r = publishers_[p]->result();
            request.merge(r.request_latency);
            result_.published += r.accepted;
            if (!options_.targets(static_cast<int>(p))) result_.broadcasts += r.accepted;
            result_.requests += r.requests;
            accepted_in_window += r.accepted_in_window;
            result_.http_errors += r.http_errors;
            result_.throttled += r.throttled;
            result_.transport_errors += r.transport_errors;
            if (result_.first_error.empty()) result_.first_error = r.first_error;
        }
        const double window = result_.window_seconds > 0 ? result_.window_seconds : 1;
        result_.published_per_second = static_cast<double>(accepted_in_window) / window;
        result_.delivered_per_second = static_cast<double>(result_.delivered_in_window) / window;
        result_.connect_p50_us = to_us(connect.percentile(0.50));
        result_.connect_p99_us = to_us(connect.percentile(0.99));
        result_.latency_p50_us = to_us(latency.percentile(0.50));
        result_.latency_p99_us = to_us(latency.percentile(0.99));
        result_.latency_p999_us = to_us(latency.percentile(0.999));
        result_.latency_max_us = to_us(latency.max());
        result_.others_latency_p50_us = to_us(others_latency.percentile(0.50));
        result_.others_latency_p99_us = to_us(others_latency.percentile(0.99));
        result_.request_p50_us = to_us(request.percentile(0.50));
        result_.request_p99_us = to_us(request.percentile(0.99));
        if (result_.server && result_.delivered_in_window > 0) {
            result_.server_cpu_us_per_delivery =
                server_cpu_seconds_ * 1e6 / static_cast<double>(result_.delivered_in_window);
        }
        judge();
    }

    // Loss, order and duplicates of one connection. Without churn every connection was open
    // before the first publish and until the drain ended, so it must have received every
    // message for it. Under churn (churn, soak) only the messages whose publish began after
    // the connection opened count, and of a connection that was closed only those before the
    // last one received: the rest may have been in flight when it closed.
    //
    // A missing message followed by a later one is lost: per-publisher order means it can no
    // longer come. Missing messages after the last one received are only undelivered: they
    // may still have been queued in the server when the drain ended.
    void check(const ConnectionRecord& record) {
        for (std::size_t p = 0; p < record.streams.size(); ++p) {
            const StreamCheck& stream = record.streams[p];
            result_.reordered += stream.reordered();
            result_.duplicates += stream.duplicates();
            const PublisherResult& published = publishers_[p]->result();
            const auto destination =
                options_.targets(static_cast<int>(p)) ? static_cast<std::size_t>(record.client) : 0;
            const std::uint64_t total = published.sent[destination];
            if (!options_.churns()) {
                count_missing(stream, 0, total);
                continue;
            }
            const auto& times = published.times[destination];
            const auto first = static_cast<std::uint64_t>(
                std::partition_point(
                    times.begin(), times.end(),
                    [&](const PublishTimes& t) { return t.start_ns <= record.open_ns; }) -
                times.begin());
            if (record.close_ns == 0) {
                count_missing(stream, first, total);
                continue;
            }
            const std::uint64_t seen_end = std::max(first, stream.end());
            result_.lost += stream.missing(first, seen_end);
            const auto accepted_before_close = static_cast<std::uint64_t>(
                std::partition_point(
                    times.begin(), times.end(),
                    [&](const PublishTimes& t) { return t.end_ns < record.close_ns; }) -
                times.begin());
            if (accepted_before_close > seen_end) {
                result_.unconfirmed_tail += accepted_before_close - seen_end;
            }
        }
    }

    // Of the messages [from, to) a connection should have received.
    void count_missing(const StreamCheck& stream, std::uint64_t from, std::uint64_t to) {
        const std::uint64_t seen_end = std::clamp(stream.end(), from, std::max(from, to));
        result_.lost += stream.missing(from, seen_end);
        result_.undelivered += to > seen_end ? to - seen_end : 0;
    }

    void judge() {
        auto& problems = result_.problems;
        auto count = [&](std::uint64_t n, const std::string& what) {
            if (n > 0) problems.push_back(std::to_string(n) + " " + what);
        };
        count(result_.connect_failures, "connection attempts failed");
        count(result_.lost, "messages lost (a later message of their publisher arrived)");
        count(result_.undelivered, "messages not delivered by the end of the drain");
        count(result_.reordered, "messages out of order");
        count(result_.duplicates, "duplicate messages");
        if (result_.unexpected_closes > 0) {
            problems.push_back(std::to_string(result_.unexpected_closes) +
                               " connections closed by the server (last close code " +
                               std::to_string(result_.last_close_code) + ")");
        }
        count(result_.malformed, "frames that were not loadgen messages");
        count(result_.framing_errors, "connections that broke WebSocket framing");
        count(result_.http_errors, "publish requests refused");
        count(result_.transport_errors, "publisher connections failed");
        if (!result_.first_error.empty()) problems.push_back("first error: " + result_.first_error);
    }

    Snapshot snapshot() const {
        Snapshot s;
        if (options_.server_pid) s.server = read_process(*options_.server_pid);
        s.self = read_self();
        for (const auto& loop : loops_) s.threads.push_back(read_own_thread(loop->tid()));
        s.machine = read_machine();
        return s;
    }

    std::uint64_t sum(std::atomic<std::uint64_t> LoopStats::*counter) const {
        std::uint64_t n = 0;
        for (const auto& loop : loops_) {
            n += (loop->stats().*counter).load(std::memory_order_relaxed);
        }
        return n;
    }

    bool all_published() const {
        return std::all_of(publishers_.begin(), publishers_.end(),
                           [](const auto& p) { return p->done(); });
    }

    const Options& options_;
    // Destroyed in reverse: publishers and groups go before the Loops whose io_contexts
    // their sockets belong to.
    std::vector<std::unique_ptr<Loop>> loops_;
    std::vector<std::unique_ptr<ClientGroup>> groups_;
    std::vector<std::unique_ptr<Publisher>> publishers_;
    std::unique_ptr<Sampler> sampler_;
    std::int64_t zero_ns_ = 0;  // when the run began: the samples' time axis starts here
    Snapshot before_connect_;
    Snapshot after_connect_;
    double server_cpu_seconds_ = 0;
    Result result_;
};

}  // namespace

Result run(const Options& options) {
    raise_descriptor_limit();
    return Run(options).run();
}

}  // namespace shardcast::loadgen
