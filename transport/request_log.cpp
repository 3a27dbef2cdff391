#include "transport/request_log.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "transport/printable.hpp"
#include "transport/request_target.hpp"

namespace shardcast::transport {

bool RequestLog::admit(std::uint64_t& held_back) {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ = std::min(kBurst, tokens_ + elapsed * kLinesPerSecond);
    if (tokens_ < 1) {
        ++held_back_;
        ++suppressed_;
        return false;
    }
    tokens_ -= 1;
    held_back = std::exchange(held_back_, 0);
    return true;
}

void RequestLog::rejected(std::string_view address,
                          std::string_view method,
                          std::string_view target,
                          unsigned status,
                          std::string_view error) {
    std::uint64_t held_back = 0;
    if (!admit(held_back)) {
        return;
    }
    if (held_back > 0) {
        spdlog::warn("{} more rejected requests were not logged (at most {} lines a second)",
                     held_back, kLinesPerSecond);
    }
    // The error is our own JSON (control characters escaped): cut, not escaped.
    constexpr std::size_t kErrorBytes = 256;
    // A request refused before its head was parsed has neither method nor target.
    spdlog::warn("rejected {} {} from {}: {} {}{}", printable(method.empty() ? "-" : method, 16),
                 target.empty() ? std::string("-") : loggable_target(target),
                 printable(address, 64), status, error.substr(0, kErrorBytes),
                 error.size() > kErrorBytes ? "..." : "");
}

std::uint64_t RequestLog::suppressed() const {
    std::lock_guard lock(mutex_);
    return suppressed_;
}

}  // namespace shardcast::transport
