// The server's own framing against npm ws (framing/framing_client.mjs says what it checks).
// ws is installed from the lock file by the NodeWsClientInstalled fixture.
#include <gtest/gtest.h>

#include "tests/integration/framing/framing_client.hpp"

namespace shardcast::test {
namespace {

TEST(ThirdPartyClientTest, NodeWsAcceptsTheServersFraming) {
    run_framing_client({"/usr/bin/env", "node", SHARDCAST_NODE_FRAMING_CLIENT}, "node-framing");
}

}  // namespace
}  // namespace shardcast::test
