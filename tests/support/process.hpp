// Process: a child program started by a test, with its stdout and stderr captured to a file.
// The destructor kills it (SIGKILL) if it is still running. Use from one thread.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace shardcast::test {

class Process {
public:
    // max_open_files, when not 0, is the child's RLIMIT_NOFILE, soft and hard alike.
    Process(std::vector<std::string> argv, std::string output_path, rlim_t max_open_files = 0)
        : output_path_(std::move(output_path)) {
        // Emptied here, before the child exists, so output() never shows a previous run's text.
        std::ofstream(output_path_, std::ios::trunc).flush();
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            // Only async-signal-safe calls between fork and exec: the parent has threads.
            const int out = ::open(output_path_.c_str(), O_WRONLY | O_APPEND);
            if (out >= 0) {
                ::dup2(out, STDOUT_FILENO);
                ::dup2(out, STDERR_FILENO);
            }
            if (max_open_files > 0) {
                const rlimit limit{max_open_files, max_open_files};  // setrlimit is a bare syscall
                ::setrlimit(RLIMIT_NOFILE, &limit);
            }
            ::execv(args[0], args.data());
            ::_exit(127);
        }
    }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process() {
        if (!exit_code_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        std::remove(output_path_.c_str());
    }

    void signal(int sig) { ::kill(pid_, sig); }

    // Waits for the exit; returns the exit code (128+signal when killed), or nullopt on timeout.
    std::optional<int> wait(std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!exit_code_) {
            int status = 0;
            const pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return exit_code_;
    }

    // Everything the program printed so far.
    std::string output() const {
        std::ifstream in(output_path_);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

private:
    std::string output_path_;
    pid_t pid_ = -1;
    std::optional<int> exit_code_;
};

}  // namespace shardcast::test
