// ProcessStats: the standard process_* figures, read from /proc at scrape time.
// Any thread; each call reads the files afresh.
#pragma once

#include <cstdint>
#include <optional>

namespace shardcast::metrics {

struct ProcessStats {
    double cpu_seconds = 0;  // user + system
    double resident_bytes = 0;
    double virtual_bytes = 0;
    double open_fds = 0;
    double max_fds = 0;
    double start_time_seconds = 0;  // since the Unix epoch
};

// nullopt when /proc is unreadable (not Linux, or a restricted sandbox).
std::optional<ProcessStats> read_process_stats();

}  // namespace shardcast::metrics
