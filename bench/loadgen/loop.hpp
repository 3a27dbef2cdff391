// Loop: one thread running one io_context, with the figures that thread records. Every
// ClientGroup and Publisher lives on exactly one Loop and is only touched on its thread; the
// main thread posts to it, reads its atomics while it runs, and reads the rest after stop().
#pragma once

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/loadgen/histogram.hpp"
#include "bench/loadgen/proc_stats.hpp"
#include "bench/loadgen/stream_check.hpp"

namespace shardcast::loadgen {

// The measured part of the run, in steady_clock ns: messages received in [start_ns, end_ns)
// are counted for the rate and the latency. Before publishing begins both are "never".
struct Window {
    std::int64_t start_ns = std::numeric_limits<std::int64_t>::max();
    std::int64_t end_ns = std::numeric_limits<std::int64_t>::max();
};

// What one WebSocket connection of one client received, publisher by publisher.
struct ConnectionRecord {
    int client = 0;
    std::int64_t open_ns = 0;   // the upgrade's 101 arrived
    std::int64_t close_ns = 0;  // loadgen began closing it, or it ended; 0 = open at the end
    bool churned = false;       // closed by the churn workload rather than by the server
    std::vector<StreamCheck> streams;
};

// Written on the Loop's thread only. The atomics are single-writer counters the main thread
// polls for progress; a relaxed load and store suffice, with no locked instruction.
struct LoopStats {
    Histogram latency;  // send_ns to the read completing, for messages received in the window
    Histogram others_latency;  // the same, without the hot client (client 0), with --hot-fraction
    Histogram connect;         // connect start to the 101, every successful attempt
    std::uint64_t delivered_in_window = 0;
    std::uint64_t connect_failures = 0;
    std::uint64_t unexpected_closes = 0;
    std::uint64_t malformed = 0;       // frames that were not a loadgen message
    std::uint64_t framing_errors = 0;  // connections ended by a frame that broke RFC 6455
    std::string first_error;           // the first refused upgrade or framing error
    std::uint64_t reconnects = 0;
    std::uint64_t churned_handshake = 0;  // churned connections ended with a close frame
    std::uint64_t churned_reset = 0;      // and with a TCP reset
    std::uint16_t last_close_code = 0;    // from the server's close frame of an unexpected close
    std::vector<ConnectionRecord> connections;    // every connection that has ended
    std::atomic<std::uint64_t> received{0};       // all messages, any time
    std::atomic<std::uint64_t> connects_done{0};  // first attempts finished, won or failed
    std::atomic<std::uint64_t> open{0};           // clients currently open

    void bump(std::atomic<std::uint64_t>& counter, std::int64_t by = 1) {
        counter.store(counter.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(by),
                      std::memory_order_relaxed);
    }
};

class Loop {
public:
    Loop() : guard_(context_.get_executor()) {}
    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;
    ~Loop() { stop(); }

    void start() {
        thread_ = std::thread([this] {
            tid_.store(current_tid(), std::memory_order_release);
            context_.run();
        });
    }

    // Lets run() return once the handlers still pending have finished, and joins. Callers
    // close their sockets first, so what remains is bounded by the I/O timeouts.
    void stop() {
        guard_.reset();
        if (thread_.joinable()) thread_.join();
    }

    template <class F>
    void post(F&& f) {
        boost::asio::post(context_, std::forward<F>(f));
    }

    boost::asio::io_context& context() { return context_; }
    LoopStats& stats() { return stats_; }
    const LoopStats& stats() const { return stats_; }
    // The thread's id (for /proc/self/task/<tid>), or 0 before it has started.
    int tid() const { return tid_.load(std::memory_order_acquire); }

    // Set through post() before any publishing, read on this thread only.
    Window window;

private:
    // One thread per io_context: the hint lets Asio skip locking it would need for more.
    boost::asio::io_context context_{1};
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
    std::thread thread_;
    std::atomic<int> tid_{0};
    LoopStats stats_;
};

}  // namespace shardcast::loadgen
