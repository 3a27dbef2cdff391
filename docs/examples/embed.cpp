// Embedding shardcast in a C++ service: the dispatcher and its WebSocket server run inside
// the service, and the service's own threads push to clients by id. Built and run by the
// test suite (`embed_example` with --ticks 3), so this file stays correct.
//
//   embed_example [--port N] [--ticks N]
//
// It prints a URL with a connect token for alice: open it with any WebSocket client to see
// the ticks.
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include "dispatcher/dispatcher.hpp"
#include "transport/connect_token.hpp"
#include "transport/server.hpp"

using namespace std::chrono_literals;
namespace dispatcher = shardcast::dispatcher;

int main(int argc, char** argv) {
    int ticks = 10;
    std::uint16_t port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--ticks") ticks = std::stoi(argv[i + 1]);
        if (flag == "--port") port = static_cast<std::uint16_t>(std::stoi(argv[i + 1]));
    }

    // 1. The dispatcher: one thread per shard, each owning the sessions of its client ids.
    dispatcher::DispatcherConfig config;
    config.shards = 2;
    config.session.buffer_limit = 256 * 1024;
    dispatcher::Dispatcher hub(config);
    hub.start();

    // 2. The WebSocket + HTTP front end on top of it (optional: the dispatcher alone works
    //    with any transport that derives from dispatcher::Session).
    //    Clients prove their id with a JWT signed with this secret, which your backend mints
    //    (docs/authentication.md); a random one here, and a token for alice.
    shardcast::transport::TransportConfig transport;
    transport.host = "127.0.0.1";
    transport.port = port;
    std::random_device random;
    for (int i = 0; i < 48; ++i) {
        transport.auth.jwt.hmac_secret += static_cast<char>('a' + random() % 26);
    }
    shardcast::transport::Server server(transport, hub);
    server.start();
    const std::string token = shardcast::transport::mint_token(
        transport.auth.jwt, "alice", std::chrono::hours(1), std::chrono::system_clock::now());
    std::printf("listening: ws://127.0.0.1:%u/ws?token=%s\n", server.port(), token.c_str());

    // 3. Any thread may publish, concurrently, without locks; send() never blocks.
    std::thread producer([&] {
        for (int i = 0; i < ticks; ++i) {
            hub.broadcast(dispatcher::make_payload("tick " + std::to_string(i)));
            hub.send("alice", dispatcher::make_payload("just for alice"));
            std::this_thread::sleep_for(100ms);
        }
    });
    producer.join();
    std::printf("online: %zu\n", hub.online());

    // 4. Shut down in the reverse order of startup: stop taking connections, drain, stop HTTP.
    server.stop_accepting();
    hub.stop(2s);
    server.stop();
    return 0;
}
