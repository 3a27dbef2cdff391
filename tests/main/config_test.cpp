// Tests of the config loader: defaults, the YAML file, overrides, and the error message for
// each kind of bad value.
#include "main/config.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#ifndef SHARDCAST_SOURCE_DIR
#error "SHARDCAST_SOURCE_DIR must name the source tree, to find deploy/shardcast.yaml"
#endif

namespace shardcast {
namespace {

using namespace std::chrono_literals;
using dispatcher::DuplicatePolicy;
using dispatcher::OverflowPolicy;

// Loads with the given overrides and returns the error message, or "no error".
std::string error_of(const std::vector<std::string>& overrides) {
    try {
        load_config(std::nullopt, overrides);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "no error";
}

// Each test writes its own file, named after the test and the process so parallel runs
// do not collide.
class ConfigFileTest : public ::testing::Test {
protected:
    void TearDown() override { std::filesystem::remove(path_); }

    const std::filesystem::path& write(const std::string& yaml) {
        std::ofstream(path_) << yaml;
        return path_;
    }

    std::string error_of_file(const std::string& yaml) {
        try {
            load_config(write(yaml), {});
        } catch (const ConfigError& e) {
            return e.what();
        }
        return "no error";
    }

    std::filesystem::path path_ =
        std::filesystem::temp_directory_path() /
        ("shardcast_config_test_" +
         std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
         std::to_string(::getpid()) + ".yaml");
};

// A process pinned to some CPUs (taskset, a cpuset) gets a shard per CPU it may use.
TEST(ConfigDefaultsTest, DefaultShardsCountTheCpusTheThreadMayRunOn) {
    cpu_set_t all;
    ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    EXPECT_EQ(dispatcher::DispatcherConfig::default_shards(),
              static_cast<std::size_t>(CPU_COUNT(&all)));
    std::size_t pinned = 0;
    std::thread([&] {
        int first = 0;
        while (!CPU_ISSET(first, &all)) ++first;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(first, &one);
        if (sched_setaffinity(0, sizeof one, &one) == 0) {
            pinned = dispatcher::DispatcherConfig::default_shards();
        }
    }).join();
    EXPECT_EQ(pinned, 1u);
}

TEST(ConfigDefaultsTest, NoFileAndNoOverridesGiveStructDefaults) {
    Config config = load_config(std::nullopt, {});
    const auto& session = config.dispatcher.session;
    EXPECT_EQ(config.transport.host, "0.0.0.0");
    EXPECT_EQ(config.transport.port, 8080);
    EXPECT_EQ(config.dispatcher.shards, dispatcher::DispatcherConfig::default_shards());
    EXPECT_EQ(session.buffer_limit, 1024u * 1024u);
    EXPECT_EQ(session.overflow, OverflowPolicy::terminate);
    EXPECT_EQ(session.send_time_limit, 10s);
    EXPECT_EQ(session.heartbeat_interval, 25s);
    EXPECT_EQ(session.heartbeat_timeout, 60s);
    EXPECT_EQ(session.cleanup_interval, 30s);
    EXPECT_EQ(session.on_duplicate, DuplicatePolicy::replace);
    EXPECT_EQ(session.max_per_client, 8u);
    EXPECT_EQ(session.max_message_size, 64u * 1024u);
    EXPECT_EQ(session.close_timeout, 2s);
    EXPECT_EQ(session.socket_send_buffer, 0u);
    EXPECT_EQ(session.write_delay, 0ms);
    EXPECT_EQ(config.transport.http_threads, 1u);
    EXPECT_EQ(config.transport.max_body, 4u * 1024u * 1024u);
    EXPECT_EQ(config.transport.http_idle_timeout, 60s);
    EXPECT_TRUE(config.transport.auth.api_keys.empty());
    EXPECT_EQ(config.drain_timeout, 5s);
    EXPECT_EQ(config.log.level, "info");
    EXPECT_EQ(config.log.summary_interval, 30s);
}

TEST_F(ConfigFileTest, EveryKeyIsReadFromTheFile) {
    Config config = load_config(write(R"(
listen: "127.0.0.1:9000"
shards: 3
session:
  buffer_limit: 2MiB
  overflow: drop_oldest
  send_time_limit: 1500ms
  heartbeat_interval: 5s
  heartbeat_timeout: 1m
  cleanup_interval: 2m
  on_duplicate: allow
  max_per_client: 4
  max_message_size: 16KB
  close_timeout: 3
  socket_send_buffer: 64KiB
  write_delay: 20ms
http:
  threads: 2
  max_body: 1MB
  idle_timeout: 1h
auth:
  api_keys: [alpha, beta]
shutdown:
  drain_timeout: 0s
log:
  level: debug
  summary_interval: 0
)"),
                                {});
    const auto& session = config.dispatcher.session;
    EXPECT_EQ(config.transport.host, "127.0.0.1");
    EXPECT_EQ(config.transport.port, 9000);
    EXPECT_EQ(config.dispatcher.shards, 3u);
    EXPECT_EQ(session.buffer_limit, 2u * 1024u * 1024u);
    EXPECT_EQ(session.overflow, OverflowPolicy::drop_oldest);
    EXPECT_EQ(session.send_time_limit, 1500ms);
    EXPECT_EQ(session.heartbeat_interval, 5s);
    EXPECT_EQ(session.heartbeat_timeout, 60s);
    EXPECT_EQ(session.cleanup_interval, 120s);
    EXPECT_EQ(session.on_duplicate, DuplicatePolicy::allow);
    EXPECT_EQ(session.max_per_client, 4u);
    EXPECT_EQ(session.max_message_size, 16'000u);
    EXPECT_EQ(session.close_timeout, 3s);
    EXPECT_EQ(session.socket_send_buffer, 64u * 1024u);
    EXPECT_EQ(session.write_delay, 20ms);
    EXPECT_EQ(config.transport.http_threads, 2u);
    EXPECT_EQ(config.transport.max_body, 1'000'000u);
    EXPECT_EQ(config.transport.http_idle_timeout, 3600s);
    EXPECT_EQ(config.transport.auth.api_keys, (std::vector<std::string>{"alpha", "beta"}));
    EXPECT_EQ(config.drain_timeout, 0ms);
    EXPECT_EQ(config.log.level, "debug");
    EXPECT_EQ(config.log.summary_interval, 0ms);
}

TEST_F(ConfigFileTest, EmptyFileGivesDefaults) {
    EXPECT_EQ(describe(load_config(write(""), {})), describe(load_config(std::nullopt, {})));
}

TEST_F(ConfigFileTest, EmptySectionGivesDefaults) {
    Config config = load_config(write("session:\nlog:\n"), {});
    EXPECT_EQ(config.dispatcher.session.buffer_limit, 1024u * 1024u);
    EXPECT_EQ(config.log.level, "info");
}

TEST(ConfigExampleTest, DeployExampleLoadsAndMatchesDefaults) {
    const auto example = std::filesystem::path(SHARDCAST_SOURCE_DIR) / "deploy" / "shardcast.yaml";
    EXPECT_EQ(describe(load_config(example, {})), describe(load_config(std::nullopt, {})));
}

TEST(ParseDurationTest, ReadsEachUnit) {
    EXPECT_EQ(parse_duration("k", "250ms"), 250ms);
    EXPECT_EQ(parse_duration("k", "30s"), 30s);
    EXPECT_EQ(parse_duration("k", "5m"), 5min);
    EXPECT_EQ(parse_duration("k", "1h"), 1h);
}

TEST(ParseDurationTest, BareNumberIsSeconds) { EXPECT_EQ(parse_duration("k", "7"), 7s); }

TEST(ParseDurationTest, RejectsNegative) { EXPECT_THROW(parse_duration("k", "-1s"), ConfigError); }

TEST(ParseDurationTest, RejectsEmpty) { EXPECT_THROW(parse_duration("k", ""), ConfigError); }

TEST(ParseDurationTest, RejectsGarbage) {
    for (const char* text : {"soon", "1.5s", "10 s", "10sec", "s", "+5s", "1d", "1h30m"}) {
        EXPECT_THROW(parse_duration("k", text), ConfigError) << text;
    }
}

TEST(ParseDurationTest, RejectsOverflow) {
    EXPECT_EQ(parse_duration("k", "2562047788015h"), 9'223'372'036'854'000'000ms);
    EXPECT_THROW(parse_duration("k", "2562047788016h"), ConfigError);
    EXPECT_THROW(parse_duration("k", "99999999999999999999ms"), ConfigError);
}

TEST(ParseDurationTest, ErrorNamesKeyAndValue) {
    try {
        parse_duration("session.send_time_limit", "soon");
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(),
                     "session.send_time_limit: expected a duration such as 250ms, 30s, 5m or 1h, "
                     "got \"soon\"");
    }
}

TEST(ParseSizeTest, BareNumberIsBytes) {
    EXPECT_EQ(parse_size("k", "1048576"), 1048576u);
    EXPECT_EQ(parse_size("k", "100B"), 100u);
}

TEST(ParseSizeTest, BinaryUnitsArePowersOf1024) {
    EXPECT_EQ(parse_size("k", "512KiB"), 512u * 1024u);
    EXPECT_EQ(parse_size("k", "1MiB"), 1024u * 1024u);
    EXPECT_EQ(parse_size("k", "1GiB"), 1024u * 1024u * 1024u);
}

TEST(ParseSizeTest, DecimalUnitsArePowersOf1000) {
    EXPECT_EQ(parse_size("k", "64KB"), 64'000u);
    EXPECT_EQ(parse_size("k", "4MB"), 4'000'000u);
    EXPECT_EQ(parse_size("k", "2GB"), 2'000'000'000u);
}

TEST(ParseSizeTest, RejectsFractional) { EXPECT_THROW(parse_size("k", "1.5MiB"), ConfigError); }

TEST(ParseSizeTest, RejectsNegative) { EXPECT_THROW(parse_size("k", "-1KiB"), ConfigError); }

TEST(ParseSizeTest, RejectsGarbage) {
    for (const char* text : {"", "lots", "MiB", "1 MiB", "1mib", "1TiB", "1KiBx"}) {
        EXPECT_THROW(parse_size("k", text), ConfigError) << text;
    }
}

TEST(ParseSizeTest, RejectsOverflow) {
    EXPECT_EQ(parse_size("k", "18446744073709551615"), 18446744073709551615u);
    EXPECT_THROW(parse_size("k", "18446744073709551616"), ConfigError);
    EXPECT_THROW(parse_size("k", "17179869184GiB"), ConfigError);
}

TEST(ConfigErrorTest, BadDurationNamesKey) {
    EXPECT_EQ(error_of({"session.heartbeat_interval=soon"}),
              "session.heartbeat_interval: expected a duration such as 250ms, 30s, 5m or 1h, "
              "got \"soon\"");
}

TEST(ConfigErrorTest, ZeroDurationRejectedWhereItMustBePositive) {
    EXPECT_EQ(error_of({"http.idle_timeout=0s"}),
              "http.idle_timeout: expected a duration greater than 0, got \"0s\"");
}

TEST(ConfigErrorTest, ZeroDurationAcceptedWhereItMeansOff) {
    Config config =
        load_config(std::nullopt, {"shutdown.drain_timeout=0", "log.summary_interval=0"});
    EXPECT_EQ(config.drain_timeout, 0ms);
    EXPECT_EQ(config.log.summary_interval, 0ms);
}

TEST(ConfigErrorTest, BadSizeNamesKey) {
    EXPECT_EQ(error_of({"session.buffer_limit=lots"}),
              "session.buffer_limit: expected a size such as 512KiB or 1MiB, got \"lots\"");
}

TEST(ConfigErrorTest, SizeBelowMinimumNamesKey) {
    EXPECT_EQ(error_of({"http.max_body=512"}),
              "http.max_body: expected a size of at least 1KiB, got \"512\"");
    EXPECT_EQ(error_of({"session.max_message_size=124"}),
              "session.max_message_size: expected a size of at least 125, got \"124\"");
}

TEST(ConfigErrorTest, SizeOutsideItsRangeButNotOffNamesKey) {
    const char* expected =
        "session.socket_send_buffer: expected 0 (off) or a size from 4KiB to "
        "256MiB, got ";
    EXPECT_EQ(error_of({"session.socket_send_buffer=1KiB"}), std::string(expected) + "\"1KiB\"");
    EXPECT_EQ(error_of({"session.socket_send_buffer=1GiB"}), std::string(expected) + "\"1GiB\"");
    EXPECT_EQ(load_config(std::nullopt, {"session.socket_send_buffer=0"})
                  .dispatcher.session.socket_send_buffer,
              0u);
    EXPECT_EQ(load_config(std::nullopt, {"session.socket_send_buffer=4KiB"})
                  .dispatcher.session.socket_send_buffer,
              4096u);
}

TEST(ConfigErrorTest, WriteDelayAboveOneSecondNamesKey) {
    EXPECT_EQ(error_of({"session.write_delay=1001ms"}),
              "session.write_delay: expected a duration from 0 to 1s, got \"1001ms\"");
    EXPECT_EQ(error_of({"session.write_delay=-5ms"}),
              "session.write_delay: expected a duration such as 250ms, 30s, 5m or 1h, got "
              "\"-5ms\"");
    EXPECT_EQ(load_config(std::nullopt, {"session.write_delay=1s"}).dispatcher.session.write_delay,
              1s);
}

TEST(ConfigErrorTest, BadEnumNamesKeyAndChoices) {
    EXPECT_EQ(error_of({"session.overflow=close"}),
              "session.overflow: expected one of terminate, drop_oldest, got \"close\"");
    EXPECT_EQ(error_of({"session.on_duplicate=reject"}),
              "session.on_duplicate: expected one of replace, allow, got \"reject\"");
    EXPECT_EQ(error_of({"log.level=verbose"}),
              "log.level: expected one of trace, debug, info, warn, error, off, got \"verbose\"");
}

TEST(ConfigErrorTest, IntegerOutOfRangeNamesKey) {
    EXPECT_EQ(error_of({"shards=0"}), "shards: expected an integer from 1 to 256, got \"0\"");
    EXPECT_EQ(error_of({"shards=257"}), "shards: expected an integer from 1 to 256, got \"257\"");
    EXPECT_EQ(error_of({"http.threads=65"}),
              "http.threads: expected an integer from 1 to 64, got \"65\"");
    EXPECT_EQ(error_of({"session.max_per_client=0"}),
              "session.max_per_client: expected an integer of at least 1, got \"0\"");
    EXPECT_EQ(error_of({"shards=2.5"}), "shards: expected an integer from 1 to 256, got \"2.5\"");
}

TEST_F(ConfigFileTest, UnknownNestedKeyIsNamed) {
    EXPECT_EQ(error_of_file("session:\n  bufer_limit: 1MiB\n"), "session.bufer_limit: unknown key");
}

TEST_F(ConfigFileTest, UnknownTopLevelKeyIsNamed) {
    EXPECT_EQ(error_of_file("foo: 1\n"), "foo: unknown key");
}

TEST_F(ConfigFileTest, DuplicateKeyIsNamed) {
    EXPECT_EQ(error_of_file("log:\n  level: warn\nlog:\n  level: debug\n"), "log: duplicate key");
}

// A dotted key in the file would escape the duplicate check beside its nested twin.
TEST_F(ConfigFileTest, DottedKeyInTheFileIsNamed) {
    EXPECT_EQ(error_of_file("session.buffer_limit: 2MiB\nsession:\n  buffer_limit: 4MiB\n"),
              "session.buffer_limit: a dotted key; in the file, nest it under its section");
}

// The two keys whose message offers "nothing" for the default take a blank value.
TEST_F(ConfigFileTest, BlankNodeNameAndMetricsListenMeanTheirDefaults) {
    const Config config = load_config(write("cluster:\n  node:\nmetrics:\n  listen:\n"), {});
    EXPECT_EQ(config.cluster.node, load_config(std::nullopt, {}).cluster.node);
    EXPECT_FALSE(config.transport.metrics_listen);
}

TEST_F(ConfigFileTest, MapWhereScalarExpectedNamesKey) {
    EXPECT_EQ(error_of_file("session:\n  buffer_limit:\n    size: 1MiB\n"),
              "session.buffer_limit: expected a size such as 512KiB or 1MiB, got a map");
}

TEST_F(ConfigFileTest, ListWhereScalarExpectedNamesKey) {
    EXPECT_EQ(error_of_file("shards: [1, 2]\n"),
              "shards: expected an integer from 1 to 256, got a list");
}

TEST_F(ConfigFileTest, EmptyValueNamesKey) {
    EXPECT_EQ(error_of_file("listen:\n"),
              "listen: expected host:port such as 0.0.0.0:8080 or [::1]:8080, with a port from 0 "
              "to 65535, got nothing");
}

TEST_F(ConfigFileTest, ScalarWhereSectionExpectedNamesKey) {
    EXPECT_EQ(error_of_file("session: 5\n"), "session: expected a map of settings, got \"5\"");
}

TEST_F(ConfigFileTest, HeartbeatTimeoutNotAboveIntervalNamesTimeout) {
    EXPECT_EQ(error_of_file("session:\n  heartbeat_interval: 30s\n  heartbeat_timeout: 30s\n"),
              "session.heartbeat_timeout: expected a duration greater than "
              "session.heartbeat_interval (30s), got \"30s\"");
}

TEST(ConfigListenTest, SplitsHostAndPort) {
    Config config = load_config(std::nullopt, {"listen=127.0.0.1:0"});
    EXPECT_EQ(config.transport.host, "127.0.0.1");
    EXPECT_EQ(config.transport.port, 0);
}

TEST(ConfigListenTest, AcceptsBracketedIpv6) {
    Config config = load_config(std::nullopt, {"listen=[::1]:65535"});
    EXPECT_EQ(config.transport.host, "::1");
    EXPECT_EQ(config.transport.port, 65535);
}

TEST(ConfigListenTest, BadListenNamesKey) {
    for (const char* text : {"8080", "0.0.0.0", ":8080", "0.0.0.0:", "0.0.0.0:65536",
                             "0.0.0.0:http", "::1:8080", "[]:8080", "0.0.0.0:-1"}) {
        EXPECT_EQ(error_of({std::string("listen=") + text}),
                  "listen: expected host:port such as 0.0.0.0:8080 or [::1]:8080, with a port "
                  "from 0 to 65535, got \"" +
                      std::string(text) + "\"");
    }
}

TEST_F(ConfigFileTest, ApiKeyMustNotBeEmpty) {
    EXPECT_EQ(error_of_file("auth:\n  api_keys: [good, \"\"]\n"),
              "auth.api_keys[1]: expected a non-empty key, got \"\"");
}

TEST_F(ConfigFileTest, ApiKeyErrorsNeverShowTheKey) {
    std::string with_space = error_of_file("auth:\n  api_keys: [\"secret one\"]\n");
    std::string not_a_list = error_of_file("auth:\n  api_keys: secret\n");
    EXPECT_TRUE(with_space.starts_with("auth.api_keys[0]: expected")) << with_space;
    EXPECT_TRUE(not_a_list.starts_with("auth.api_keys: expected a list")) << not_a_list;
    EXPECT_EQ(with_space.find("secret"), std::string::npos) << with_space;
    EXPECT_EQ(not_a_list.find("secret"), std::string::npos) << not_a_list;
}

TEST_F(ConfigFileTest, OverridesWinOverTheFile) {
    Config config = load_config(write("session:\n  buffer_limit: 1MiB\n  overflow: drop_oldest\n"),
                                {"session.buffer_limit=2MiB", "listen=127.0.0.1:0"});
    EXPECT_EQ(config.dispatcher.session.buffer_limit, 2u * 1024u * 1024u);
    EXPECT_EQ(config.dispatcher.session.overflow, OverflowPolicy::drop_oldest);
    EXPECT_EQ(config.transport.host, "127.0.0.1");
    EXPECT_EQ(config.transport.port, 0);
}

TEST(ConfigOverrideTest, LaterOverrideWins) {
    Config config = load_config(std::nullopt, {"shards=2", "shards=5"});
    EXPECT_EQ(config.dispatcher.shards, 5u);
}

TEST(ConfigOverrideTest, ApiKeysAreCommaSeparated) {
    Config config = load_config(std::nullopt, {"auth.api_keys=a,b"});
    EXPECT_EQ(config.transport.auth.api_keys, (std::vector<std::string>{"a", "b"}));
}

TEST_F(ConfigFileTest, EmptyApiKeysOverrideClearsTheList) {
    Config config = load_config(write("auth:\n  api_keys: [a]\n"), {"auth.api_keys="});
    EXPECT_TRUE(config.transport.auth.api_keys.empty());
}

TEST(ConfigOverrideTest, ValidatedLikeTheFile) {
    EXPECT_EQ(error_of({"session.buffer_limit=2XB"}),
              "session.buffer_limit: expected a size such as 512KiB or 1MiB, got \"2XB\"");
    EXPECT_EQ(error_of({"auth.api_keys=a,,b"}),
              "auth.api_keys[1]: expected a non-empty key, got \"\"");
}

TEST(ConfigOverrideTest, UnknownKeyIsNamed) {
    EXPECT_EQ(error_of({"session.bufer_limit=1MiB"}), "session.bufer_limit: unknown key");
    EXPECT_EQ(error_of({"foo.bar=1"}), "foo: unknown key");
}

TEST(ConfigOverrideTest, MalformedOverrideIsNamed) {
    EXPECT_EQ(error_of({"session.buffer_limit"}),
              "override \"session.buffer_limit\": expected dotted.key=value, such as "
              "session.buffer_limit=2MiB");
    EXPECT_EQ(error_of({"=1"}),
              "override \"=1\": expected dotted.key=value, such as session.buffer_limit=2MiB");
    EXPECT_EQ(error_of({"session..buffer_limit=1"}),
              "override \"session..buffer_limit=1\": expected dotted.key=value, such as "
              "session.buffer_limit=2MiB");
}

TEST(ConfigFileErrorTest, MissingFileIsNamed) {
    const std::filesystem::path missing = "/nonexistent/shardcast.yaml";
    try {
        load_config(missing, {});
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()),
                  "config file \"/nonexistent/shardcast.yaml\": No such file or directory");
    }
}

TEST(ConfigFileErrorTest, DirectoryIsRejected) {
    const auto directory = std::filesystem::temp_directory_path();
    try {
        load_config(directory, {});
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()),
                  "config file \"" + directory.string() + "\": is a directory");
    }
}

TEST_F(ConfigFileTest, SyntaxErrorNamesFileLineAndColumn) {
    std::string message = error_of_file("session:\n  buffer_limit: [1MiB\n");
    EXPECT_TRUE(message.starts_with("config file \"" + path_.string() + "\": line ")) << message;
    EXPECT_NE(message.find(", column "), std::string::npos) << message;
}

TEST_F(ConfigFileTest, TopLevelMustBeAMap) {
    EXPECT_EQ(error_of_file("- listen\n"), "config file \"" + path_.string() +
                                               "\": expected a map of settings at the top level");
}

TEST(ConfigDescribeTest, ListsEveryKeyOnOneLine) {
    Config config = load_config(std::nullopt, {"shards=2", "session.send_time_limit=250ms"});
    EXPECT_EQ(describe(config),
              "listen=0.0.0.0:8080 shards=2 session.buffer_limit=1048576 "
              "session.overflow=terminate session.send_time_limit=250ms "
              "session.heartbeat_interval=25s session.heartbeat_timeout=60s "
              "session.cleanup_interval=30s session.on_duplicate=replace "
              "session.max_per_client=8 session.max_message_size=65536 "
              "session.close_timeout=2s session.socket_send_buffer=0 session.write_delay=0s "
              "publish.max_queue_depth=65536 publish.max_queue_delay=0s "
              "publish.max_outbound_bytes=67108864 "
              "history.enabled=true history.size=100 history.ttl=300s history.max_bytes=67108864 "
              "http.threads=1 "
              "http.max_body=4194304 "
              "http.idle_timeout=60s http.header_timeout=10s http.min_body_rate=65536 "
              "auth.api_keys=<0 keys> auth.insecure_api=false "
              "auth.anonymous_clients=false auth.allowed_origins= auth.jwt.hmac_secret=<unset> "
              "auth.jwt.public_keys= auth.jwt.audience= auth.jwt.issuer= auth.jwt.leeway=30s "
              "auth.jwt.require_exp=true shutdown.drain_timeout=5s "
              "metrics.enabled=true metrics.listen= metrics.require_key=true "
              "limits.max_connections=0 limits.max_connections_per_ip=1000 "
              "limits.trusted_proxies= limits.client_messages_per_second=100 "
              "limits.client_message_burst=400 limits.client_pings_per_second=5 "
              "limits.client_ping_burst=20 limits.client_bytes_per_second=1048576 "
              "limits.client_byte_burst=4194304 limits.partial_message_memory=33554432 "
              "limits.partial_message_timeout=10s cluster.nats.url= "
              "cluster.nats.reconnect_wait=100ms cluster.nats.reconnect_wait_max=2s "
              "cluster.node= cluster.subject_prefix=shardcast cluster.upstream=false "
              "cluster.history.stream= cluster.history.storage=file cluster.history.replicas=1 "
              "cluster.history.reorder_window=20ms "
              "log.level=info log.summary_interval=30s");
}

TEST(ConfigPublishTest, AdmissionLimitsTakeZeroForOff) {
    Config config =
        load_config(std::nullopt, {"publish.max_queue_depth=0", "publish.max_queue_delay=0",
                                   "publish.max_outbound_bytes=8MiB"});
    EXPECT_EQ(config.dispatcher.max_queue_depth, 0u);
    EXPECT_EQ(config.dispatcher.max_queue_delay, std::chrono::milliseconds{0});
    EXPECT_EQ(config.dispatcher.max_outbound_bytes, 8u * 1024 * 1024);
    try {
        load_config(std::nullopt, {"publish.max_queue_depth=lots"});
        FAIL() << "accepted a non-number";
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(),
                     "publish.max_queue_depth: expected an integer of at least 0, got \"lots\"");
    }
}

TEST(ConfigPublishTest, MaxQueueDelayIsADurationOfAtMostAMinute) {
    EXPECT_EQ(load_config(std::nullopt, {}).dispatcher.max_queue_delay,
              std::chrono::milliseconds{0});
    EXPECT_EQ(load_config(std::nullopt, {"publish.max_queue_delay=5ms"}).dispatcher.max_queue_delay,
              std::chrono::milliseconds{5});
    try {
        load_config(std::nullopt, {"publish.max_queue_delay=2m"});
        FAIL() << "accepted a delay past a minute";
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(),
                     "publish.max_queue_delay: expected a duration from 0 to 60s, got \"2m\"");
    }
}

TEST(ConfigClusterTest, NoNatsUrlMeansASingleNode) {
    EXPECT_FALSE(load_config(std::nullopt, {}).cluster.enabled());
    EXPECT_FALSE(load_config(std::nullopt, {"cluster.nats.url="}).cluster.enabled());
}

TEST(ConfigClusterTest, ReadsEveryClusterKey) {
    Config config = load_config(
        std::nullopt, {"cluster.nats.url=nats://a:4222, nats://user:pw@b:4223,nats://c",
                       "cluster.nats.reconnect_wait=50ms", "cluster.nats.reconnect_wait_max=5s",
                       "cluster.node=edge-1:8080", "cluster.subject_prefix=acme.push",
                       "cluster.upstream=true", "cluster.history.reorder_window=0"});
    const auto& cluster = config.cluster;
    EXPECT_TRUE(cluster.enabled());
    EXPECT_EQ(cluster.nats_servers,
              (std::vector<std::string>{"nats://a:4222", "nats://user:pw@b:4223", "nats://c"}));
    EXPECT_EQ(cluster.reconnect_wait, std::chrono::milliseconds{50});
    EXPECT_EQ(cluster.reconnect_wait_max, std::chrono::milliseconds{5000});
    EXPECT_EQ(cluster.node, "edge-1:8080");
    EXPECT_EQ(cluster.subject_prefix, "acme.push");
    EXPECT_TRUE(cluster.upstream);
    EXPECT_EQ(cluster.history.reorder_window, std::chrono::milliseconds{0});
}

// The startup line goes to the log: a NATS URL's password or token is not in it.
TEST(ConfigClusterTest, DescribeHidesTheCredentialsOfNatsUrls) {
    const std::string line = describe(load_config(
        std::nullopt, {"cluster.nats.url=nats://user:s3cret@b:4223,nats://t0ken@c:4222,nats://d"}));
    EXPECT_NE(line.find("cluster.nats.url=nats://user:***@b:4223,nats://***@c:4222,nats://d "),
              std::string::npos)
        << line;
    EXPECT_EQ(line.find("s3cret"), std::string::npos);
    EXPECT_EQ(line.find("t0ken"), std::string::npos);
}

TEST(ConfigClusterTest, BadValuesNameTheKey) {
    const std::pair<std::string, std::string> cases[] = {
        {"cluster.nats.url=localhost:4222",
         "cluster.nats.url: expected a comma-separated list of nats://host:port URLs, or "
         "nothing for a single node, got \"localhost:4222\""},
        {"cluster.nats.url=nats://a:4222,,nats://b",
         "cluster.nats.url: expected a comma-separated list of nats://host:port URLs, or "
         "nothing for a single node, got \"nats://a:4222,,nats://b\""},
        {"cluster.nats.url=nats://a:99999",
         "cluster.nats.url: expected a comma-separated list of nats://host:port URLs, or "
         "nothing for a single node, got \"nats://a:99999\""},
        {"cluster.subject_prefix=a.*",
         "cluster.subject_prefix: expected dot-separated tokens of [A-Za-z0-9_-] such as "
         "shardcast or acme.push, got \"a.*\""},
        {"cluster.subject_prefix=a..b",
         "cluster.subject_prefix: expected dot-separated tokens of [A-Za-z0-9_-] such as "
         "shardcast or acme.push, got \"a..b\""},
        {"cluster.node=my node",
         "cluster.node: expected 1 to 128 characters from [A-Za-z0-9._:@-], or nothing for "
         "<hostname>:<port>, got \"my node\""},
        {"cluster.upstream=maybe", "cluster.upstream: expected one of false, true, got \"maybe\""},
        {"cluster.nats.reconnect_wait=0s",
         "cluster.nats.reconnect_wait: expected a duration greater than 0, got \"0s\""},
        {"cluster.nats.reconnect_wait_max=50ms",
         "cluster.nats.reconnect_wait_max: expected a duration of at least "
         "cluster.nats.reconnect_wait (100ms), got \"50ms\""},
        {"cluster.history.reorder_window=2s",
         "cluster.history.reorder_window: expected a duration from 0 to 1s, got \"2s\""},
        {"cluster.nats.server=nats://a", "cluster.nats.server: unknown key"},
    };
    for (const auto& [override, message] : cases) {
        try {
            load_config(std::nullopt, {override});
            ADD_FAILURE() << "accepted " << override;
        } catch (const ConfigError& e) {
            EXPECT_EQ(std::string(e.what()), message);
        }
    }
}

TEST(ConfigMetricsTest, EnabledTakesBooleansOnly) {
    EXPECT_FALSE(load_config(std::nullopt, {"metrics.enabled=false"}).metrics_enabled);
    try {
        load_config(std::nullopt, {"metrics.enabled=yes please"});
        FAIL() << "accepted a non-boolean";
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(), "metrics.enabled: expected one of false, true, got \"yes please\"");
    }
}

TEST(ConfigMetricsTest, ListenSetsASeparatePortAndEmptyClearsIt) {
    Config config = load_config(std::nullopt, {"metrics.listen=127.0.0.1:9102"});
    ASSERT_TRUE(config.transport.metrics_listen.has_value());
    EXPECT_EQ(config.transport.metrics_listen->host, "127.0.0.1");
    EXPECT_EQ(config.transport.metrics_listen->port, 9102);
    EXPECT_FALSE(load_config(std::nullopt, {"metrics.listen=127.0.0.1:9102", "metrics.listen="})
                     .transport.metrics_listen.has_value());
    EXPECT_THROW(load_config(std::nullopt, {"metrics.listen=nowhere"}), ConfigError);
}

TEST(ConfigDescribeTest, CountsApiKeysWithoutShowingThem) {
    Config config =
        load_config(std::nullopt, {"auth.api_keys=first-k3y,second-k3y",
                                   "auth.jwt.hmac_secret=an-hmac-s3cret-of-at-least-32-bytes!"});
    std::string line = describe(config);
    EXPECT_NE(line.find("auth.api_keys=<2 keys>"), std::string::npos) << line;
    EXPECT_NE(line.find("auth.jwt.hmac_secret=<set>"), std::string::npos) << line;
    EXPECT_EQ(line.find("k3y"), std::string::npos) << line;
    EXPECT_EQ(line.find("s3cret"), std::string::npos) << line;
}

TEST(ConfigDescribeTest, BracketsIpv6Host) {
    Config config = load_config(std::nullopt, {"listen=[::1]:9000"});
    EXPECT_TRUE(describe(config).starts_with("listen=[::1]:9000 ")) << describe(config);
}

}  // namespace
}  // namespace shardcast
