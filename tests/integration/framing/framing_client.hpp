// Runs one of the framing client scripts against a fresh server: the server's own framing
// (batched writes, control frames, fragments, both closing handshakes, 1009) against a strict
// third-party client. Each script runs its checks and exits 0 only when all passed.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/integration/test_server.hpp"
#include "tests/support/process.hpp"

namespace shardcast::test {

inline void run_framing_client(std::vector<std::string> command, const std::string& name) {
    TestServer server;
    const std::string out =
        ::testing::TempDir() + "shardcast-" + name + "." + std::to_string(::getpid()) + ".out";
    command.push_back(std::to_string(server.port()));
    Process client(command, out);
    const auto code = client.wait(std::chrono::seconds(90));
    ASSERT_TRUE(code.has_value()) << name << " did not finish: " << client.output();
    EXPECT_EQ(*code, 0) << client.output();
    EXPECT_NE(client.output().find("PASS"), std::string::npos) << client.output();
}

}  // namespace shardcast::test
