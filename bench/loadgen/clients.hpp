// ClientGroup: the WebSocket clients one Loop owns, each connecting to /ws/lg<index>,
// reading every message and checking it against its StreamChecks.
//
// Thread contract: construct and destroy on the main thread while the Loop's thread is not
// touching the group (before start, after stop); call the other members on the Loop's thread
// only, through Loop::post.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "bench/loadgen/loop.hpp"
#include "bench/loadgen/options.hpp"

namespace shardcast::loadgen {

namespace detail {
class Client;
}  // namespace detail

class ClientGroup {
public:
    // indices: the client numbers this group owns. The group keeps a reference to options.
    ClientGroup(Loop& loop, const Options& options, std::vector<int> indices);
    ClientGroup(const ClientGroup&) = delete;
    ClientGroup& operator=(const ClientGroup&) = delete;
    ~ClientGroup();

    // Connects every client, paced at connect_rate / threads per second.
    void connect_all();
    // Closes random open clients at churn_rate / threads per second until end_ns, each of
    // them reconnecting as soon as its connection is over.
    void churn_until(std::int64_t end_ns);
    // Ends every connection at once (the run is over). Records the ones still open as open at
    // the end, so that their every message counts.
    void close_all();

private:
    friend class detail::Client;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace shardcast::loadgen
