// Config loading: the YAML file and "key=value" overrides, turned into the plain config structs
// with every value checked. The one file that includes yaml-cpp. Main thread, startup only.
#include "main/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <span>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>

#include "transport/client_address.hpp"
#include "transport/client_id.hpp"
#include "transport/connect_token.hpp"

namespace shardcast {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kDurationExpected = "a duration such as 250ms, 30s, 5m or 1h";
constexpr std::string_view kSizeExpected = "a size such as 512KiB or 1MiB";
constexpr std::string_view kListenExpected =
    "host:port such as 0.0.0.0:8080 or [::1]:8080, with a port from 0 to 65535";

// Names in enum order, so an enum's value indexes its name.
constexpr std::string_view kOverflowNames[] = {"terminate", "drop_oldest"};
constexpr std::string_view kStorageNames[] = {"file", "memory"};
constexpr std::string_view kDuplicateNames[] = {"replace", "allow"};
constexpr std::string_view kBooleans[] = {"false", "true"};
constexpr std::string_view kLogLevels[] = {"trace", "debug", "info", "warn", "error", "off"};

struct Unit {
    std::string_view suffix;
    std::uint64_t factor;
};

constexpr Unit kDurationUnits[] = {
    {"ms", 1}, {"", 1'000}, {"s", 1'000}, {"m", 60'000}, {"h", 3'600'000},
};
constexpr Unit kSizeUnits[] = {
    {"", 1},
    {"B", 1},
    {"KB", 1'000},
    {"MB", 1'000'000},
    {"GB", 1'000'000'000},
    {"KiB", std::uint64_t{1} << 10},
    {"MiB", std::uint64_t{1} << 20},
    {"GiB", std::uint64_t{1} << 30},
};

// Whole seconds where exact, as the example config writes them, so the text reads back the same.
std::string format_duration(milliseconds value) {
    if (value.count() % 1000 == 0) {
        return std::to_string(value.count() / 1000) + "s";
    }
    return std::to_string(value.count()) + "ms";
}

[[noreturn]] void fail(std::string_view key, std::string_view expected, std::string_view got) {
    throw ConfigError(std::string(key) + ": expected " + std::string(expected) + ", got \"" +
                      std::string(got) + "\"");
}

// For a value of the wrong YAML type: a scalar is quoted, anything else is named by its shape.
[[noreturn]] void fail_type(std::string_view key,
                            std::string_view expected,
                            const YAML::Node& node) {
    if (node.IsScalar()) {
        fail(key, expected, node.Scalar());
    }
    std::string_view got = node.IsMap() ? "a map" : node.IsSequence() ? "a list" : "nothing";
    throw ConfigError(std::string(key) + ": expected " + std::string(expected) + ", got " +
                      std::string(got));
}

std::string scalar(std::string_view key, const YAML::Node& node, std::string_view expected) {
    if (!node.IsScalar()) {
        fail_type(key, expected, node);
    }
    return node.Scalar();
}

std::optional<std::uint64_t> parse_whole(std::string_view text) {
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

// "<digits><unit>" as digits times the unit's factor. Signs, fractions and spaces are errors
// rather than being rounded or trimmed, so what the server runs with is what was written.
std::uint64_t parse_amount(std::string_view key,
                           std::string_view text,
                           std::span<const Unit> units,
                           std::uint64_t max,
                           std::string_view expected,
                           std::string_view too_large) {
    std::uint64_t count = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), count);
    if (ec == std::errc::invalid_argument) {
        fail(key, expected, text);
    }
    std::string_view suffix = text.substr(end - text.data());
    for (const Unit& unit : units) {
        if (unit.suffix != suffix) {
            continue;
        }
        if (ec == std::errc::result_out_of_range || count > max / unit.factor) {
            fail(key, too_large, text);
        }
        return count * unit.factor;
    }
    fail(key, expected, text);
}

std::size_t integer_in(std::string_view key,
                       const YAML::Node& node,
                       std::size_t low,
                       std::size_t high) {
    std::string expected =
        high == std::numeric_limits<std::size_t>::max()
            ? "an integer of at least " + std::to_string(low)
            : "an integer from " + std::to_string(low) + " to " + std::to_string(high);
    std::string text = scalar(key, node, expected);
    std::optional<std::uint64_t> value = parse_whole(text);
    if (!value || *value < low || *value > high) {
        fail(key, expected, text);
    }
    return *value;
}

milliseconds positive_duration(std::string_view key, const YAML::Node& node) {
    std::string text = scalar(key, node, kDurationExpected);
    milliseconds value = parse_duration(std::string(key), text);
    if (value <= milliseconds::zero()) {
        fail(key, "a duration greater than 0", text);
    }
    return value;
}

milliseconds duration(std::string_view key, const YAML::Node& node) {
    return parse_duration(std::string(key), scalar(key, node, kDurationExpected));
}

milliseconds duration_up_to(std::string_view key, const YAML::Node& node, milliseconds max) {
    std::string text = scalar(key, node, kDurationExpected);
    milliseconds value = parse_duration(std::string(key), text);
    if (value > max) {
        fail(key, "a duration from 0 to " + format_duration(max), text);
    }
    return value;
}

// 0, meaning off, or a size from `low` to `high`.
std::size_t size_off_or_in(std::string_view key,
                           const YAML::Node& node,
                           std::size_t low,
                           std::size_t high,
                           std::string_view expected) {
    std::string text = scalar(key, node, kSizeExpected);
    std::size_t value = parse_size(std::string(key), text);
    if (value != 0 && (value < low || value > high)) {
        fail(key, expected, text);
    }
    return value;
}

std::size_t size_at_least(std::string_view key,
                          const YAML::Node& node,
                          std::size_t minimum,
                          std::string_view minimum_text) {
    std::string text = scalar(key, node, kSizeExpected);
    std::size_t value = parse_size(std::string(key), text);
    if (value < minimum) {
        fail(key, "a size of at least " + std::string(minimum_text), text);
    }
    return value;
}

// The index of the value among names.
std::size_t one_of(std::string_view key,
                   const YAML::Node& node,
                   std::span<const std::string_view> names) {
    std::string expected = "one of ";
    for (std::string_view name : names) {
        expected.append(name).append(name == names.back() ? "" : ", ");
    }
    std::string text = scalar(key, node, expected);
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i] == text) {
            return i;
        }
    }
    fail(key, expected, text);
}

// Splits at the last colon; an IPv6 host must be bracketed so its own colons stay unambiguous.
std::pair<std::string, std::uint16_t> parse_listen(std::string_view key, const YAML::Node& node) {
    std::string text = scalar(key, node, kListenExpected);
    std::size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
        fail(key, kListenExpected, text);
    }
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    } else if (host.find_first_of("[]:") != std::string::npos) {
        fail(key, kListenExpected, text);
    }
    std::optional<std::uint64_t> port = parse_whole(std::string_view(text).substr(colon + 1));
    if (host.empty() || !port || *port > std::numeric_limits<std::uint16_t>::max()) {
        fail(key, kListenExpected, text);
    }
    return {host, static_cast<std::uint16_t>(*port)};
}

std::vector<std::string> split(std::string_view text, char separator) {
    std::vector<std::string> parts;
    for (std::size_t start = 0, end = 0; end != std::string_view::npos; start = end + 1) {
        end = text.find(separator, start);
        parts.emplace_back(text.substr(start, end - start));
    }
    return parts;
}

// Errors about a key never quote it: they end up in logs.
std::vector<std::string> parse_api_keys(const std::string& key, const YAML::Node& node) {
    if (!node.IsSequence()) {
        std::string_view got = node.IsMap() ? "a map" : node.IsNull() ? "nothing" : "one string";
        throw ConfigError(key + ": expected a list of keys such as [key1, key2], got " +
                          std::string(got));
    }
    std::vector<std::string> keys;
    for (std::size_t i = 0; i < node.size(); ++i) {
        std::string item_key = key + "[" + std::to_string(i) + "]";
        if (!node[i].IsScalar()) {
            fail_type(item_key, "a key", node[i]);
        }
        const std::string& text = node[i].Scalar();
        if (text.empty()) {
            fail(item_key, "a non-empty key", text);
        }
        for (unsigned char c : text) {
            // A space or control character cannot survive an Authorization header intact, so
            // such a key could never match.
            if (c <= ' ' || c == 0x7f) {
                throw ConfigError(item_key +
                                  ": expected a key without spaces or control characters, got "
                                  "one with them (not shown)");
            }
        }
        keys.push_back(text);
    }
    return keys;
}

// The text of a file named by a config key; errors name the key and the file, never the
// contents.
std::string read_text_file(const std::string& key, const std::string& path) {
    std::error_code ec;
    if (path.empty()) {
        throw ConfigError(key + ": expected a file path, got \"\"");
    }
    if (std::filesystem::is_directory(path, ec)) {
        throw ConfigError(key + ": \"" + path + "\" is a directory");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigError(key + ": cannot read \"" + path + "\": " + std::strerror(errno));
    }
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// One key per line; blank lines and lines starting with # are skipped.
std::vector<std::string> parse_api_keys_file(const std::string& key, const YAML::Node& node) {
    const std::string path = scalar(key, node, "a file path");
    const std::string text = read_text_file(key, path);
    std::vector<std::string> keys;
    std::size_t line_number = 0;
    for (const std::string& raw : split(text, '\n')) {
        ++line_number;
        std::string line = raw;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line.front() == '#') continue;
        for (unsigned char c : line) {
            if (c <= ' ' || c == 0x7f) {
                throw ConfigError(key + ": line " + std::to_string(line_number) + " of \"" + path +
                                  "\" has a space or control character in its key");
            }
        }
        keys.push_back(std::move(line));
    }
    return keys;
}

// HS256 needs a key as long as its hash, 32 bytes: a shorter one can be found by trying.
// Errors say how long the secret is, never what it is.
std::string checked_hmac_secret(const std::string& key, std::string secret) {
    if (secret.size() < 32) {
        throw ConfigError(key + ": expected a secret of at least 32 bytes, got one of " +
                          std::to_string(secret.size()) + " (not shown)");
    }
    return secret;
}

std::string parse_hmac_secret(const std::string& key, const YAML::Node& node) {
    if (!node.IsScalar()) {
        throw ConfigError(key + ": expected a secret string");
    }
    return node.Scalar().empty() ? std::string() : checked_hmac_secret(key, node.Scalar());
}

std::string parse_hmac_secret_file(const std::string& key, const YAML::Node& node) {
    std::string secret = read_text_file(key, scalar(key, node, "a file path"));
    // A trailing newline is what an editor or `echo` leaves, not part of the secret.
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) {
        secret.pop_back();
    }
    return checked_hmac_secret(key, std::move(secret));
}

// auth.jwt.hmac_secret and auth.jwt.hmac_secret_file are two ways to give one secret.
void set_hmac_secret(const std::string& key, std::string secret, Config& config) {
    std::string& current = config.transport.auth.jwt.hmac_secret;
    if (!current.empty() && !secret.empty()) {
        throw ConfigError(key +
                          ": auth.jwt.hmac_secret and auth.jwt.hmac_secret_file are both set; "
                          "set one");
    }
    if (!secret.empty()) current = std::move(secret);
}

std::vector<std::string> string_list(const std::string& key,
                                     const YAML::Node& node,
                                     std::string_view expected) {
    if (!node.IsSequence()) {
        if (node.IsNull()) return {};
        fail_type(key, expected, node);
    }
    std::vector<std::string> items;
    for (std::size_t i = 0; i < node.size(); ++i) {
        items.push_back(scalar(key + "[" + std::to_string(i) + "]", node[i], expected));
    }
    return items;
}

std::vector<transport::PublicKeyFile> parse_public_keys(const std::string& key,
                                                        const YAML::Node& node) {
    std::vector<transport::PublicKeyFile> keys;
    const auto paths = string_list(key, node, "a list of PEM file paths");
    for (std::size_t i = 0; i < paths.size(); ++i) {
        keys.push_back({paths[i], read_text_file(key + "[" + std::to_string(i) + "]", paths[i])});
    }
    return keys;
}

// "*" alone, or exact origins: http(s)://host[:port], as a browser sends them.
std::vector<std::string> parse_origins(const std::string& key, const YAML::Node& node) {
    constexpr std::string_view expected =
        "a list of origins such as [https://app.example.com], or [\"*\"] for any";
    auto origins = string_list(key, node, expected);
    for (std::size_t i = 0; i < origins.size(); ++i) {
        const std::string& origin = origins[i];
        const std::string item = key + "[" + std::to_string(i) + "]";
        if (origin == "*") {
            if (origins.size() != 1) fail(item, "\"*\" alone, or no \"*\"", origin);
            continue;
        }
        const bool scheme = origin.starts_with("http://") || origin.starts_with("https://");
        const std::string_view rest = std::string_view(origin).substr(
            origin.find("://") == std::string::npos ? 0 : origin.find("://") + 3);
        if (!scheme || rest.empty() || rest.find_first_of("/?# ") != std::string_view::npos) {
            fail(item, "an origin such as https://app.example.com (scheme, host, port; no path)",
                 origin);
        }
    }
    return origins;
}

constexpr std::string_view kNatsUrlExpected =
    "a comma-separated list of nats://host:port URLs, or nothing for a single node";

// "nats://host[:port]" entries separated by commas (spaces around them are ignored). The
// hosts are resolved when connecting, so only the shape is checked here.
std::vector<std::string> parse_nats_urls(std::string_view key, const YAML::Node& node) {
    const std::string text = scalar(key, node, kNatsUrlExpected);
    std::vector<std::string> urls;
    if (text.find_first_not_of(' ') == std::string::npos) {
        return urls;
    }
    for (std::size_t start = 0, end = 0; end != std::string::npos; start = end + 1) {
        end = text.find(',', start);
        std::string url = text.substr(start, end == std::string::npos ? end : end - start);
        url.erase(0, url.find_first_not_of(' '));
        url.erase(url.find_last_not_of(' ') + 1);
        constexpr std::string_view scheme = "nats://";
        if (!url.starts_with(scheme)) {
            fail(key, kNatsUrlExpected, text);
        }
        std::string_view rest = std::string_view(url).substr(scheme.size());
        const std::size_t colon = rest.rfind(':');
        const std::string_view host = rest.substr(0, colon);
        if (host.empty() || host.find_first_of("/ ,") != std::string_view::npos) {
            fail(key, kNatsUrlExpected, text);
        }
        if (colon != std::string_view::npos) {
            auto port = parse_whole(rest.substr(colon + 1));
            if (!port || *port == 0 || *port > std::numeric_limits<std::uint16_t>::max()) {
                fail(key, kNatsUrlExpected, text);
            }
        }
        urls.push_back(std::move(url));
    }
    return urls;
}

// A node name goes into logs, a metric label and a NATS header.
std::string parse_node_name(std::string_view key, const YAML::Node& node) {
    constexpr std::string_view expected =
        "1 to 128 characters from [A-Za-z0-9._:@-], or nothing for <hostname>:<port>";
    if (node.IsNull()) {
        return {};  // "cluster.node:" with no value: the default, as the message offers
    }
    std::string text = scalar(key, node, expected);
    const bool ok = text.size() <= 128 && std::all_of(text.begin(), text.end(), transport::id_char);
    if (!ok) {
        fail(key, expected, text);
    }
    return text;
}

// NATS subject tokens: no wildcards, no spaces, none empty.
std::string parse_subject_prefix(std::string_view key, const YAML::Node& node) {
    constexpr std::string_view expected =
        "dot-separated tokens of [A-Za-z0-9_-] such as shardcast or acme.push";
    std::string text = scalar(key, node, expected);
    const bool ok = transport::dots_separate_tokens(text) &&
                    std::all_of(text.begin(), text.end(),
                                [](char c) { return transport::word_char(c) || c == '.'; });
    if (!ok) {
        fail(key, expected, text);
    }
    return text;
}

// A JetStream stream name: no dots, wildcards, spaces or path separators.
std::string parse_stream_name(std::string_view key, const YAML::Node& node) {
    constexpr std::string_view expected =
        "up to 64 characters from [A-Za-z0-9_-], or nothing for <subject_prefix>_history";
    if (node.IsNull()) {
        return {};
    }
    std::string text = scalar(key, node, expected);
    if (text.size() > 64 || !std::all_of(text.begin(), text.end(), transport::word_char)) {
        fail(key, expected, text);
    }
    return text;
}

// A rate or burst of a token bucket: 1 to 4 billion.
std::uint32_t rate(std::string_view key, const YAML::Node& node) {
    return static_cast<std::uint32_t>(integer_in(key, node, 1, 0xFFFF'FFFF));
}

// A byte rate or burst, written as a size: 1 byte to 4 GiB less one.
std::uint32_t byte_rate(std::string_view key, const YAML::Node& node) {
    const std::string text = scalar(key, node, kSizeExpected);
    const std::size_t value = parse_size(std::string(key), text);
    if (value < 1 || value > 0xFFFF'FFFF) {
        fail(key, "a size from 1 to 4GiB less one byte", text);
    }
    return static_cast<std::uint32_t>(value);
}

std::vector<transport::Cidr> parse_cidrs(const std::string& key, const YAML::Node& node) {
    constexpr std::string_view expected =
        "a list of address ranges such as [10.0.0.0/8, 127.0.0.1, \"::1/128\"]";
    std::vector<transport::Cidr> ranges;
    const auto texts = string_list(key, node, expected);
    for (std::size_t i = 0; i < texts.size(); ++i) {
        const auto cidr = transport::parse_cidr(texts[i]);
        if (!cidr) {
            fail(key + "[" + std::to_string(i) + "]",
                 "an address or address/prefix with no host bits set past the prefix", texts[i]);
        }
        ranges.push_back(*cidr);
    }
    return ranges;
}

// One leaf key of the file: its default and meaning, as the reference documents them, and
// where its value goes. Sections are the prefixes of these keys. This table is the one list
// of keys: docs/configuration.md, --help and deploy/shardcast.yaml are checked against it.
struct Field {
    std::string_view key;
    std::string_view default_text;  // as deploy/shardcast.yaml writes it; "" when unset
    std::string_view meaning;
    void (*apply)(const std::string& key, const YAML::Node& node, Config& config);
};

constexpr Field kFields[] = {
    {"listen", "0.0.0.0:8080",
     "host:port for WebSocket clients and the HTTP API; port 0 picks a free one",
     [](const auto& key, const auto& node, Config& config) {
         std::tie(config.transport.host, config.transport.port) = parse_listen(key, node);
     }},
    {"shards", "the CPUs the process may run on",
     "shard threads (1-256); the default counts the CPU affinity mask (taskset, a container's "
     "cpuset), as nproc does",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.shards =
             integer_in(key, node, 1, dispatcher::DispatcherConfig::kMaxShards);
     }},
    {"session.buffer_limit", "1MiB",
     "bytes a session may queue for its client before session.overflow acts",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.session.buffer_limit = size_at_least(key, node, 1024, "1KiB");
     }},
    {"session.overflow", "terminate",
     "at buffer_limit: terminate (close with 1008) or drop_oldest (drop the oldest queued "
     "messages)",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.session.overflow =
             static_cast<dispatcher::OverflowPolicy>(one_of(key, node, kOverflowNames));
     }},
    {"session.send_time_limit", "10s",
     "longest a single write may take; then the session is closed (4003)",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.session.send_time_limit = positive_duration(key, node);
     }},
    {"session.heartbeat_interval", "25s", "how often the server pings each client",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.session.heartbeat_interval = positive_duration(key, node);
     }},
    {"session.heartbeat_timeout", "60s",
     "silence after which a session is closed (4002); must exceed heartbeat_interval",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.session.heartbeat_timeout = positive_duration(key, node);
     }},
    {"session.cleanup_interval", "30s",
     "period of the safety sweep for sessions whose socket is gone",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.session.cleanup_interval = positive_duration(key, node);
     }},
    {"session.on_duplicate", "replace",
     "a second session for an id: replace (the old one closes with 4001) or allow (both get every "
     "message)",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.session.on_duplicate =
             static_cast<dispatcher::DuplicatePolicy>(one_of(key, node, kDuplicateNames));
     }},
    {"session.max_per_client", "8", "sessions per id in allow mode; the next gets 409",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.session.max_per_client =
             integer_in(key, node, 1, std::numeric_limits<std::size_t>::max());
     }},
    {"session.max_message_size", "64KiB",
     "largest message a client may send (1009 above; at least 125)",
     [](const auto& key, const auto& node, Config& config) {
         // 125 bytes is the largest control frame; a smaller limit would refuse a valid ping.
         config.dispatcher.session.max_message_size = size_at_least(key, node, 125, "125");
     }},
    {"session.close_timeout", "2s", "longest a closing handshake may take before the socket is cut",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.session.close_timeout = positive_duration(key, node);
     }},
    {"session.socket_send_buffer", "0",
     "kernel send buffer per client socket (SO_SNDBUF, 4KiB-256MiB); 0 leaves it to autotuning",
     [](const auto& key, const auto& node, Config& config) {
         // SO_SNDBUF takes an int, which the kernel doubles; below 4 KiB it rounds up anyway.
         config.dispatcher.session.socket_send_buffer = size_off_or_in(
             key, node, 4 * 1024, 256 * 1024 * 1024, "0 (off) or a size from 4KiB to 256MiB");
     }},
    {"session.write_delay", "0ms",
     "how long a message that finds its client idle waits for more to share its socket write "
     "(0-1s)",
     [](const auto& key, const auto& node, Config& config) {
         // Every message may wait this long; past a second it is a stall, not a delay.
         config.dispatcher.session.write_delay = duration_up_to(key, node, milliseconds{1000});
     }},
    {"publish.max_queue_depth", "65536",
     "commands waiting in a shard above which publishes for it get 429 (0 = off); a broadcast "
     "counts once",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.max_queue_depth =
             integer_in(key, node, 0, std::numeric_limits<std::size_t>::max());
     }},
    {"publish.max_queue_delay", "0s",
     "how long a shard's oldest undelivered command may wait before publishes for it get 429 "
     "(0 = off, up to 60s)",
     [](const auto& key, const auto& node, Config& config) {
         // Past a minute a publisher would time out before any 429 bounded its latency.
         config.dispatcher.max_queue_delay = duration_up_to(key, node, milliseconds{60'000});
     }},
    {"publish.max_outbound_bytes", "64MiB",
     "bytes a shard's queued messages may hold (a broadcast once); above it, the clients "
     "furthest behind are cut (0 = off)",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.max_outbound_bytes = size_at_least(key, node, 0, "0");
     }},
    {"history.enabled", "true",
     "keep what each client is sent, for it to resume after a reconnect (docs/protocol.md)",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.history.enabled = one_of(key, node, kBooleans) == 1;
     }},
    {"history.size", "100", "messages kept per client id (and broadcasts, per shard)",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.history.size = integer_in(key, node, 1, 1'000'000);
     }},
    {"history.ttl", "5m", "how long a message is kept",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.history.ttl = positive_duration(key, node);
     }},
    {"history.max_bytes", "64MiB", "payload bytes kept per shard; past it the oldest go first",
     [](const auto& key, const auto& node, Config& config) {
         config.dispatcher.history.max_bytes = size_at_least(key, node, 0, "0");
     }},
    {"http.threads", "1", "threads for accepting and the HTTP API (1-64)",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.http_threads = integer_in(key, node, 1, 64);
     }},
    {"http.max_body", "4MiB", "largest request body (413 above, decided before the body is read)",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.max_body = size_at_least(key, node, 1024, "1KiB");
     }},
    {"http.idle_timeout", "60s", "idle keep-alive connections are closed after this",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.http_idle_timeout = positive_duration(key, node);
     }},
    {"http.header_timeout", "10s",
     "a request's head (and a new connection's first request) must arrive within this; 408 "
     "otherwise",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.header_timeout = positive_duration(key, node);
     }},
    {"http.min_body_rate", "64KiB",
     "slowest a request body may arrive, per second, after http.header_timeout; 408 otherwise",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.min_body_rate = size_at_least(key, node, 1, "1");
     }},
    {"auth.api_keys", "[]",
     "keys for publish, disconnect, lookup and stats (Authorization: Bearer <key>)",
     [](const auto& key, const auto& node, Config& config) {
         // Appended: auth.api_keys_file may have contributed keys of its own.
         auto keys = parse_api_keys(key, node);
         auto& all = config.transport.auth.api_keys;
         all.insert(all.end(), keys.begin(), keys.end());
     }},
    {"auth.api_keys_file", "", "a file with more API keys, one per line (# starts a comment)",
     [](const auto& key, const auto& node, Config& config) {
         auto keys = parse_api_keys_file(key, node);
         auto& all = config.transport.auth.api_keys;
         all.insert(all.end(), keys.begin(), keys.end());
     }},
    {"auth.insecure_api", "false",
     "with no API key set, true opens those calls to anyone (logged); false answers them 403",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.auth.insecure_api = one_of(key, node, kBooleans) == 1;
     }},
    {"auth.anonymous_clients", "false",
     "true: a client without a token connects to /ws/{id} as any id it names (logged)",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.auth.anonymous_clients = one_of(key, node, kBooleans) == 1;
     }},
    {"auth.allowed_origins", "[]",
     "origins a browser page may connect from besides the server's own; [\"*\"] for any",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.auth.allowed_origins = parse_origins(key, node);
     }},
    {"auth.jwt.hmac_secret", "\"\"",
     "HS256/HS384/HS512 secret for connect tokens, at least 32 bytes",
     [](const auto& key, const auto& node, Config& config) {
         set_hmac_secret(key, parse_hmac_secret(key, node), config);
     }},
    {"auth.jwt.hmac_secret_file", "",
     "a file holding the HMAC secret (set this or auth.jwt.hmac_secret)",
     [](const auto& key, const auto& node, Config& config) {
         set_hmac_secret(key, parse_hmac_secret_file(key, node), config);
     }},
    {"auth.jwt.public_keys", "[]",
     "PEM public key files: RSA for RS256/384/512, EC P-256/384/521 for ES256/384/512",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.auth.jwt.public_keys = parse_public_keys(key, node);
     }},
    {"auth.jwt.audience", "\"\"",
     "when set, aud must contain it; when empty, a token with aud is refused",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.auth.jwt.audience = scalar(key, node, "a string");
     }},
    {"auth.jwt.issuer", "\"\"", "when set, iss must equal it",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.auth.jwt.issuer = scalar(key, node, "a string");
     }},
    {"auth.jwt.leeway", "30s", "clock skew allowed on exp, nbf and iat (0-5m)",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.auth.jwt.leeway = std::chrono::duration_cast<std::chrono::seconds>(
             duration_up_to(key, node, milliseconds{300'000}));
     }},
    {"auth.jwt.require_exp", "true",
     "false accepts tokens without exp (their sessions never expire)",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.auth.jwt.require_exp = one_of(key, node, kBooleans) == 1;
     }},
    {"shutdown.drain_timeout", "5s", "how long shutdown keeps delivering queued messages",
     [](const auto& key, const auto& node, Config& config) {
         config.drain_timeout = duration(key, node);
     }},
    {"metrics.enabled", "true", "serve GET /metrics",
     [](const auto& key, const auto& node, Config& config) {
         config.metrics_enabled = one_of(key, node, kBooleans) == 1;
     }},
    {"metrics.listen", "\"\"",
     "also serve /metrics and /healthz on this host:port; empty means no second port",
     [](const auto& key, const auto& node, Config& config) {
         // Empty means no separate port: /metrics is then served on the main port only.
         if (node.IsNull() || (node.IsScalar() && node.Scalar().empty())) {
             config.transport.metrics_listen.reset();
             return;
         }
         auto [host, port] = parse_listen(key, node);
         config.transport.metrics_listen = transport::Endpoint{std::move(host), port};
     }},
    {"metrics.require_key", "true",
     "with API keys set, /metrics on the main port needs one too (Authorization: Bearer)",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.metrics_require_key = one_of(key, node, kBooleans) == 1;
     }},
    {"limits.max_connections", "0",
     "WebSocket sessions in all (503 above); 0: the descriptor limit less a reserve of 256",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.max_connections =
             integer_in(key, node, 0, std::numeric_limits<std::size_t>::max());
     }},
    {"limits.max_connections_per_ip", "1000",
     "WebSocket sessions from one client address (429 above; 0 = no limit)",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.max_connections_per_ip =
             integer_in(key, node, 0, std::numeric_limits<std::size_t>::max());
     }},
    {"limits.trusted_proxies", "[]",
     "proxies (CIDRs, e.g. 10.0.0.0/8) whose X-Forwarded-For or X-Real-IP name the client",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.trusted_proxies = parse_cidrs(key, node);
     }},
    {"limits.client_messages_per_second", "100",
     "messages (and pongs) a client may send per second, on average; over it, closed with 1008",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.client_messages_per_second = rate(key, node);
     }},
    {"limits.client_message_burst", "400", "messages a client may send at once",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.client_message_burst = rate(key, node);
     }},
    {"limits.client_pings_per_second", "5",
     "pings a client may send per second (each costs the shard a pong)",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.client_pings_per_second = rate(key, node);
     }},
    {"limits.client_ping_burst", "20", "pings a client may send at once",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.client_ping_burst = rate(key, node);
     }},
    {"limits.client_bytes_per_second", "1MiB", "payload bytes a client may send per second",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.client_bytes_per_second = byte_rate(key, node);
     }},
    {"limits.client_byte_burst", "4MiB",
     "payload bytes a client may send at once; at least session.max_message_size",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.client_byte_burst = byte_rate(key, node);
     }},
    {"limits.partial_message_memory", "32MiB",
     "memory a shard may hold for messages clients have not finished; past it, the client "
     "adding to it is closed with 1008",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.partial_message_memory = size_at_least(key, node, 0, "0");
     }},
    {"limits.partial_message_timeout", "10s",
     "how long a client may leave a message or frame unfinished; then closed with 1008",
     [](const auto& key, const auto& node, Config& config) {
         config.transport.limits.partial_message_timeout = positive_duration(key, node);
     }},
    {"cluster.nats.url", "\"\"",
     "comma-separated nats://host:port list; set, it turns cluster mode on",
     [](const auto& key, const auto& node, Config& config) {
         config.cluster.nats_servers = parse_nats_urls(key, node);
     }},
    {"cluster.nats.reconnect_wait", "100ms",
     "first delay between NATS reconnect rounds; doubles each round",
     [](const auto& key, const auto& node, Config& config) {
         config.cluster.reconnect_wait = positive_duration(key, node);
     }},
    {"cluster.nats.reconnect_wait_max", "2s", "longest delay between NATS reconnect rounds",
     [](const auto& key, const auto& node, Config& config) {
         config.cluster.reconnect_wait_max = positive_duration(key, node);
     }},
    {"cluster.node", "\"\"",
     "this node's name in logs, metrics and stats; empty means <hostname>:<port>",
     [](const auto& key, const auto& node, Config& config) {
         config.cluster.node = parse_node_name(key, node);
     }},
    {"cluster.subject_prefix", "shardcast", "first tokens of every NATS subject",
     [](const auto& key, const auto& node, Config& config) {
         config.cluster.subject_prefix = parse_subject_prefix(key, node);
     }},
    {"cluster.upstream", "false", "publish client frames to <prefix>.upstream.<id>",
     [](const auto& key, const auto& node, Config& config) {
         config.cluster.upstream = one_of(key, node, kBooleans) == 1;
     }},
    {"cluster.history.stream", "\"\"",
     "JetStream stream holding the cluster's history; empty means <subject_prefix>_history",
     [](const auto& key, const auto& node, Config& config) {
         config.cluster.history.stream = parse_stream_name(key, node);
     }},
    {"cluster.history.storage", "file",
     "where JetStream keeps the history stream: file (survives a NATS restart) or memory",
     [](const auto& key, const auto& node, Config& config) {
         config.cluster.history.memory = one_of(key, node, kStorageNames) == 1;
     }},
    {"cluster.history.replicas", "1",
     "copies of the history stream in a JetStream cluster (1 to 5)",
     [](const auto& key, const auto& node, Config& config) {
         config.cluster.history.replicas = static_cast<int>(integer_in(key, node, 1, 5));
     }},
    {"cluster.history.reorder_window", "20ms",
     "how long a stored message's live copy waits, so copies that crossed go back in stream "
     "order (0 = deliver as they come)",
     [](const auto& key, const auto& node, Config& config) {
         config.cluster.history.reorder_window = duration_up_to(key, node, milliseconds{1000});
     }},
    {"log.level", "info", "trace, debug, info, warn, error or off",
     [](const auto& key, const auto& node, Config& config) {
         config.log.level = kLogLevels[one_of(key, node, kLogLevels)];
     }},
    {"log.summary_interval", "30s", "period of the one-line traffic summary (0 = off)",
     [](const auto& key, const auto& node, Config& config) {
         config.log.summary_interval = duration(key, node);
     }},
};

const Field* find_field(std::string_view key) {
    for (const Field& field : kFields) {
        if (field.key == key) {
            return &field;
        }
    }
    return nullptr;
}

bool is_section(std::string_view key) {
    for (const Field& field : kFields) {
        if (field.key.size() > key.size() && field.key.starts_with(key) &&
            field.key[key.size()] == '.') {
            return true;
        }
    }
    return false;
}

void apply_section(const YAML::Node& section, const std::string& prefix, Config& config) {
    // yaml-cpp keeps both copies of a repeated key; the one meant is anyone's guess.
    std::set<std::string> seen;
    for (const auto& entry : section) {
        if (!entry.first.IsScalar()) {
            throw ConfigError((prefix.empty() ? "top level" : prefix) +
                              ": expected plain key names, got a complex key");
        }
        std::string key =
            prefix.empty() ? entry.first.Scalar() : prefix + "." + entry.first.Scalar();
        // Overrides reach here nested, so a dot comes from the file, where it would let a key
        // appear twice (dotted and nested) with no duplicate to catch.
        if (entry.first.Scalar().find('.') != std::string::npos) {
            throw ConfigError(key + ": a dotted key; in the file, nest it under its section");
        }
        if (!seen.insert(key).second) {
            throw ConfigError(key + ": duplicate key");
        }
        if (const Field* field = find_field(key)) {
            field->apply(key, entry.second, config);
        } else if (!is_section(key)) {
            throw ConfigError(key + ": unknown key");
        } else if (entry.second.IsMap()) {
            apply_section(entry.second, key, config);
        } else if (!entry.second.IsNull()) {
            // An empty section is allowed: it is what commenting out every key in it leaves.
            fail_type(key, "a map of settings", entry.second);
        }
    }
}

// Checks between keys, once each has its own valid value.
void check_relations(const Config& config) {
    const auto& session = config.dispatcher.session;
    // A timeout no longer than the interval would drop a healthy client before its first pong.
    if (session.heartbeat_timeout <= session.heartbeat_interval) {
        fail("session.heartbeat_timeout",
             "a duration greater than session.heartbeat_interval (" +
                 format_duration(session.heartbeat_interval) + ")",
             format_duration(session.heartbeat_timeout));
    }
    const auto& cluster = config.cluster;
    if (cluster.reconnect_wait_max < cluster.reconnect_wait) {
        fail("cluster.nats.reconnect_wait_max",
             "a duration of at least cluster.nats.reconnect_wait (" +
                 format_duration(cluster.reconnect_wait) + ")",
             format_duration(cluster.reconnect_wait_max));
    }
    const auto& limits = config.transport.limits;
    if (limits.client_byte_burst < session.max_message_size) {
        fail("limits.client_byte_burst",
             "a size of at least session.max_message_size (" +
                 std::to_string(session.max_message_size) + ")",
             std::to_string(limits.client_byte_burst));
    }
    // The keys themselves: a file that is not a usable public key stops startup here.
    try {
        transport::TokenVerifier verifier(config.transport.auth.jwt);
    } catch (const std::invalid_argument& e) {
        throw ConfigError(e.what());
    }
}

YAML::Node read_file(const std::filesystem::path& path) {
    std::string name = "config file \"" + path.string() + "\"";
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
        throw ConfigError(name + ": is a directory");
    }
    std::ifstream in(path);
    if (!in) {
        throw ConfigError(name + ": " + std::strerror(errno));
    }
    YAML::Node root;
    try {
        root = YAML::Load(in);
    } catch (const YAML::Exception& e) {
        std::string where = e.mark.is_null() ? ""
                                             : ": line " + std::to_string(e.mark.line + 1) +
                                                   ", column " + std::to_string(e.mark.column + 1);
        throw ConfigError(name + where + ": " + e.msg);
    }
    if (root.IsNull()) {
        return YAML::Node(YAML::NodeType::Map);
    }
    if (!root.IsMap()) {
        throw ConfigError(name + ": expected a map of settings at the top level");
    }
    return root;
}

// Writes "dotted.key=value" into the tree, so the value then meets the same checks and errors
// as one read from the file. It replaces whatever the file had on that path.
void apply_override(YAML::Node& root, const std::string& text) {
    std::size_t equals = text.find('=');
    std::string key = text.substr(0, equals);
    std::vector<std::string> parts = split(key, '.');
    if (equals == std::string::npos ||
        std::any_of(parts.begin(), parts.end(), [](const auto& part) { return part.empty(); })) {
        throw ConfigError("override \"" + text +
                          "\": expected dotted.key=value, such as session.buffer_limit=2MiB");
    }
    std::string value = text.substr(equals + 1);

    // Copies of a YAML::Node share its data and assigning to one writes through, so walking down
    // rebinds with reset().
    YAML::Node node = root;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        YAML::Node child = node[parts[i]];
        if (!child.IsMap()) {
            child = YAML::Node(YAML::NodeType::Map);
        }
        node.reset(child);
    }
    if (key == "auth.api_keys" || key == "auth.allowed_origins" || key == "auth.jwt.public_keys" ||
        key == "limits.trusted_proxies") {
        // An empty value clears the list; a key, origin or path cannot contain a comma.
        YAML::Node list(YAML::NodeType::Sequence);
        for (const std::string& item :
             value.empty() ? std::vector<std::string>{} : split(value, ',')) {
            list.push_back(item);
        }
        node[parts.back()] = list;
    } else {
        node[parts.back()] = value;
    }
}

}  // namespace

Config load_config(const std::optional<std::filesystem::path>& file,
                   const std::vector<std::string>& overrides) {
    YAML::Node root = file ? read_file(*file) : YAML::Node(YAML::NodeType::Map);
    for (const std::string& text : overrides) {
        apply_override(root, text);
    }
    Config config;
    apply_section(root, "", config);
    check_relations(config);
    return config;
}

milliseconds parse_duration(const std::string& key, const std::string& text) {
    constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<milliseconds::rep>::max());
    return milliseconds(static_cast<milliseconds::rep>(
        parse_amount(key, text, kDurationUnits, max, kDurationExpected, "a shorter duration")));
}

std::size_t parse_size(const std::string& key, const std::string& text) {
    return parse_amount(key, text, kSizeUnits, std::numeric_limits<std::size_t>::max(),
                        kSizeExpected, "a smaller size");
}

namespace {

// nats://user:password@host:port with the password replaced by ***, and nats://token@host:port
// with the token replaced: the startup line goes to the log.
std::string without_secret(const std::string& url) {
    const std::size_t scheme = url.find("://");
    const std::size_t start = scheme == std::string::npos ? 0 : scheme + 3;
    const std::size_t at = url.rfind('@');
    if (at == std::string::npos || at < start) {
        return url;
    }
    const std::size_t colon = url.find(':', start);
    const std::size_t secret = colon != std::string::npos && colon < at ? colon + 1 : start;
    return url.substr(0, secret) + "***" + url.substr(at);
}

}  // namespace

std::string config_keys_text() {
    std::size_t width = 0;
    for (const Field& field : kFields) width = std::max(width, field.key.size());
    std::string text;
    for (const Field& field : kFields) {
        text.append("  ").append(field.key).append(width + 2 - field.key.size(), ' ');
        text.append(field.meaning);
        if (!field.default_text.empty()) text.append(" [").append(field.default_text).append("]");
        text += '\n';
    }
    return text;
}

std::string config_keys_markdown() {
    // <id> and the like would be read as HTML tags.
    auto escaped = [](std::string_view text) {
        std::string out;
        for (char c : text) {
            out += c == '<' ? "&lt;" : c == '>' ? "&gt;" : std::string(1, c);
        }
        return out;
    };
    std::string text = "| Key | Default | Meaning |\n|---|---|---|\n";
    for (const Field& field : kFields) {
        const std::string_view value = field.default_text;
        text.append("| `").append(field.key).append("` | ");
        // A value as code; a default that is a sentence, as prose.
        text.append(value.empty()                          ? "(none)"
                    : value.find(' ') == std::string::npos ? "`" + std::string(value) + "`"
                                                           : std::string(value));
        text.append(" | ").append(escaped(field.meaning)).append(" |\n");
    }
    return text;
}

std::string describe(const Config& config) {
    const auto& transport = config.transport;
    const auto& session = config.dispatcher.session;
    std::string line;
    auto add = [&line](std::string_view key, std::string_view value) {
        line.append(line.empty() ? "" : " ").append(key).append("=").append(value);
    };
    auto endpoint = [](const std::string& host, std::uint16_t port) {
        bool bracket = host.find(':') != std::string::npos;
        return (bracket ? "[" + host + "]" : host) + ":" + std::to_string(port);
    };
    add("listen", endpoint(transport.host, transport.port));
    add("shards", std::to_string(config.dispatcher.shards));
    add("session.buffer_limit", std::to_string(session.buffer_limit));
    add("session.overflow", kOverflowNames[static_cast<std::size_t>(session.overflow)]);
    add("session.send_time_limit", format_duration(session.send_time_limit));
    add("session.heartbeat_interval", format_duration(session.heartbeat_interval));
    add("session.heartbeat_timeout", format_duration(session.heartbeat_timeout));
    add("session.cleanup_interval", format_duration(session.cleanup_interval));
    add("session.on_duplicate", kDuplicateNames[static_cast<std::size_t>(session.on_duplicate)]);
    add("session.max_per_client", std::to_string(session.max_per_client));
    add("session.max_message_size", std::to_string(session.max_message_size));
    add("session.close_timeout", format_duration(session.close_timeout));
    add("session.socket_send_buffer", std::to_string(session.socket_send_buffer));
    add("session.write_delay", format_duration(session.write_delay));
    add("publish.max_queue_depth", std::to_string(config.dispatcher.max_queue_depth));
    add("publish.max_queue_delay", format_duration(config.dispatcher.max_queue_delay));
    add("publish.max_outbound_bytes", std::to_string(config.dispatcher.max_outbound_bytes));
    const auto& history = config.dispatcher.history;
    add("history.enabled", kBooleans[history.enabled ? 1 : 0]);
    add("history.size", std::to_string(history.size));
    add("history.ttl", format_duration(history.ttl));
    add("history.max_bytes", std::to_string(history.max_bytes));
    add("http.threads", std::to_string(transport.http_threads));
    add("http.max_body", std::to_string(transport.max_body));
    add("http.idle_timeout", format_duration(transport.http_idle_timeout));
    add("http.header_timeout", format_duration(transport.header_timeout));
    add("http.min_body_rate", std::to_string(transport.min_body_rate));
    // Only counts and whether a secret is set: secrets never reach the log.
    const auto& auth = transport.auth;
    std::size_t keys = auth.api_keys.size();
    add("auth.api_keys", "<" + std::to_string(keys) + (keys == 1 ? " key>" : " keys>"));
    add("auth.insecure_api", kBooleans[auth.insecure_api ? 1 : 0]);
    add("auth.anonymous_clients", kBooleans[auth.anonymous_clients ? 1 : 0]);
    std::string origins;
    for (const auto& origin : auth.allowed_origins) {
        origins.append(origins.empty() ? "" : ",").append(origin);
    }
    add("auth.allowed_origins", origins);
    add("auth.jwt.hmac_secret", auth.jwt.hmac_secret.empty() ? "<unset>" : "<set>");
    std::string pems;
    for (const auto& pem : auth.jwt.public_keys) {
        pems.append(pems.empty() ? "" : ",").append(pem.path);
    }
    add("auth.jwt.public_keys", pems);
    add("auth.jwt.audience", auth.jwt.audience);
    add("auth.jwt.issuer", auth.jwt.issuer);
    add("auth.jwt.leeway", format_duration(auth.jwt.leeway));
    add("auth.jwt.require_exp", kBooleans[auth.jwt.require_exp ? 1 : 0]);
    add("shutdown.drain_timeout", format_duration(config.drain_timeout));
    add("metrics.enabled", kBooleans[config.metrics_enabled ? 1 : 0]);
    add("metrics.listen", transport.metrics_listen ? endpoint(transport.metrics_listen->host,
                                                              transport.metrics_listen->port)
                                                   : "");
    add("metrics.require_key", kBooleans[transport.metrics_require_key ? 1 : 0]);
    const auto& limits = transport.limits;
    add("limits.max_connections", std::to_string(limits.max_connections));
    add("limits.max_connections_per_ip", std::to_string(limits.max_connections_per_ip));
    std::string proxies;
    for (const auto& cidr : limits.trusted_proxies) {
        proxies.append(proxies.empty() ? "" : ",")
            .append(cidr.network.to_string())
            .append("/")
            .append(std::to_string(cidr.prefix));
    }
    add("limits.trusted_proxies", proxies);
    add("limits.client_messages_per_second", std::to_string(limits.client_messages_per_second));
    add("limits.client_message_burst", std::to_string(limits.client_message_burst));
    add("limits.client_pings_per_second", std::to_string(limits.client_pings_per_second));
    add("limits.client_ping_burst", std::to_string(limits.client_ping_burst));
    add("limits.client_bytes_per_second", std::to_string(limits.client_bytes_per_second));
    add("limits.client_byte_burst", std::to_string(limits.client_byte_burst));
    add("limits.partial_message_memory", std::to_string(limits.partial_message_memory));
    add("limits.partial_message_timeout", format_duration(limits.partial_message_timeout));
    std::string urls;
    for (const auto& url : config.cluster.nats_servers) {
        urls.append(urls.empty() ? "" : ",").append(without_secret(url));
    }
    add("cluster.nats.url", urls);
    add("cluster.nats.reconnect_wait", format_duration(config.cluster.reconnect_wait));
    add("cluster.nats.reconnect_wait_max", format_duration(config.cluster.reconnect_wait_max));
    add("cluster.node", config.cluster.node);
    add("cluster.subject_prefix", config.cluster.subject_prefix);
    add("cluster.upstream", kBooleans[config.cluster.upstream ? 1 : 0]);
    add("cluster.history.stream", config.cluster.history.stream);
    add("cluster.history.storage", kStorageNames[config.cluster.history.memory ? 1 : 0]);
    add("cluster.history.replicas", std::to_string(config.cluster.history.replicas));
    add("cluster.history.reorder_window", format_duration(config.cluster.history.reorder_window));
    add("log.level", config.log.level);
    add("log.summary_interval", format_duration(config.log.summary_interval));
    return line;
}

}  // namespace shardcast
