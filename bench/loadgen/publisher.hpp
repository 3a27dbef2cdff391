// Publisher: one HTTP/1.1 keep-alive connection that publishes through the API with one
// request in flight at a time, so that its messages have a defined order. Paced at
// rate / publishers messages per second, or as fast as the answers come back when rate is 0;
// the soak's broadcaster (index == publishers) at broadcast_rate.
// Beast is included only by publisher.cpp.
//
// Thread contract: start() runs on the Loop's thread (post it); done() from any thread;
// result() once done() is true.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/loadgen/histogram.hpp"
#include "bench/loadgen/loop.hpp"
#include "bench/loadgen/options.hpp"

namespace shardcast::loadgen {

// When one message's publish began (its send_ns) and when its 202 arrived.
struct PublishTimes {
    std::int64_t start_ns = 0;
    std::int64_t end_ns = 0;
};

struct PublisherResult {
    std::uint64_t requests = 0;            // answered with 202
    std::uint64_t accepted = 0;            // messages in those requests
    std::uint64_t accepted_in_window = 0;  // of them, sent inside the measured window
    std::uint64_t http_errors = 0;         // answers other than 202 and 429, rejected batch lines
    std::uint64_t throttled = 0;           // 429 answers: the server pushed back
    std::uint64_t transport_errors = 0;    // the connection failed; the publisher stopped
    std::string first_error;
    // Per destination (client number, or 0 for broadcasts): how many messages were accepted,
    // which is also the next sequence number.
    std::vector<std::uint64_t> sent;
    // Under churn (churn, soak) only: per destination, the times of each sequence number.
    std::vector<std::vector<PublishTimes>> times;
    Histogram request_latency;  // request written to answer read, in the window
};

class Publisher {
public:
    Publisher(Loop& loop, const Options& options, int index);
    Publisher(const Publisher&) = delete;
    Publisher& operator=(const Publisher&) = delete;
    ~Publisher();

    // Connects at once, publishes from begin_ns until window.end_ns, then reports done.
    void start(std::int64_t begin_ns, Window window);
    bool done() const { return done_.load(std::memory_order_acquire); }
    const PublisherResult& result() const { return result_; }

private:
    struct Impl;
    // Before impl_, which fills them in as it is constructed.
    PublisherResult result_;
    std::atomic<bool> done_{false};
    std::unique_ptr<Impl> impl_;
};

}  // namespace shardcast::loadgen
