// Sampler: reads the server's RSS, open descriptors, CPU time and time spent waiting for a
// CPU every interval, with loadgen's own progress beside them, on a thread of its own from
// start() until stop(), so that a long run shows how they move rather than only where they
// began and ended.
//
// Thread contract: start() and stop() on the main thread; samples() once stop() returned.
// The progress callback runs on the sampling thread and must only read atomics.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "bench/loadgen/report.hpp"

namespace shardcast::loadgen {

class Sampler {
public:
    struct Progress {
        std::uint64_t open = 0;
        std::uint64_t received = 0;
    };

    // zero_ns: the steady_clock time that t_s counts from.
    Sampler(int pid,
            std::chrono::nanoseconds interval,
            std::int64_t zero_ns,
            std::function<Progress()> progress);
    Sampler(const Sampler&) = delete;
    Sampler& operator=(const Sampler&) = delete;
    ~Sampler();

    // Takes a sample at once, then one every interval.
    void start();
    // Takes a last sample and joins the thread.
    void stop();
    const std::vector<Sample>& samples() const { return samples_; }

private:
    void run();
    void take();

    const int pid_;
    const std::chrono::nanoseconds interval_;
    const std::int64_t zero_ns_;
    const std::function<Progress()> progress_;
    std::vector<Sample> samples_;  // written by the sampling thread until stop() joins it
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;  // guarded by mutex_
    std::thread thread_;
};

}  // namespace shardcast::loadgen
