// view_of: the fields of an upgrade request the Authenticator decides on, read from Beast's
// request. The HTTP session and the request fuzzer build the view the same way.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>

#include "transport/authenticator.hpp"

namespace shardcast::transport {

// protocols receives every Sec-WebSocket-Protocol field joined, and must outlive the view.
UpgradeRequestView view_of(
    const boost::beast::http::request<boost::beast::http::string_body>& request,
    std::string& protocols);

}  // namespace shardcast::transport
