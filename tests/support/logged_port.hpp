// For tests that start the shardcast binary: where its output goes, and the port it says it
// listens on.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "tests/support/process.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::test {

// Per test process, so parallel runs of the suite never read each other's output.
inline std::string out_file(const std::string& name) {
    return ::testing::TempDir() + "shardcast-" + name + "." + std::to_string(::getpid()) + ".out";
}

// The port the binary logged it listens on (started with --listen 127.0.0.1:0); 0, with a
// failure, when it never did.
inline std::uint16_t logged_port(Process& process) {
    constexpr std::string_view kListening = "listening on 127.0.0.1:";
    std::string output;
    std::size_t at = std::string::npos;
    const bool found = wait_until(
        [&] {
            output = process.output();
            at = output.find(kListening);
            return at != std::string::npos &&
                   output.find(' ', at + kListening.size()) != std::string::npos;
        },
        std::chrono::seconds{20});
    if (!found) {
        ADD_FAILURE() << "server did not start: " << output;
        return 0;
    }
    return static_cast<std::uint16_t>(std::stoi(output.substr(at + kListening.size())));
}

}  // namespace shardcast::test
