// Totals over every shard of a Dispatcher, for tests and benchmarks. Each read is a relaxed
// load of a single-writer counter, so any thread may call these while traffic flows.
#pragma once

#include <cstdint>

#include "dispatcher/dispatcher.hpp"

namespace shardcast::test {

// Sums what `read(stats)` gives for each shard.
template <typename Read>
std::uint64_t total(const dispatcher::Dispatcher& d, Read read) {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < d.shard_count(); ++i) n += read(d.shard(i).stats());
    return n;
}

inline std::uint64_t sent(const dispatcher::Dispatcher& d) {
    return total(d, [](const auto& s) { return s.sent.load(); });
}
inline std::uint64_t failed(const dispatcher::Dispatcher& d, dispatcher::FailureReason reason) {
    return total(d,
                 [&](const auto& s) { return s.failed[static_cast<std::size_t>(reason)].load(); });
}
// Sends for an id with no session, kept in history for its resume.
inline std::uint64_t held(const dispatcher::Dispatcher& d) {
    return total(d, [](const auto& s) { return s.held.load(); });
}
inline std::uint64_t failed_total(const dispatcher::Dispatcher& d) {
    return total(d, [](const auto& s) { return s.failed_total(); });
}
inline std::uint64_t cleaned(const dispatcher::Dispatcher& d, dispatcher::RemovalReason reason) {
    return total(d,
                 [&](const auto& s) { return s.cleaned[static_cast<std::size_t>(reason)].load(); });
}

}  // namespace shardcast::test
