// Reads a process's (or one of its threads') CPU time and resident memory from /proc, so that
// loadgen can report what the server spent per delivered message and whether loadgen itself
// ran out of CPU. Any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace shardcast::loadgen {

struct ProcSample {
    double cpu_seconds = 0;      // utime + stime
    std::int64_t rss_bytes = 0;  // VmRSS
    std::int64_t hwm_bytes = 0;  // VmHWM, the peak RSS
    std::int64_t at_ns = 0;      // steady_clock when read
};

// pid's figures, or nullopt when it is gone or unreadable.
std::optional<ProcSample> read_process(int pid);
// This process's figures.
std::optional<ProcSample> read_self();
// CPU seconds of one thread of this process (RSS is per process, so left 0).
std::optional<ProcSample> read_own_thread(int tid);
// The calling thread's id, for read_own_thread.
int current_tid();

}  // namespace shardcast::loadgen
