// Collector: every shardcast metric family, built at scrape time from the shards' single-
// writer counters, the HTTP counters and /proc. Nothing on the publish path touches
// prometheus-cpp: a scrape reads, it never takes a lock a shard could wait on.
//
// Thread contract: Collect() and text() may run on any thread, concurrently with traffic.
#pragma once

#include <prometheus/collectable.h>

#include <string>
#include <vector>

#include "dispatcher/dispatcher.hpp"
#include "transport/bus_stats.hpp"
#include "transport/http_stats.hpp"

namespace shardcast::metrics {

struct BuildInfo {
    std::string version;
    std::string revision;
};

class Collector : public prometheus::Collectable {
public:
    // node: this node's name (shardcast_node_info); bus: the cluster bus's counters, or null
    // for a single node, which then exports no shardcast_bus_* families.
    Collector(const dispatcher::Dispatcher& dispatcher,
              const transport::HttpStats& http,
              BuildInfo build,
              std::string node = {},
              const transport::BusStats* bus = nullptr);

    std::vector<prometheus::MetricFamily> Collect() const override;
    // Collect() in the Prometheus text format (version 0.0.4).
    std::string text() const;

private:
    void collect_bus(std::vector<prometheus::MetricFamily>& out) const;
    void collect_history_stream(std::vector<prometheus::MetricFamily>& out,
                                const transport::HistoryStreamStats& history) const;

    const dispatcher::Dispatcher& dispatcher_;
    const transport::HttpStats& http_;
    const BuildInfo build_;
    const std::string node_;
    const transport::BusStats* bus_;
};

}  // namespace shardcast::metrics
