// The HTTP publisher of publisher.hpp. The one file of loadgen that includes Beast.
// do_x starts an async step and on_x completes it, in the order they run.
#include "bench/loadgen/publisher.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>

#include "bench/loadgen/message.hpp"

namespace shardcast::loadgen {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

// Bounds the connect and each request; an answer that takes longer is a failure.
constexpr std::chrono::seconds kRequestTimeout{10};
// After a 429 the publisher tries again this soon, not after the advised Retry-After second:
// the benchmark measures how close to its limit the server runs.
constexpr std::chrono::milliseconds kThrottledRetry{10};

// splitmix64: a fast generator with no state shared between publishers.
struct Random {
    std::uint64_t state;
    std::uint64_t next() {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

std::chrono::steady_clock::time_point at(std::int64_t ns) {
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}

}  // namespace

struct Publisher::Impl {
    Impl(Loop& on,
         const Options& with,
         int number,
         PublisherResult& into,
         std::atomic<bool>& finished)
        : options(with),
          index(static_cast<std::uint32_t>(number)),
          result(into),
          done(finished),
          stream(on.context()),
          timer(on.context()),
          random{static_cast<std::uint64_t>(number) * 7919 + 1},
          targeted(with.targets(number)),
          broadcaster(number >= with.publishers),
          batch(broadcaster ? 1 : with.batch) {
        std::string target = batch > 1  ? "/api/v1/batch"
                             : targeted ? "/api/v1/send"
                                        : "/api/v1/broadcast";
        if (with.ack_taken) target += "?ack=taken";
        request = {http::verb::post, target, 11};
        request.set(http::field::host, options.host + ":" + std::to_string(options.port));
        request.set(http::field::content_type,
                    batch > 1 ? "application/x-ndjson" : "application/json");
        request.keep_alive(true);
        const std::size_t destinations = targeted ? static_cast<std::size_t>(options.clients) : 1;
        result.sent.assign(destinations, 0);
        if (options.churns()) result.times.resize(destinations);
        // The soak's broadcaster keeps its own pace; the others share --rate.
        if (broadcaster) {
            interval_ns = 1e9 / options.broadcast_rate;
        } else if (options.rate > 0) {
            interval_ns = 1e9 * options.batch * options.publishers / options.rate;
        }
    }

    void do_connect() {
        stream.expires_after(kRequestTimeout);
        stream.async_connect(tcp::endpoint(net::ip::make_address_v4(options.host), options.port),
                             [this](error_code ec) { on_connect(ec); });
    }

    void on_connect(error_code ec) {
        if (ec) return fail(ec, "connect");
        stream.socket().set_option(tcp::no_delay(true), ec);
        do_wait();
    }

    // Paced: request k is due at begin_ns + k * interval, and one that is late goes at once,
    // so a slow answer delays the next request but not the ones after it.
    void do_wait() {
        const std::int64_t now = now_ns();
        if (now >= window.end_ns) return finish();
        std::int64_t due = begin_ns;
        if (interval_ns > 0) {
            due += static_cast<std::int64_t>(interval_ns * static_cast<double>(issued));
        }
        if (due <= now) return do_request();
        timer.expires_at(at(due));
        timer.async_wait([this](error_code ec) {
            if (ec) return fail(ec, "timer");
            do_request();
        });
    }

    void do_request() {
        send_ns = now_ns();
        build_body();
        request.prepare_payload();
        stream.expires_after(kRequestTimeout);
        http::async_write(stream, request, [this](error_code ec, std::size_t) { on_write(ec); });
    }

    void on_write(error_code ec) {
        if (ec) return fail(ec, "write");
        response = {};
        http::async_read(stream, buffer, response,
                         [this](error_code read_ec, std::size_t) { on_read(read_ec); });
    }

    void on_read(error_code ec) {
        if (ec) return fail(ec, "read");
        const std::int64_t now = now_ns();
        ++issued;
        if (response.result() == http::status::too_many_requests) {
            // Backpressure, not an error: nothing was published, so the sequence numbers go
            // back, and the publisher waits a little before going on.
            ++result.throttled;
            rollback();
            timer.expires_after(kThrottledRetry);
            timer.async_wait([this](error_code wait_ec) {
                if (wait_ec) return fail(wait_ec, "timer");
                do_wait();
            });
            return;
        }
        // 200 answers ?ack=taken; 202, a publish queued.
        if (response.result() != http::status::accepted && response.result() != http::status::ok) {
            // Nothing of it was published: give its sequence numbers back.
            ++result.http_errors;
            note_error("HTTP " + std::to_string(response.result_int()) + " " + response.body());
            rollback();
        } else {
            if (batch > 1 && response.body().find("\"rejected\":0") == std::string::npos) {
                ++result.http_errors;
                note_error("batch lines rejected: " + response.body());
            }
            ++result.requests;
            result.accepted += lines.size();
            if (send_ns >= window.start_ns && send_ns < window.end_ns) {
                result.accepted_in_window += lines.size();
                result.request_latency.record(now - send_ns);
            }
            if (!result.times.empty()) {
                for (const Line& line : lines)
                    result.times[line.destination][line.seq].end_ns = now;
            }
        }
        do_wait();
    }

    void finish() {
        error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        stream.close();
        done.store(true, std::memory_order_release);
    }

    void fail(error_code ec, const char* what) {
        ++result.transport_errors;
        note_error(std::string(what) + ": " + ec.message());
        rollback();
        finish();
    }

    void note_error(std::string text) {
        if (result.first_error.empty()) result.first_error = std::move(text);
    }

    // One message per line of the request, each with the next sequence number of its
    // destination: the message is {"to":..,"data":..} or, for broadcasts, {"data":..}.
    void build_body() {
        std::string& body = request.body();
        body.clear();
        lines.clear();
        const int count = batch;
        for (int i = 0; i < count; ++i) {
            const std::size_t destination = pick_destination();
            const std::uint64_t seq = result.sent[destination]++;
            if (!result.times.empty()) result.times[destination].push_back({send_ns, 0});
            lines.push_back({destination, seq});
            body += '{';
            if (targeted) {
                body += "\"to\":\"lg";
                append_number(body, destination);
                body += "\",";
            } else if (count > 1) {
                body += "\"to\":\"*\",";
            }
            body += "\"data\":\"";
            append_message(body, Stamp{index, seq, send_ns}, options.size);
            body += "\"}";
            if (count > 1) body += '\n';
        }
    }

    std::size_t pick_destination() {
        if (!targeted) return 0;
        if (options.hot_fraction > 0 && random.unit() < options.hot_fraction) return 0;
        return static_cast<std::size_t>(random.next() %
                                        static_cast<std::uint64_t>(options.clients));
    }

    void rollback() {
        for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
            --result.sent[it->destination];
            if (!result.times.empty()) result.times[it->destination].pop_back();
        }
        lines.clear();
    }

    const Options& options;
    const std::uint32_t index;
    PublisherResult& result;
    std::atomic<bool>& done;
    beast::tcp_stream stream;
    net::steady_timer timer;
    beast::flat_buffer buffer;
    http::request<http::string_body> request;
    http::response<http::string_body> response;
    Random random;
    const bool targeted;     // to one client per message, or broadcasts
    const bool broadcaster;  // the soak's broadcaster, paced by broadcast_rate
    const int batch;         // messages per request
    struct Line {
        std::size_t destination;
        std::uint64_t seq;
    };
    std::vector<Line> lines;  // the messages of the request in flight
    std::int64_t begin_ns = 0;
    Window window;
    double interval_ns = 0;
    std::uint64_t issued = 0;  // requests answered so far
    std::int64_t send_ns = 0;
};

Publisher::Publisher(Loop& loop, const Options& options, int index)
    : impl_(std::make_unique<Impl>(loop, options, index, result_, done_)) {}

Publisher::~Publisher() = default;

void Publisher::start(std::int64_t begin_ns, Window window) {
    impl_->begin_ns = begin_ns;
    impl_->window = window;
    impl_->do_connect();
}

}  // namespace shardcast::loadgen
