#include "metrics/process_stats.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace shardcast::metrics {
namespace {

// Seconds since the epoch at which the machine booted (/proc/stat "btime").
std::optional<double> boot_time() {
    std::ifstream in("/proc/stat");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("btime ", 0) == 0) {
            return std::stod(line.substr(6));
        }
    }
    return std::nullopt;
}

}  // namespace

std::optional<ProcessStats> read_process_stats() {
    std::ifstream in("/proc/self/stat");
    std::string stat;
    if (!std::getline(in, stat)) {
        return std::nullopt;
    }
    // The command name (field 2) may hold spaces; every field we need follows its ')'.
    const auto close = stat.rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream fields(stat.substr(close + 2));
    std::string skip;
    unsigned long long utime = 0, stime = 0, start_ticks = 0, vsize = 0;
    long long rss_pages = 0;
    // Fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    //             utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss
    for (int i = 3; i <= 13; ++i) fields >> skip;
    fields >> utime >> stime;
    for (int i = 16; i <= 21; ++i) fields >> skip;
    fields >> start_ticks >> vsize >> rss_pages;
    if (!fields) {
        return std::nullopt;
    }

    const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    ProcessStats stats;
    stats.cpu_seconds = static_cast<double>(utime + stime) / ticks;
    stats.resident_bytes =
        static_cast<double>(rss_pages) * static_cast<double>(::sysconf(_SC_PAGESIZE));
    stats.virtual_bytes = static_cast<double>(vsize);
    if (auto boot = boot_time()) {
        stats.start_time_seconds = *boot + static_cast<double>(start_ticks) / ticks;
    }
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        stats.open_fds += 1;
    }
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        stats.max_fds = static_cast<double>(limit.rlim_cur);
    }
    return stats;
}

}  // namespace shardcast::metrics
