// Config: everything the server binary reads from its YAML file and command line, and the
// loader that validates it. Used once, on the main thread, at startup.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dispatcher/config.hpp"
#include "transport/cluster_config.hpp"
#include "transport/transport_config.hpp"

namespace shardcast {

struct LogConfig {
    std::string level = "info";                          // trace|debug|info|warn|error|off
    std::chrono::milliseconds summary_interval{30'000};  // 0 turns the summary line off
};

struct Config {
    dispatcher::DispatcherConfig dispatcher;
    transport::TransportConfig transport;
    transport::ClusterConfig cluster;
    std::chrono::milliseconds drain_timeout{5'000};  // shutdown.drain_timeout
    bool metrics_enabled = true;                     // metrics.enabled
    LogConfig log;
};

// A bad value: what() names the dotted key and says what was expected, e.g.
// "session.buffer_limit: expected a size such as 512KiB or 1MiB, got \"lots\"".
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Loads the YAML file (if any), applies "key=value" overrides on top, validates, and returns
// the result. Unknown keys are errors. Throws ConfigError.
Config load_config(const std::optional<std::filesystem::path>& file,
                   const std::vector<std::string>& overrides);

// Parses "250ms", "30s", "5m", "1h" (a bare number is seconds). Throws ConfigError naming key.
std::chrono::milliseconds parse_duration(const std::string& key, const std::string& text);
// Parses "1048576", "512KiB", "1MiB", "1GiB", "64KB", "4MB" (B, KB/MB/GB are powers of 1000,
// KiB/MiB/GiB of 1024). Throws ConfigError naming key.
std::size_t parse_size(const std::string& key, const std::string& text);

// The effective configuration as one line of "key=value" pairs, for the startup log.
std::string describe(const Config& config);

// Every key with its meaning and default, from the one table of keys: one line each for
// --help, and a Markdown table for docs/configuration.md (which a test checks against it).
std::string config_keys_text();
std::string config_keys_markdown();

}  // namespace shardcast
