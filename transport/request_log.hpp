// RequestLog: the log lines of rejected requests, at a bounded rate. A flood of bad requests
// must not turn into a flood of log bytes: each line is short (the target cut at 128 bytes,
// the error at 256), at most kLinesPerSecond of them go out a second after a burst of
// kBurst, and what is held back is counted and said in the next line that goes out.
//
// Thread contract: rejected() from any HTTP or shard thread; a mutex is taken per rejection,
// which is never on the publish path's success.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>

namespace shardcast::transport {

class RequestLog {
public:
    static constexpr double kLinesPerSecond = 20;
    static constexpr double kBurst = 100;

    // One line: who (the client address), what (method and target, the token hidden), and
    // the answer, or nothing when the rate is spent.
    void rejected(std::string_view address,
                  std::string_view method,
                  std::string_view target,
                  unsigned status,
                  std::string_view error);

    // Lines held back since the server started.
    std::uint64_t suppressed() const;

private:
    bool admit(std::uint64_t& held_back);

    mutable std::mutex mutex_;
    double tokens_ = kBurst;
    std::chrono::steady_clock::time_point last_{std::chrono::steady_clock::now()};
    std::uint64_t held_back_ = 0;  // since the last line that went out
    std::uint64_t suppressed_ = 0;
};

}  // namespace shardcast::transport
