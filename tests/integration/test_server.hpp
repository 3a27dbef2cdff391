// TestServer: the real dispatcher and transport, in this process, on 127.0.0.1 and an
// ephemeral port. Tests reach it only through sockets, as any client would.
#pragma once

#include <chrono>
#include <string>

#include "dispatcher/dispatcher.hpp"
#include "metrics/collector.hpp"
#include "tests/support/totals.hpp"
#include "transport/server.hpp"

namespace shardcast::test {

inline dispatcher::DispatcherConfig test_dispatcher_config() {
    dispatcher::DispatcherConfig config;
    config.shards = 2;
    // Tests that publish a flood and count every message would otherwise pass only while each
    // shard keeps within 20 ms, a timing assertion that a sanitizer build or a busy machine
    // breaks. Admission by delay has tests of its own, which set it.
    config.max_queue_delay = std::chrono::milliseconds{0};
    return config;
}

// on_duplicate: allow, so an id may hold up to max_per_client sessions and the next gets 409.
inline dispatcher::DispatcherConfig allow_mode_config(std::size_t max_per_client) {
    dispatcher::DispatcherConfig config = test_dispatcher_config();
    config.session.on_duplicate = dispatcher::DuplicatePolicy::allow;
    config.session.max_per_client = max_per_client;
    return config;
}

// Open, as the tests of everything but authentication and limits need it: clients name their
// id in the URL, the API takes calls without a key, and one address may hold any number of
// sessions. The tests of authentication and limits close it again.
inline transport::TransportConfig test_transport_config() {
    transport::TransportConfig config;
    config.host = "127.0.0.1";
    config.port = 0;
    config.http_threads = 2;
    config.auth.anonymous_clients = true;
    config.auth.insecure_api = true;
    // Thousands of test clients come from 127.0.0.1.
    config.limits.max_connections_per_ip = 0;
    return config;
}

class TestServer {
public:
    explicit TestServer(dispatcher::DispatcherConfig d = test_dispatcher_config(),
                        transport::TransportConfig t = test_transport_config())
        : dispatcher_(std::move(d)),
          server_(std::move(t), dispatcher_),
          collector_(dispatcher_, server_.stats(), {"test", "test"}) {
        // Wired as the binary wires it with metrics.enabled (the default).
        server_.api().set_metrics([this] { return collector_.text(); });
        dispatcher_.start();
        server_.start();
    }
    ~TestServer() { stop(); }

    // The same order as the binary: stop taking work, drain, stop the HTTP threads.
    void stop(std::chrono::milliseconds drain = std::chrono::milliseconds{2000}) {
        if (stopped_) return;
        stopped_ = true;
        server_.stop_accepting();
        dispatcher_.stop(drain);
        server_.stop();
    }

    std::uint16_t port() const { return server_.port(); }
    dispatcher::Dispatcher& dispatcher() { return dispatcher_; }
    transport::Server& server() { return server_; }

    std::uint64_t failed(dispatcher::FailureReason reason) const {
        return test::failed(dispatcher_, reason);
    }
    std::uint64_t failed_total() const { return test::failed_total(dispatcher_); }
    std::uint64_t cleaned(dispatcher::RemovalReason reason) const {
        return test::cleaned(dispatcher_, reason);
    }
    std::uint64_t sent() const { return test::sent(dispatcher_); }

private:
    dispatcher::Dispatcher dispatcher_;
    transport::Server server_;
    metrics::Collector collector_;
    bool stopped_ = false;
};

}  // namespace shardcast::test
