// is_benign(): the one rule for which I/O errors are a connection's ordinary end rather than a
// failure. Pure function, any thread.
#pragma once

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/system/error_code.hpp>

namespace shardcast::transport {

// The peer left (end of stream, a reset or broken pipe), a deadline we set passed, or we
// cancelled or closed the socket ourselves: the connection is over, and nothing failed.
inline bool is_benign(const boost::system::error_code& ec) {
    namespace net = boost::asio;
    return ec == net::error::eof || ec == boost::beast::http::error::end_of_stream ||
           ec == net::error::connection_reset || ec == net::error::broken_pipe ||
           ec == net::error::connection_aborted || ec == net::error::operation_aborted ||
           ec == net::error::bad_descriptor || ec == net::error::not_connected ||
           ec == boost::beast::error::timeout;
}

}  // namespace shardcast::transport
