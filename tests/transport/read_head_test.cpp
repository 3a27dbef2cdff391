// async_read_head: a head that comes in pieces is read whole into the caller's buffer, one
// already buffered is found without a read, and no blank line within the limit is not_found,
// also when the buffer already holds more than the limit.
#include "transport/read_head.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <cstddef>
#include <deque>
#include <string>
#include <string_view>

namespace shardcast::transport {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;

// A stream that gives each read the next piece (as much of it as fits), then the end of the
// stream. Reads of nothing complete at once, as a socket's do.
class PieceStream {
public:
    using executor_type = net::io_context::executor_type;

    PieceStream(net::io_context& io, std::deque<std::string> pieces)
        : io_(io), pieces_(std::move(pieces)) {}

    executor_type get_executor() { return io_.get_executor(); }

    template <class MutableBuffers, class Handler>
    void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
        ++reads_;
        beast::error_code ec;
        std::size_t n = 0;
        if (net::buffer_size(buffers) == 0) {
            // Nothing asked, nothing read, no error.
        } else if (pieces_.empty()) {
            ec = net::error::eof;
        } else {
            n = net::buffer_copy(buffers, net::buffer(pieces_.front()));
            pieces_.front().erase(0, n);
            if (pieces_.front().empty()) pieces_.pop_front();
        }
        net::post(io_, beast::bind_front_handler(std::forward<Handler>(handler), ec, n));
    }

    int reads() const { return reads_; }

private:
    net::io_context& io_;
    std::deque<std::string> pieces_;
    int reads_ = 0;
};

struct Result {
    bool done = false;
    beast::error_code ec;
    std::size_t size = 0;
};

Result read_head(PieceStream& stream, beast::flat_buffer& buffer, net::io_context& io) {
    Result result;
    async_read_head(stream, buffer, kHeaderLimit, [&](beast::error_code ec, std::size_t n) {
        result = {true, ec, n};
    });
    EXPECT_FALSE(result.done) << "the handler ran inside the initiating call";
    io.run();
    return result;
}

std::string_view buffered(const beast::flat_buffer& buffer) {
    return {static_cast<const char*>(buffer.data().data()), buffer.size()};
}

TEST(ReadHeadTest, HeadInPiecesIsReadWholeIntoTheCallersBuffer) {
    net::io_context io;
    PieceStream stream(io, {"GET /healthz HTTP/1.1\r\nHo", "st: a\r\n", "\r\nrest"});
    beast::flat_buffer buffer;
    const Result result = read_head(stream, buffer, io);
    const std::string_view head = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    ASSERT_TRUE(result.done);
    EXPECT_FALSE(result.ec) << result.ec.message();
    EXPECT_EQ(result.size, head.size());
    EXPECT_EQ(buffered(buffer), std::string(head) + "rest");
}

TEST(ReadHeadTest, BufferedHeadIsFoundWithoutReadingMore) {
    net::io_context io;
    PieceStream stream(io, {});
    beast::flat_buffer buffer;
    const std::string pipelined = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    buffer.commit(net::buffer_copy(buffer.prepare(pipelined.size()), net::buffer(pipelined)));
    const Result result = read_head(stream, buffer, io);
    EXPECT_FALSE(result.ec) << result.ec.message();
    EXPECT_EQ(result.size, pipelined.size() / 2);
    EXPECT_EQ(buffer.size(), pipelined.size());
}

TEST(ReadHeadTest, NoBlankLineWithinTheLimitIsNotFoundAndReadsNoFurther) {
    net::io_context io;
    PieceStream stream(io, {std::string(kHeaderLimit - 2, 'a') + "\r\n\r\n"});
    beast::flat_buffer buffer;
    const Result result = read_head(stream, buffer, io);
    EXPECT_EQ(result.ec, net::error::not_found);
    EXPECT_EQ(buffer.size(), kHeaderLimit);
}

TEST(ReadHeadTest, LeftoverOverTheLimitWithoutBlankLineIsNotFound) {
    net::io_context io;
    PieceStream stream(io, {"\r\n\r\n"});
    beast::flat_buffer buffer;
    const std::string leftover(40'000, 'x');
    buffer.commit(net::buffer_copy(buffer.prepare(leftover.size()), net::buffer(leftover)));
    const Result result = read_head(stream, buffer, io);
    EXPECT_EQ(result.ec, net::error::not_found);
    EXPECT_EQ(buffer.size(), leftover.size()) << "nothing read past the limit";
}

TEST(ReadHeadTest, EndOfStreamInsideTheHeadIsAnError) {
    net::io_context io;
    PieceStream stream(io, {"GET / HTTP/1.1\r\n"});
    beast::flat_buffer buffer;
    const Result result = read_head(stream, buffer, io);
    EXPECT_EQ(result.ec, net::error::eof);
    EXPECT_EQ(stream.reads(), 2);
}

}  // namespace
}  // namespace shardcast::transport
