// Reads a process's (or one of its threads') CPU time, resident memory and open descriptors
// from /proc, so that loadgen can report what the server spent per delivered message, whether
// it holds on to memory or descriptors, and whether loadgen itself ran out of CPU. Any thread.
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

// The machine's CPU time from /proc/stat, all CPUs together: the time the hypervisor gave
// to other guests while this one had work (steal) shows how far a run's timings can be
// trusted on a shared VM.
struct MachineSample {
    double steal_seconds = 0;
    double total_seconds = 0;  // every state, steal included
};

// pid's figures, or nullopt when it is gone or unreadable.
std::optional<ProcSample> read_process(int pid);
// This process's figures.
std::optional<ProcSample> read_self();
// CPU seconds of one thread of this process (RSS is per process, so left 0).
std::optional<ProcSample> read_own_thread(int tid);
// How many descriptors pid has open (the entries of /proc/<pid>/fd), or nullopt when that
// cannot be read.
std::optional<int> count_descriptors(int pid);
// How long pid's threads have waited, runnable, for a CPU (the second field of each
// /proc/<pid>/task/<tid>/schedstat), in seconds: on a shared machine, the time the server was
// starved rather than slow. nullopt when the kernel does not keep it.
std::optional<double> read_wait_seconds(int pid);
// The machine's figures, or nullopt when /proc/stat is unreadable.
std::optional<MachineSample> read_machine();
// The calling thread's id, for read_own_thread.
int current_tid();

}  // namespace shardcast::loadgen
