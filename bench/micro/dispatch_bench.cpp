// Dispatch throughput with metrics on and off: producer threads send to in-memory sessions
// through the real Dispatcher, and one iteration ends when every message was written.
// "On" adds a scraper rendering /metrics every millisecond, far more often than any real
// Prometheus; the per-shard counters themselves are always kept (they also feed
// /api/v1/stats and the log summary), so this measures what exposing them costs.
//
//   dispatch_bench [--benchmark_repetitions=5 --benchmark_report_aggregates_only=true]
#include <benchmark/benchmark.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/micro/scraper.hpp"
#include "dispatcher/dispatcher.hpp"
#include "tests/support/sink_session.hpp"
#include "tests/support/totals.hpp"

namespace {

using shardcast::dispatcher::Dispatcher;
using shardcast::dispatcher::DispatcherConfig;
using shardcast::dispatcher::make_payload;
using shardcast::test::SinkSession;

constexpr int kProducers = 4;
constexpr int kSessions = 100;
constexpr int kPerProducer = 5000;

void BM_Dispatch(benchmark::State& state) {
    const bool metrics_on = state.range(0) != 0;
    DispatcherConfig config;
    config.shards = 2;
    Dispatcher dispatcher(config);
    dispatcher.start();
    std::vector<std::shared_ptr<SinkSession>> sessions;
    std::vector<std::string> ids;
    for (int i = 0; i < kSessions; ++i) {
        ids.push_back("client-" + std::to_string(i));
        sessions.push_back(SinkSession::open(dispatcher.shard_for(ids.back()), ids.back()));
    }
    shardcast::bench::Scraper scraper(dispatcher, metrics_on);
    const auto payload = make_payload(std::string(64, 'x'));
    auto delivered = [&] { return shardcast::test::sent(dispatcher); };
    for (auto _ : state) {
        const std::uint64_t target = delivered() + kProducers * kPerProducer;
        std::vector<std::thread> producers;
        for (int p = 0; p < kProducers; ++p) {
            producers.emplace_back([&, p] {
                for (int i = 0; i < kPerProducer; ++i) {
                    dispatcher.send(ids[(i * 7 + p) % kSessions], payload);
                }
            });
        }
        for (auto& t : producers) t.join();
        while (delivered() < target) std::this_thread::yield();
    }
    const long scrapes = scraper.stop();
    state.SetItemsProcessed(state.iterations() * kProducers * kPerProducer);
    state.counters["scrapes"] = static_cast<double>(scrapes);
    dispatcher.stop(std::chrono::seconds(1));
}
BENCHMARK(BM_Dispatch)
    ->ArgName("metrics")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
