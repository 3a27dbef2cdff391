// The publish API's own cost on the HTTP thread: Api::handle for POST /api/v1/batch (50
// lines) and /api/v1/send, 256-byte messages to 1,000 client ids, through a running
// Dispatcher. No client is connected, so the shard drops each message after routing it and
// the time measured is the caller's: parsing, validating, copying the payload and enqueuing.
// When the caller outruns the shard and is answered 429, it waits off the clock and retries
// ("refused" counts those).
// "allocs_per_message" counts the calling thread's heap allocations, a figure that does not
// move with the machine.
//
//   api_bench [--benchmark_repetitions=5 --benchmark_report_aggregates_only=true]
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "dispatcher/dispatcher.hpp"
#include "transport/api.hpp"

namespace {

// Heap allocations made by the thread that set counting: the shard thread frees what the
// caller allocates, and only the caller's side is the API's.
thread_local bool counting = false;
thread_local long allocations = 0;

}  // namespace

// Out of line, so the compiler does not pair a new-expression with the free() inside.
[[gnu::noinline]] void* operator new(std::size_t size) {
    if (counting) ++allocations;
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using shardcast::dispatcher::Dispatcher;
using shardcast::dispatcher::DispatcherConfig;
using shardcast::transport::Api;
using shardcast::transport::ApiRequest;
using shardcast::transport::HttpStats;
using shardcast::transport::TransportConfig;

constexpr int kClients = 1000;
constexpr std::size_t kMessageBytes = 256;

std::string line_to(int client) {
    return R"({"to":"lg)" + std::to_string(client) + R"(","data":")" +
           std::string(kMessageBytes, 'x') + R"("})";
}

// Publishes `body` to `target` once per iteration; `messages` is what one request carries.
void publish(benchmark::State& state,
             std::string_view target,
             std::vector<std::string> bodies,
             int messages) {
    DispatcherConfig config;
    config.shards = 1;
    Dispatcher dispatcher(config);
    dispatcher.start();
    TransportConfig transport;
    const std::atomic<bool> accepting{true};
    HttpStats stats;
    Api api(transport, dispatcher, accepting, stats);
    const Api::Reply never = [](shardcast::transport::ApiResponse) {};

    std::size_t next = 0;
    long refused = 0;
    counting = true;
    allocations = 0;
    for (auto _ : state) {
        const ApiRequest request{"POST", target, bodies[next]};
        next = (next + 1) % bodies.size();
        const long before = allocations;
        auto response = api.handle(request, never);
        if (response && response->status == 429) {
            // The shard fell a queue's depth behind: let it catch up off the clock, and count
            // only the publish that is taken.
            state.PauseTiming();
            allocations = before;
            ++refused;
            while (dispatcher.overload_of_any()) std::this_thread::yield();
            state.ResumeTiming();
            response = api.handle(request, never);
        }
        if (!response || response->status != 202) {
            counting = false;
            state.SkipWithError(response ? response->body.c_str() : "no answer");
            break;
        }
    }
    counting = false;
    const auto published = static_cast<double>(state.iterations()) * messages;
    state.SetItemsProcessed(state.iterations() * messages);
    state.counters["allocs_per_message"] =
        published > 0 ? static_cast<double>(allocations) / published : 0;
    state.counters["refused"] = static_cast<double>(refused);
    dispatcher.stop(std::chrono::seconds(1));
}

void BM_Batch(benchmark::State& state) {
    constexpr int kLines = 50;
    std::vector<std::string> bodies;
    for (int first = 0; first < kClients; first += kLines) {
        std::string body;
        for (int i = first; i < first + kLines; ++i) body += line_to(i) + "\n";
        bodies.push_back(std::move(body));
    }
    publish(state, "/api/v1/batch", std::move(bodies), kLines);
}
BENCHMARK(BM_Batch)->Unit(benchmark::kMicrosecond);

void BM_Send(benchmark::State& state) {
    std::vector<std::string> bodies;
    for (int i = 0; i < kClients; ++i) bodies.push_back(line_to(i));
    publish(state, "/api/v1/send", std::move(bodies), 1);
}
BENCHMARK(BM_Send)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
