// Scraper: renders the full /metrics text every millisecond on its own thread while it lives,
// far more often than any real Prometheus scrapes, so a benchmark can bound what exposing the
// metrics costs. Constructed and destroyed on the benchmark thread.
#pragma once

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "metrics/collector.hpp"

namespace shardcast::bench {

class Scraper {
public:
    // Does nothing when enabled is false, so "metrics off" runs the same code path.
    Scraper(const dispatcher::Dispatcher& dispatcher, bool enabled)
        : collector_(dispatcher, http_, {"bench", "bench"}) {
        if (enabled) {
            thread_ = std::thread([this] {
                while (!stop_.load()) {
                    benchmark::DoNotOptimize(collector_.text());
                    ++scrapes_;
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                }
            });
        }
    }
    Scraper(const Scraper&) = delete;
    Scraper& operator=(const Scraper&) = delete;
    ~Scraper() { stop(); }

    // Stops scraping and returns how many scrapes ran.
    long stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
        return scrapes_.load();
    }

private:
    transport::HttpStats http_;
    metrics::Collector collector_;
    std::atomic<bool> stop_{false};
    std::atomic<long> scrapes_{0};
    std::thread thread_;
};

}  // namespace shardcast::bench
