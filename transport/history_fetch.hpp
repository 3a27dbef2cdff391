// HistoryFetch: a session's resume, as the bus hands it to the cluster's history
// (ClusterLink::fetch_history, HistoryStream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace shardcast::transport {

struct HistoryFetch {
    std::string client_id;
    std::uint64_t since = 0;
    std::string epoch;
    std::size_t shard = 0;
    std::uint64_t session = 0;  // Session::serial
};

}  // namespace shardcast::transport
