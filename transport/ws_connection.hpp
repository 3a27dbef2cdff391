// The hand-off of an upgrade request from an HTTP thread to the shard that owns its client id.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>
#include <vector>

#include "transport/authenticator.hpp"
#include "transport/connection_limits.hpp"
#include "transport/frame_limits.hpp"
#include "transport/http_stats.hpp"
#include "transport/limits_config.hpp"

namespace shardcast::dispatcher {
class Shard;
}

namespace shardcast::transport {

using UpgradeRequest = boost::beast::http::request<boost::beast::http::string_body>;

// What every WebSocket connection shares, owned by the Server and outliving the shard
// threads.
struct SessionContext {
    HttpStats& stats;
    const TokenVerifier& verifier;  // checks in-band refreshes
    const LimitsConfig& limits;
    // One per shard, each touched by its shard's thread only.
    std::vector<PartialBudget>& partial_budgets;
};

// Called on the HTTP thread that read the upgrade request, once the Authenticator admitted
// it and the connection limits gave it a slot, which the connection holds for its life.
// Moves the socket onto the shard's io_context; the shard thread then attaches the session,
// writes the 101 and owns the connection from there on. The shard decides the answer (101,
// or 409 or 503 when it refuses the session) and records it in context.stats.
void hand_off(dispatcher::Shard& shard,
              ClientIdentity identity,
              ConnectionLimits::Slot slot,
              boost::asio::ip::tcp::socket socket,
              UpgradeRequest request,
              SessionContext& context);

}  // namespace shardcast::transport
