// /proc/<pid>/stat fields 14 and 15 (utime, stime) in clock ticks, VmRSS / VmHWM from
// /proc/<pid>/status, the entries of /proc/<pid>/fd, each thread's /proc/<pid>/task/<tid>/
// schedstat, and the first line of /proc/stat, as proc(5) documents them.
#include "bench/loadgen/proc_stats.hpp"

#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string_view>

#include "bench/loadgen/message.hpp"

namespace shardcast::loadgen {

namespace {

std::optional<double> read_cpu_seconds(const std::string& stat_path) {
    std::ifstream in(stat_path);
    std::string line;
    if (!std::getline(in, line)) return std::nullopt;
    // The command name (field 2) may hold spaces and parentheses: start after the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream fields(line.substr(close + 2));
    std::string skip;
    // Fields 3..13 precede utime.
    for (int i = 3; i <= 13; ++i) fields >> skip;
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    if (!(fields >> utime >> stime)) return std::nullopt;
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

void read_memory(const std::string& status_path, ProcSample& sample) {
    std::ifstream in(status_path);
    std::string line;
    auto kib = [](std::string_view rest) {
        return static_cast<std::int64_t>(std::strtoll(rest.data(), nullptr, 10)) * 1024;
    };
    while (std::getline(in, line)) {
        if (line.starts_with("VmRSS:")) sample.rss_bytes = kib(line.c_str() + 6);
        if (line.starts_with("VmHWM:")) sample.hwm_bytes = kib(line.c_str() + 6);
    }
}

std::optional<ProcSample> read_at(const std::string& dir, bool memory) {
    ProcSample sample;
    sample.at_ns = now_ns();
    const auto cpu = read_cpu_seconds(dir + "/stat");
    if (!cpu) return std::nullopt;
    sample.cpu_seconds = *cpu;
    if (memory) read_memory(dir + "/status", sample);
    return sample;
}

}  // namespace

std::optional<ProcSample> read_process(int pid) {
    return read_at("/proc/" + std::to_string(pid), true);
}

std::optional<ProcSample> read_self() { return read_at("/proc/self", true); }

std::optional<ProcSample> read_own_thread(int tid) {
    return read_at("/proc/self/task/" + std::to_string(tid), false);
}

std::optional<int> count_descriptors(int pid) {
    const std::string path = "/proc/" + std::to_string(pid) + "/fd";
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) return std::nullopt;
    int count = 0;
    while (const dirent* entry = readdir(dir)) {
        if (entry->d_name[0] != '.') ++count;  // every name but "." and ".." is a number
    }
    closedir(dir);
    return count;
}

std::optional<double> read_wait_seconds(int pid) {
    const std::string path = "/proc/" + std::to_string(pid) + "/task";
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) return std::nullopt;
    unsigned long long waited_ns = 0;
    bool any = false;
    while (const dirent* entry = readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        std::ifstream in(path + "/" + entry->d_name + "/schedstat");
        unsigned long long on_cpu_ns = 0;
        unsigned long long wait_ns = 0;
        if (in >> on_cpu_ns >> wait_ns) {
            waited_ns += wait_ns;
            any = true;
        }
    }
    closedir(dir);
    if (!any) return std::nullopt;
    return static_cast<double>(waited_ns) / 1e9;
}

std::optional<MachineSample> read_machine() {
    std::ifstream in("/proc/stat");
    std::string label;
    if (!(in >> label) || label != "cpu") return std::nullopt;
    // user nice system idle iowait irq softirq steal, then guest times that user and nice
    // already include.
    unsigned long long ticks[8] = {};
    for (auto& t : ticks) {
        if (!(in >> t)) return std::nullopt;
    }
    unsigned long long total = 0;
    for (const auto t : ticks) total += t;
    const auto hz = static_cast<double>(sysconf(_SC_CLK_TCK));
    return MachineSample{static_cast<double>(ticks[7]) / hz, static_cast<double>(total) / hz};
}

int current_tid() { return static_cast<int>(syscall(SYS_gettid)); }

}  // namespace shardcast::loadgen
