// shardcast: pushes messages to WebSocket clients by client id.
//
// Threads: one per shard (sockets and sessions), http.threads for accepting and the HTTP
// API, and this main thread, which only loads the config, waits for SIGINT/SIGTERM, logs
// the periodic summary and runs the shutdown, in the reverse order of startup.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <cstdio>
#include <functional>
#include <optional>

#include "dispatcher/dispatcher.hpp"
#include "main/config.hpp"
#include "main/summary.hpp"
#include "metrics/collector.hpp"
#include "transport/connect_token.hpp"
#include "transport/nats_bus.hpp"
#include "transport/server.hpp"

namespace net = boost::asio;

namespace {

constexpr const char* kVersion = SHARDCAST_VERSION " (" SHARDCAST_REVISION ")";

// Every client is a descriptor: lift the soft limit to the hard one.
void raise_descriptor_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

// Linux doubles SO_SNDBUF for its bookkeeping and caps it at net.core.wmem_max without an
// error, so a probe socket shows what session.socket_send_buffer will really give.
void warn_if_send_buffer_capped(std::size_t requested) {
    if (requested == 0) {
        return;
    }
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return;
    }
    int value = static_cast<int>(requested);
    socklen_t length = sizeof value;
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, sizeof value) == 0 &&
        ::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, &length) == 0 &&
        static_cast<std::size_t>(value) / 2 < requested) {
        spdlog::warn(
            "session.socket_send_buffer={} is capped by the kernel at {} bytes; raise "
            "the sysctl net.core.wmem_max to allow more",
            requested, value / 2);
    }
    ::close(fd);
}

// Every session is a descriptor: a limit above what the process may open leaves health
// checks, the metrics port and the bus without one when the sessions take them all.
void warn_if_connections_do_not_fit(std::size_t max_connections) {
    rlimit limit{};
    if (max_connections == 0 || getrlimit(RLIMIT_NOFILE, &limit) != 0 ||
        limit.rlim_cur == RLIM_INFINITY) {
        return;
    }
    const auto descriptors = static_cast<std::size_t>(limit.rlim_cur);
    if (max_connections + shardcast::transport::kDescriptorReserve > descriptors) {
        spdlog::warn(
            "limits.max_connections={} does not fit the open-file limit of {} descriptors with "
            "{} to spare for health checks, metrics and the bus; lower it, or raise the limit "
            "(ulimit -n, LimitNOFILE=)",
            max_connections, descriptors, shardcast::transport::kDescriptorReserve);
    }
}

// <hostname>:<port>, unique per node of a cluster as long as each runs on its own host or
// port. With port 0 the bound port is not known yet, so the process id stands in.
std::string default_node_name(std::uint16_t port) {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
        std::snprintf(host, sizeof host, "shardcast");
    }
    return std::string(host) + ":" +
           (port != 0 ? std::to_string(port) : "pid" + std::to_string(getpid()));
}

// Says at startup who may publish and who may connect, loudest where anyone may.
void announce_access(const shardcast::transport::AuthConfig& auth) {
    if (!auth.api_keys.empty()) {
        spdlog::info("publish API: {} key(s) from auth.api_keys / auth.api_keys_file",
                     auth.api_keys.size());
    } else if (auth.insecure_api) {
        spdlog::error(
            "auth.insecure_api is true and no auth.api_keys are set: ANYONE who can reach this "
            "port can publish, disconnect any client and list who is online");
    } else {
        spdlog::warn(
            "publish API closed: no auth.api_keys are set, so publish, disconnect, lookup and "
            "stats answer 403; set auth.api_keys or auth.api_keys_file");
    }
    if (auth.anonymous_clients) {
        spdlog::error(
            "auth.anonymous_clients is true: ANY client can connect to /ws/<id> as any id it "
            "names and receive that id's messages");
    } else if (auth.jwt.hmac_secret.empty() && auth.jwt.public_keys.empty()) {
        spdlog::warn(
            "no client can connect: set auth.jwt.hmac_secret, auth.jwt.hmac_secret_file or "
            "auth.jwt.public_keys so clients can prove their id with a token");
    }
    if (auth.any_origin()) {
        spdlog::warn(
            "auth.allowed_origins is [\"*\"]: any web page can open a WebSocket to this server "
            "from its visitors' browsers");
    }
}

int serve(const shardcast::Config& config) {
    announce_access(config.transport.auth);
    raise_descriptor_limit();
    warn_if_send_buffer_capped(config.dispatcher.session.socket_send_buffer);
    warn_if_connections_do_not_fit(config.transport.limits.max_connections);

    const std::string node = config.cluster.node.empty() ? default_node_name(config.transport.port)
                                                         : config.cluster.node;
    shardcast::dispatcher::Dispatcher dispatcher(config.dispatcher);
    // Declared after the dispatcher, so destroyed before it: bus callbacks publish into it.
    std::optional<shardcast::transport::NatsBus> bus;
    if (config.cluster.enabled()) {
        bus.emplace(config.cluster, node, dispatcher);
        dispatcher.set_link(&*bus);
    }
    dispatcher.start();
    shardcast::transport::Server server(config.transport, dispatcher);
    const shardcast::transport::BusStats* bus_stats = bus ? &bus->stats() : nullptr;
    const shardcast::metrics::Collector collector(
        dispatcher, server.stats(), {SHARDCAST_VERSION, SHARDCAST_REVISION}, node, bus_stats);
    server.api().set_node(node, bus_stats);
    if (config.metrics_enabled) {
        server.api().set_metrics([&collector] { return collector.text(); });
    }
    try {
        if (bus) {
            bus->start();
        }
        server.start();
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        dispatcher.stop(std::chrono::milliseconds{0});
        return 1;
    }
    spdlog::info("at most {} WebSocket sessions (limits.max_connections), {} per client address",
                 server.limits().max_total(), server.limits().max_per_address());
    spdlog::info("node {} listening on {}:{} with {} shards{}", node, config.transport.host,
                 server.port(), dispatcher.shard_count(),
                 bus ? " in cluster mode (prefix " + config.cluster.subject_prefix + ")" : "");
    if (auto port = server.metrics_port()) {
        spdlog::info("metrics on {}:{}", config.transport.metrics_listen->host, *port);
    }

    net::io_context io_context;
    net::signal_set signals(io_context, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int signal) {
        if (!ec) {
            spdlog::info("received signal {}: draining for up to {} ms", signal,
                         config.drain_timeout.count());
            io_context.stop();
        }
    });
    shardcast::Summary summary(dispatcher, server.stats(), bus_stats);
    net::steady_timer timer(io_context);
    std::function<void()> schedule_summary = [&] {
        timer.expires_after(config.log.summary_interval);
        timer.async_wait([&](boost::system::error_code ec) {
            if (ec) return;
            spdlog::info("{}", summary.next());
            schedule_summary();
        });
    };
    if (config.log.summary_interval.count() > 0) {
        schedule_summary();
    }
    io_context.run();

    // Mirror of startup: stop taking work, let the shards drain, then stop the HTTP threads.
    server.stop_accepting();
    dispatcher.stop(config.drain_timeout);
    if (bus) {
        bus->stop();  // after the drain: the last sessions' releases unsubscribe first
    }
    server.stop();
    spdlog::info("stopped: {}", summary.next());
    return 0;
}

// shardcast token: a token for trying things out, and a reference for backends.
int print_token(const shardcast::Config& config,
                const std::string& sub,
                const std::string& ttl_text,
                const std::string& info) {
    try {
        const auto ttl = shardcast::parse_duration("--ttl", ttl_text);
        if (ttl < std::chrono::seconds{1}) {
            throw shardcast::ConfigError("--ttl: expected at least 1s, got \"" + ttl_text + "\"");
        }
        std::printf("%s\n", shardcast::transport::mint_token(
                                config.transport.auth.jwt, sub,
                                std::chrono::duration_cast<std::chrono::seconds>(ttl),
                                std::chrono::system_clock::now(), info)
                                .c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shardcast token: %s\n", e.what());
        return 2;
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shardcast: pushes messages to WebSocket clients by client id"};
    std::optional<std::string> config_file;
    std::optional<std::string> listen;
    std::optional<std::string> shards;
    std::vector<std::string> overrides;
    bool check_only = false;
    bool print_reference = false;
    app.add_option("-c,--config", config_file, "YAML configuration file");
    app.add_flag("--config-reference", print_reference,
                 "print every configuration key as a Markdown table, and exit");
    app.footer("Configuration keys (in the YAML file, or -s key=value) [default]:\n" +
               shardcast::config_keys_text());
    std::string token_sub;
    std::string token_ttl = "1h";
    std::string token_info;
    CLI::App* token = app.add_subcommand(
        "token", "print an HS256 connect token signed with auth.jwt.hmac_secret, and exit");
    token->add_option("--sub", token_sub, "the client id the token proves")->required();
    token->add_option("--ttl", token_ttl, "how long it holds, e.g. 30m or 1h (default 1h)");
    token->add_option("--info", token_info, "a JSON object for the info claim");
    // --config and -s given after "token" belong to the main command.
    token->fallthrough();
    app.add_option("-l,--listen", listen, "host:port to serve on (key: listen)");
    app.add_option("--shards", shards, "number of shards (key: shards)");
    app.add_option("-s,--set", overrides, "override any key, e.g. -s session.buffer_limit=2MiB");
    app.add_flag("--check-config", check_only, "validate the configuration and exit");
    app.set_version_flag("-v,--version", std::string("shardcast ") + kVersion);
    CLI11_PARSE(app, argc, argv);
    if (print_reference) {
        std::printf("%s", shardcast::config_keys_markdown().c_str());
        return 0;
    }

    if (listen) overrides.insert(overrides.begin(), "listen=" + *listen);
    if (shards) overrides.insert(overrides.begin(), "shards=" + *shards);

    shardcast::Config config;
    try {
        config = shardcast::load_config(
            config_file ? std::optional<std::filesystem::path>(*config_file) : std::nullopt,
            overrides);
    } catch (const shardcast::ConfigError& e) {
        std::fprintf(stderr, "shardcast: configuration error: %s\n", e.what());
        return 2;
    }

    if (*token) {
        return print_token(config, token_sub, token_ttl, token_info);
    }

    spdlog::set_default_logger(spdlog::stderr_color_mt("shardcast"));
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    spdlog::set_level(spdlog::level::from_str(config.log.level));
    spdlog::info("shardcast {} config: {}", kVersion, shardcast::describe(config));
    if (check_only) {
        return 0;
    }
    const int status = serve(config);
    if (config.cluster.enabled()) {
        shardcast::transport::NatsBus::close_library();
    }
    return status;
}
