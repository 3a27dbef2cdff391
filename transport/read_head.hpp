// async_read_head: reads a request's head whole into the session's own read buffer. Asio's
// async_read_until is not used: it takes a v1 dynamic buffer by value, and a
// beast::flat_buffer is one that owns its bytes, so it read into a copy (a head that came in
// two reads never reached the session's buffer), and a copy over its max_size threw from
// io_context::run. Called on the connection's thread, like every read of its stream.
#pragma once

#include <algorithm>
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <cstddef>
#include <optional>
#include <string_view>
#include <utility>

#include "transport/request_checks.hpp"

namespace shardcast::transport {
namespace detail {

// Reads until buffer holds a blank line within its first limit bytes. The first step always
// reads, nothing when the head is already buffered, so the handler never runs inside the
// initiating call.
template <class Stream>
class ReadHeadOp {
public:
    ReadHeadOp(Stream& stream, boost::beast::flat_buffer& buffer, std::size_t limit)
        : stream_(stream), buffer_(buffer), limit_(limit) {}

    template <class Self>
    void operator()(Self& self, boost::beast::error_code ec = {}, std::size_t n = 0) {
        buffer_.commit(n);
        if (ec) {
            return self.complete(ec, 0);
        }
        const std::string_view buffered(static_cast<const char*>(buffer_.data().data()),
                                        buffer_.size());
        const std::optional<std::size_t> size = head_size(buffered, limit_);
        const bool over = !size && buffered.size() >= limit_;
        if (started_ && (size || over)) {
            return over ? self.complete(boost::asio::error::not_found, 0)
                        : self.complete(ec, *size);
        }
        started_ = true;
        // As much as the buffer has room for (512 bytes at least), never past the limit.
        const std::size_t room =
            size || over
                ? 0
                : std::min(std::max<std::size_t>(kMinRead, buffer_.capacity() - buffer_.size()),
                           limit_ - buffer_.size());
        stream_.async_read_some(buffer_.prepare(room), std::move(self));
    }

private:
    static constexpr std::size_t kMinRead = 512;

    Stream& stream_;
    boost::beast::flat_buffer& buffer_;
    std::size_t limit_;
    bool started_ = false;
};

}  // namespace detail

// Completes with (error_code, head size): the head is then the first size bytes of buffer,
// and what follows it (a body, a pipelined request) stays there. boost::asio::error::not_found
// when the first limit bytes hold no blank line (the server answers 431); buffer may already
// hold more than limit bytes, left over from the request before.
template <class Stream, class Handler>
auto async_read_head(Stream& stream,
                     boost::beast::flat_buffer& buffer,
                     std::size_t limit,
                     Handler&& handler) {
    return boost::asio::async_compose<Handler, void(boost::beast::error_code, std::size_t)>(
        detail::ReadHeadOp<Stream>(stream, buffer, limit), handler, stream);
}

}  // namespace shardcast::transport
