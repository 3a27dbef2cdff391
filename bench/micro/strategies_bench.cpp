// Strategy comparison: one workload through four ways of getting messages from P producer
// threads to C sessions, each session's socket modelled by the same Sink
// (strategies/sink.hpp). A sink write stands for one send() or writev(): a fixed cost per
// call plus a cost per byte, both CPU work; it counts messages and calls, and any
// overlapping calls:
//
//   GlobalMutex    one lock around every send (strategies/global_mutex.hpp)
//   SessionMutex   a lock per session (strategies/session_mutex.hpp)
//   BufferedFlush  Spring's buffer flushed by the tryLock winner (strategies/buffered_flush.hpp)
//   Shardcast      the real Dispatcher, Inbox, Shard and Session (strategies/shardcast_path.hpp)
//
// and a control, Unguarded (strategies/unguarded.hpp), which writes with no protection at all
// and must show violations: proof that the detector sees overlaps when they happen.
//
// The baselines write one message per call, as their real counterparts do; shardcast's
// session hands up to 256 queued messages to one call, as its transport's sendmsg does. What
// a call costs is calibrated in the same binary: BM_LoopbackSend measures the CPU time of a
// real send() on a 127.0.0.1 TCP connection, and BM_SinkWrite what the sink charges.
//
// An iteration is kMessages sends split evenly across the producers, and ends when every
// message has been written by a sink, so asynchronous delivery is timed to the end. The mix
// is uniform, or hot: 30 % of messages to one session and the rest uniform over the others.
// Every producer times one send in kSampleEvery with the steady clock: how long a send
// holds the producer. msgs_per_write is deliveries per socket write, over all sinks.
// cpu_ns_per_msg is the process's CPU time over the timed region per message.
// Shardcast also runs with a scraper rendering /metrics every millisecond (metrics:1) and
// without (metrics:0).
//
//   strategies_bench [--sink_rounds=N] [--sink_call_steps=N]
//                    [--benchmark_min_time=0.2 --benchmark_repetitions=7
//                     --benchmark_enable_random_interleaving=true
//                     --benchmark_report_aggregates_only=true]
//
// Results and the exact commands: bench/results/strategies.md.
#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <latch>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bench/micro/loopback_pair.hpp"
#include "bench/micro/scraper.hpp"
#include "bench/micro/strategies/buffered_flush.hpp"
#include "bench/micro/strategies/global_mutex.hpp"
#include "bench/micro/strategies/session_mutex.hpp"
#include "bench/micro/strategies/shardcast_path.hpp"
#include "bench/micro/strategies/sink.hpp"
#include "bench/micro/strategies/unguarded.hpp"
#include "dispatcher/payload.hpp"

namespace {

using namespace shardcast::bench;
using shardcast::dispatcher::make_payload;
using shardcast::dispatcher::Payload;
using Clock = std::chrono::steady_clock;

constexpr int kMessages = 16'000;  // per iteration; divisible by every producer count
constexpr int kSampleEvery = 8;
constexpr double kHotShare = 0.3;
constexpr std::size_t kPayloadBytes = 64;
// The sink's costs, set to what a real send() costs (bench/results/strategies.md, "The
// default sink is the measured one"). Per call: 2,800 steps, about 3 us, the CPU time of a
// send() on an idle 127.0.0.1 connection (BM_LoopbackSend/bytes:64/idle:1, medians of
// 3.1-5.0 us; BM_SinkWrite/messages:0 shows what the steps cost on the machine at hand). Per
// byte: nothing, since each further 64-byte message in one send() adds 2-12 ns, below what
// one round of FNV-1a per byte charges (about 67 ns per message). The former default, 3
// rounds and 1,000 steps, charged a third of the call and 18-140 times the bytes; earlier
// tables used it, and --sink_rounds=3 --sink_call_steps=1000 reproduces it.
constexpr int kDefaultSinkRounds = 0;
constexpr int kDefaultSinkCallSteps = 2800;

SinkCost sink_cost{kDefaultSinkRounds, kDefaultSinkCallSteps};  // --sink_rounds, --sink_call_steps

// Who sends to whom: the same sequence for every strategy, generated before timing starts.
struct Workload {
    int producers = 0;
    std::vector<std::string> ids;                   // one per session
    std::vector<std::vector<std::uint32_t>> sends;  // per producer: session index of each send
};

Workload make_workload(int producers, int sessions, bool hot) {
    Workload w;
    w.producers = producers;
    for (int i = 0; i < sessions; ++i) w.ids.push_back("client-" + std::to_string(i));
    for (int p = 0; p < producers; ++p) {
        std::mt19937_64 rng(static_cast<std::uint64_t>(p) * 7919 + sessions * 2 + hot);
        std::bernoulli_distribution to_hot(hot && sessions > 1 ? kHotShare : 0.0);
        // Hot: the other 70 % spread over the other sessions. Uniform: over all of them.
        std::uniform_int_distribution<std::uint32_t> pick(hot && sessions > 1 ? 1 : 0,
                                                          static_cast<std::uint32_t>(sessions - 1));
        auto& sends = w.sends.emplace_back();
        for (int i = 0; i < kMessages / producers; ++i) {
            sends.push_back(to_hot(rng) ? 0 : pick(rng));
        }
    }
    return w;
}

Sinks make_sinks(std::size_t n) {
    Sinks sinks;
    for (std::size_t i = 0; i < n; ++i) sinks.emplace_back(sink_cost);
    return sinks;
}

// Sampled send durations in log-linear buckets (8 per power of two, so within 12.5 %),
// with an exact mean and max. One per producer thread, on its own cache lines, merged after
// the run.
class alignas(64) SendTimes {
public:
    void record(std::uint64_t ns) {
        ++buckets_[bucket_of(ns)];
        sum_ += ns;
        ++count_;
        max_ = std::max(max_, ns);
    }
    void merge(const SendTimes& other) {
        for (std::size_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
        sum_ += other.sum_;
        count_ += other.count_;
        max_ = std::max(max_, other.max_);
    }
    double mean() const {
        return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
    }
    std::uint64_t max() const { return max_; }
    // The upper bound of the bucket holding the q-quantile.
    std::uint64_t quantile(double q) const {
        const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_));
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < kBuckets; ++i) {
            seen += buckets_[i];
            if (seen > rank) return std::min(upper_bound_of(i), max_);
        }
        return max_;
    }

private:
    static constexpr std::size_t kBuckets = 16 + 60 * 8;

    static std::size_t bucket_of(std::uint64_t v) {
        if (v < 16) return v;
        const int width = static_cast<int>(std::bit_width(v));        // >= 5
        const auto top = static_cast<std::size_t>(v >> (width - 4));  // 8..15
        return 16 + static_cast<std::size_t>(width - 5) * 8 + (top - 8);
    }
    static std::uint64_t upper_bound_of(std::size_t bucket) {
        if (bucket < 16) return bucket;
        const std::size_t k = bucket - 16;
        const int width = static_cast<int>(k / 8) + 5;
        const std::uint64_t top = k % 8 + 8;
        return ((top + 1) << (width - 4)) - 1;
    }

    std::array<std::uint64_t, kBuckets> buckets_{};
    std::uint64_t sum_ = 0;
    std::uint64_t count_ = 0;
    std::uint64_t max_ = 0;
};

std::int64_t cpu_ns_of(clockid_t clock) {
    timespec t{};
    clock_gettime(clock, &t);
    return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}
std::int64_t thread_cpu_ns() { return cpu_ns_of(CLOCK_THREAD_CPUTIME_ID); }
std::int64_t process_cpu_ns() { return cpu_ns_of(CLOCK_PROCESS_CPUTIME_ID); }

// Runs the workload through a strategy, once per iteration, and reports throughput to full
// delivery, CPU time per message, producer time per send, overlapping writes and undelivered
// messages.
template <class Strategy>
void run(benchmark::State& state, Strategy& strategy, const Sinks& sinks, const Workload& w) {
    // A payload per message, made before timing starts: as in a server, where every publish
    // brings its own, no reference count is shared between messages.
    std::vector<std::vector<Payload>> payloads(static_cast<std::size_t>(w.producers));
    for (int p = 0; p < w.producers; ++p) {
        for (std::size_t i = 0; i < w.sends[static_cast<std::size_t>(p)].size(); ++i) {
            payloads[static_cast<std::size_t>(p)].push_back(
                make_payload(std::string(kPayloadBytes, 'x')));
        }
    }
    std::vector<SendTimes> times(static_cast<std::size_t>(w.producers));
    std::uint64_t sent = 0;
    std::int64_t cpu_ns = 0;

    for (auto _ : state) {
        std::latch ready(w.producers);
        std::latch go(1);
        std::latch done(w.producers);
        std::vector<std::thread> producers;
        for (int p = 0; p < w.producers; ++p) {
            producers.emplace_back([&, p] {
                const auto& mine_payloads = payloads[static_cast<std::size_t>(p)];
                const auto& sends = w.sends[static_cast<std::size_t>(p)];
                SendTimes& mine = times[static_cast<std::size_t>(p)];
                ready.count_down();
                go.wait();
                for (std::size_t i = 0; i < sends.size(); ++i) {
                    const std::string& id = w.ids[sends[i]];
                    const Payload& payload = mine_payloads[i];
                    if (i % kSampleEvery != 0) {
                        strategy.send(id, payload);
                        continue;
                    }
                    const auto start = Clock::now();
                    strategy.send(id, payload);
                    mine.record(static_cast<std::uint64_t>(
                        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start)
                            .count()));
                }
                done.count_down();
            });
        }
        ready.wait();
        const std::int64_t cpu_start = process_cpu_ns();
        const auto start = Clock::now();
        go.count_down();
        done.wait();
        sent += kMessages;
        strategy.wait_delivered(sent);
        const auto stop = Clock::now();
        cpu_ns += process_cpu_ns() - cpu_start;
        for (auto& t : producers) t.join();
        state.SetIterationTime(std::chrono::duration<double>(stop - start).count());
    }

    SendTimes all;
    for (const auto& t : times) all.merge(t);
    state.SetItemsProcessed(static_cast<std::int64_t>(sent));
    // CPU time of every thread of the process over the timed region, per message: what the
    // strategy costs the machine, whoever waits for whom.
    state.counters["cpu_ns_per_msg"] = static_cast<double>(cpu_ns) / static_cast<double>(sent);
    state.counters["prod_ns"] = all.mean();
    state.counters["prod_p99_ns"] = static_cast<double>(all.quantile(0.99));
    state.counters["prod_max_ns"] = static_cast<double>(all.max());
    // Deliveries per socket write: what coalescing saves in fixed per-call cost.
    state.counters["msgs_per_write"] =
        static_cast<double>(total_messages(sinks)) / static_cast<double>(total_writes(sinks));
    state.counters["violations"] = static_cast<double>(total_violations(sinks));
    state.counters["undelivered"] = static_cast<double>(sent - total_messages(sinks));
}

Workload workload_of(const benchmark::State& state) {
    return make_workload(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
                         state.range(2) != 0);
}

void BM_GlobalMutex(benchmark::State& state) {
    const Workload w = workload_of(state);
    Sinks sinks = make_sinks(w.ids.size());
    GlobalMutex strategy(sinks, w.ids);
    run(state, strategy, sinks, w);
}

void BM_SessionMutex(benchmark::State& state) {
    const Workload w = workload_of(state);
    Sinks sinks = make_sinks(w.ids.size());
    SessionMutex strategy(sinks, w.ids);
    run(state, strategy, sinks, w);
}

void BM_BufferedFlush(benchmark::State& state) {
    const Workload w = workload_of(state);
    Sinks sinks = make_sinks(w.ids.size());
    BufferedFlush strategy(sinks, w.ids);
    run(state, strategy, sinks, w);
    state.counters["limit_exceeded"] = static_cast<double>(strategy.limit_exceeded());
}

void BM_Shardcast(benchmark::State& state) {
    const Workload w = workload_of(state);
    const bool metrics_on = state.range(3) != 0;
    Sinks sinks = make_sinks(w.ids.size());
    ShardcastPath strategy(sinks, w.ids);

    shardcast::bench::Scraper scraper(strategy.dispatcher(), metrics_on);
    run(state, strategy, sinks, w);
    state.counters["scrapes"] = static_cast<double>(scraper.stop());
}

void BM_Unguarded(benchmark::State& state) {
    const Workload w = workload_of(state);
    Sinks sinks = make_sinks(w.ids.size());
    Unguarded strategy(sinks, w.ids);
    run(state, strategy, sinks, w);
}

// The cost of one sink write call carrying 0, 1 or 64 messages of 64 bytes, with the
// configured costs, on one thread with no contention. messages:0 is the fixed cost alone.
void BM_SinkWrite(benchmark::State& state) {
    Sink sink(sink_cost);
    const std::string bytes(kPayloadBytes, 'x');
    const std::vector<std::string_view> messages(static_cast<std::size_t>(state.range(0)), bytes);
    for (auto _ : state) sink.write(messages);
    state.SetItemsProcessed(state.iterations() * state.range(0));
    state.counters["rounds"] = sink_cost.rounds;
    state.counters["call_steps"] = sink_cost.call_steps;
}

// What one real send() of 64 bytes (or 1,152, 4,096 or 16,384: a batch of 18, 64 or 256 such
// messages) costs the calling thread in CPU time, on a connected 127.0.0.1 TCP socket: the
// figures the sink's costs are compared with.
//
// idle:1 waits for the reader's answer after each send, so every send finds the connection
// idle and runs the whole transmit path, as a write to a client that keeps up does. Only
// the send is timed: the thread's CPU clock is read before and after it, and the cost of a
// read, timed between two reads just before, is taken off. Loopback also runs the
// receiver's TCP input inside the send: work a send to a NIC leaves to the other machine.
//
// idle:0 streams sends back to back and times the whole loop. Where the sender outruns the
// reader, a send only appends to the socket's queue and the transmission happens later, on
// the reader's thread, when an ACK arrives; otherwise each send transmits. A run can settle
// in either regime, so this figure is shown, not calibrated against.
void BM_LoopbackSend(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const bool idle = state.range(1) != 0;
    LoopbackPair pair(idle ? size : 0);
    if (pair.error()) {
        state.SkipWithError(
            (std::string(pair.failed_step()) + ": " + pair.error().message()).c_str());
        return;
    }
    const std::string bytes(size, 'x');
    bool ok = true;
    std::int64_t cpu_ns = 0;
    if (idle) {
        for (auto _ : state) {
            const std::int64_t t0 = thread_cpu_ns();
            const std::int64_t t1 = thread_cpu_ns();
            ok = pair.send(bytes) && ok;
            const std::int64_t t2 = thread_cpu_ns();
            cpu_ns += (t2 - t1) - (t1 - t0);
            ok = pair.wait_ack() && ok;
        }
    } else {
        const std::int64_t start = thread_cpu_ns();
        for (auto _ : state) ok = pair.send(bytes) && ok;
        cpu_ns = thread_cpu_ns() - start;
    }
    if (!ok) {
        state.SkipWithError("send failed");
        return;
    }
    state.counters["cpu_ns_per_send"] =
        static_cast<double>(cpu_ns) / static_cast<double>(state.iterations());
}

// P in {1, 2, 4, 8, 16}, C in {1, 100, 10,000}, uniform and hot. With one session both
// mixes send everything to it, so that pair runs once.
void matrix(benchmark::internal::Benchmark* b, bool with_metrics) {
    if (with_metrics) {
        b->ArgNames({"producers", "sessions", "hot", "metrics"});
    } else {
        b->ArgNames({"producers", "sessions", "hot"});
    }
    for (const int sessions : {1, 100, 10'000}) {
        for (const int hot : {0, 1}) {
            if (sessions == 1 && hot == 1) continue;
            for (const int producers : {1, 2, 4, 8, 16}) {
                if (!with_metrics) {
                    b->Args({producers, sessions, hot});
                    continue;
                }
                for (const int metrics : {0, 1}) b->Args({producers, sessions, hot, metrics});
            }
        }
    }
    b->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_LoopbackSend)
    ->ArgNames({"bytes", "idle"})
    ->ArgsProduct({{64, 1152, 4096, 16384}, {1, 0}});
BENCHMARK(BM_SinkWrite)->ArgName("messages")->Arg(0)->Arg(1)->Arg(64);
BENCHMARK(BM_GlobalMutex)->Apply([](auto* b) { matrix(b, false); });
BENCHMARK(BM_SessionMutex)->Apply([](auto* b) { matrix(b, false); });
BENCHMARK(BM_BufferedFlush)->Apply([](auto* b) { matrix(b, false); });
BENCHMARK(BM_Shardcast)->Apply([](auto* b) { matrix(b, true); });
// The control needs only a few shapes: producers sharing one session, and the hot mix.
BENCHMARK(BM_Unguarded)
    ->ArgNames({"producers", "sessions", "hot"})
    ->Args({2, 1, 0})
    ->Args({16, 1, 0})
    ->Args({2, 100, 1})
    ->Args({16, 100, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
    // Our flags are taken out before Google Benchmark checks the rest.
    const std::array<std::pair<std::string_view, int*>, 2> flags{{
        {"--sink_rounds=", &sink_cost.rounds},
        {"--sink_call_steps=", &sink_cost.call_steps},
    }};
    std::vector<char*> args;
    for (int i = 0; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const auto flag = std::find_if(flags.begin(), flags.end(),
                                       [&](const auto& f) { return arg.starts_with(f.first); });
        if (flag != flags.end()) {
            *flag->second = std::stoi(std::string(arg.substr(flag->first.size())));
        } else {
            args.push_back(argv[i]);
        }
    }
    int n = static_cast<int>(args.size());
    benchmark::Initialize(&n, args.data());
    if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
    benchmark::AddCustomContext("sink_rounds", std::to_string(sink_cost.rounds));
    benchmark::AddCustomContext("sink_call_steps", std::to_string(sink_cost.call_steps));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
