// The sampling thread of sampler.hpp. It sleeps on a condition variable rather than
// sleep_for, so that stop() need not wait out an interval.
#include "bench/loadgen/sampler.hpp"

#include <utility>

#include "bench/loadgen/message.hpp"
#include "bench/loadgen/proc_stats.hpp"

namespace shardcast::loadgen {

Sampler::Sampler(int pid,
                 std::chrono::nanoseconds interval,
                 std::int64_t zero_ns,
                 std::function<Progress()> progress)
    : pid_(pid), interval_(interval), zero_ns_(zero_ns), progress_(std::move(progress)) {}

Sampler::~Sampler() { stop(); }

void Sampler::start() {
    thread_ = std::thread([this] { run(); });
}

void Sampler::stop() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

// Samples fall due at fixed times from the first, so a slow read does not shift the rest.
void Sampler::run() {
    auto due = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    while (true) {
        lock.unlock();
        take();
        lock.lock();
        due += interval_;
        if (wake_.wait_until(lock, due, [this] { return stopping_; })) break;
    }
    lock.unlock();
    take();
}

void Sampler::take() {
    const auto process = read_process(pid_);
    const auto descriptors = count_descriptors(pid_);
    if (!process || !descriptors) return;  // the server is gone: the series just ends
    const Progress progress = progress_();
    samples_.push_back(Sample{static_cast<double>(process->at_ns - zero_ns_) / 1e9,
                              process->rss_bytes, *descriptors, process->cpu_seconds,
                              read_wait_seconds(pid_).value_or(0), progress.open,
                              progress.received});
}

}  // namespace shardcast::loadgen
