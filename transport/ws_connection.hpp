// The hand-off of an upgrade request from an HTTP thread to the shard that owns its client id.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>

#include "transport/authenticator.hpp"
#include "transport/http_stats.hpp"

namespace shardcast::dispatcher {
class Shard;
}

namespace shardcast::transport {

using UpgradeRequest = boost::beast::http::request<boost::beast::http::string_body>;

// Called on the HTTP thread that read the upgrade request, once the Authenticator admitted
// it. Moves the socket onto the shard's io_context; the shard thread then attaches the
// session, writes the 101 and owns the connection from there on. The shard decides the
// answer (101, or 409 or 503 when it refuses the session) and records it in stats. stats
// and verifier (which checks in-band refreshes) must outlive the shard threads.
void hand_off(dispatcher::Shard& shard,
              ClientIdentity identity,
              boost::asio::ip::tcp::socket socket,
              UpgradeRequest request,
              HttpStats& stats,
              const TokenVerifier& verifier);

}  // namespace shardcast::transport
