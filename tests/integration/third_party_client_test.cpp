// A WebSocket client this project did not write (Debian's python3-websockets, strict about
// framing and UTF-8) connects and receives over the real server.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

#include "tests/integration/framing/framing_client.hpp"
#include "tests/integration/test_server.hpp"
#include "tests/support/clients.hpp"
#include "tests/support/process.hpp"
#include "tests/support/wait.hpp"

namespace shardcast::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

TEST(ThirdPartyClientTest, PythonWebsocketsReceivesTextJsonUnicodeAndLargeMessages) {
    TestServer server;
    const std::string out =
        ::testing::TempDir() + "shardcast-python-client." + std::to_string(::getpid()) + ".out";
    Process python({"/usr/bin/python3", SHARDCAST_SOURCE_DIR "/tests/integration/python_client.py",
                    "ws://127.0.0.1:" + std::to_string(server.port()) + "/ws/py-1", "4"},
                   out);
    ASSERT_TRUE(wait_until([&] { return server.dispatcher().online() == 1; }, 20s))
        << "python client never connected: " << python.output();

    HttpClient http(server.port());
    const std::string large(100 * 1000, 'L');  // needs the 64-bit length form of a frame
    ASSERT_EQ(http.post("/api/v1/send", R"({"to":"py-1","data":"plain text"})").status, 202);
    ASSERT_EQ(http.post("/api/v1/send", R"({"to":"py-1","data":{"k":[1,2]}})").status, 202);
    ASSERT_EQ(http.post("/api/v1/send", R"({"to":"py-1","data":"h\u00e9llo \u2713"})").status, 202);
    ASSERT_EQ(http.post("/api/v1/send", R"({"to":"py-1","data":")" + large + "\"}").status, 202);

    const auto code = python.wait(30s);
    ASSERT_TRUE(code.has_value()) << "python client did not finish: " << python.output();
    ASSERT_EQ(*code, 0) << python.output();

    std::vector<std::string> lines;
    std::istringstream stream(python.output());
    for (std::string line; std::getline(stream, line);) lines.push_back(line);
    ASSERT_EQ(lines.size(), 6u) << python.output();
    EXPECT_EQ(lines[0], "open");
    auto message = [&](int i) { return json::parse(lines[i]).as_object(); };
    EXPECT_EQ(message(1)["type"].as_string(), "str");  // text frames, not binary
    EXPECT_EQ(message(1)["data"].as_string(), "plain text");
    EXPECT_EQ(json::parse(message(2)["data"].as_string()), json::parse(R"({"k":[1,2]})"));
    EXPECT_EQ(message(3)["data"].as_string(), "h\xc3\xa9llo \xe2\x9c\x93");
    EXPECT_EQ(message(4)["data"].as_string(), large);
    EXPECT_EQ(lines[5], "closed 1000");
    ASSERT_TRUE(wait_until([&] { return server.dispatcher().online() == 0; }, 5s));
}

// The server's own framing, against python3-websockets (framing_client.py says what it checks).
TEST(ThirdPartyClientTest, PythonWebsocketsAcceptsTheServersFraming) {
    run_framing_client(
        {"/usr/bin/python3", SHARDCAST_SOURCE_DIR "/tests/integration/framing/framing_client.py"},
        "python-framing");
}

}  // namespace
}  // namespace shardcast::test
