// HttpSession: one keep-alive HTTP connection on an HTTP thread. Reads a request in three
// steps, each with its own deadline: the first byte (a kept-alive connection may idle), the
// head (within http.header_timeout, checked for folding and framing before the parser acts on
// it), and the body (no slower than http.min_body_rate). A request whose key or size is
// wrong is answered from its head, before any of its body is read. Then the Api answers, or
// the upgrade is decided and handed to the shard that owns the client id.
#include "transport/http_session.hpp"

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <optional>

#include "transport/ascii.hpp"
#include "transport/client_address.hpp"
#include "transport/io_error.hpp"
#include "transport/read_head.hpp"
#include "transport/request_checks.hpp"
#include "transport/upgrade_view.hpp"
#include "transport/ws_connection.hpp"

namespace shardcast::transport {
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// Beast sizes each read by the buffer's free capacity, at least 512 bytes. The parser moves
// body bytes out as they arrive, so the buffer never fills and never grows: without room made
// up front, a 15 KB batch takes 30 reads. Reads are capped at 64 KiB anyway.
constexpr std::size_t kBodyReadRoom = 64 * 1024;
constexpr std::size_t kFirstReadRoom = 4 * 1024;

class HttpSession : public std::enable_shared_from_this<HttpSession> {
public:
    HttpSession(tcp::socket socket, HttpContext& context)
        : stream_(std::move(socket)),
          deadline_(stream_.get_executor()),
          first_head_due_(std::chrono::steady_clock::now() + context.config.header_timeout),
          context_(context) {
        beast::error_code ec;
        peer_ = stream_.socket().remote_endpoint(ec).address();
        client_ = peer_;
    }

    void run() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
    }

private:
    enum class Phase : unsigned char { waiting, head, body };

    const TransportConfig& config() const { return context_.config; }

    // A new connection must start its first request within http.header_timeout; a kept-alive
    // one may idle for http.idle_timeout before the next.
    void do_read() {
        parser_.emplace();
        parser_->header_limit(kHeaderLimit);
        parser_->body_limit(config().max_body);
        phase_ = Phase::waiting;
        if (buffer_.size() > 0) {
            return read_head();  // the next request is already here, pipelined
        }
        buffer_.shrink_to_fit();  // an idle connection holds no read buffer
        stream_.expires_after(requests_ == 0 ? config().header_timeout
                                             : config().http_idle_timeout);
        stream_.async_read_some(buffer_.prepare(kFirstReadRoom),
                                [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                    self->buffer_.commit(n);
                                    if (ec) return self->on_read_failed(ec);
                                    self->read_head();
                                });
    }

    // The head, read whole into the buffer first, so it can be checked as sent.
    void read_head() {
        arm_deadline(requests_ == 0 ? first_head_due_
                                    : std::chrono::steady_clock::now() + config().header_timeout);
        phase_ = Phase::head;
        async_read_head(stream_, buffer_, kHeaderLimit,
                        [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                            self->on_head(ec, n);
                        });
    }

    void on_head(beast::error_code ec, std::size_t head_size) {
        if (ec == net::error::not_found) {
            route_ = Route::unknown;  // the header that would name it was never read whole
            return respond(ApiResponse{431, json_error("request header fields too large")}, true);
        }
        if (ec) {
            return on_read_failed(ec);
        }
        const std::string_view head(static_cast<const char*>(buffer_.data().data()), head_size);
        if (has_obs_fold(head)) {
            return respond(ApiResponse{400, json_error("obsolete line folding in a header field")},
                           true);
        }
        // The parser takes the head from the buffer: no I/O.
        http::async_read_header(
            stream_, buffer_, *parser_,
            [self = shared_from_this()](beast::error_code read_ec, std::size_t) {
                self->on_header(read_ec);
            });
    }

    void on_header(beast::error_code ec) {
        if (ec) {
            return on_read_failed(ec);
        }
        const auto& request = parser_->get();
        route_ = route_of(request.target());
        client_ = client_address(peer_, request["X-Forwarded-For"], request["X-Real-IP"],
                                 config().limits.trusted_proxies);
        if (auto refusal = refusal_from_head()) {
            return respond(std::move(*refusal), true);
        }
        if (ascii_iequals(request[http::field::expect], "100-continue")) {
            auto go_on = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                            request.version());
            http::async_write(
                stream_, *go_on,
                [self = shared_from_this(), go_on](beast::error_code write_ec, std::size_t) {
                    if (write_ec) {
                        return self->context_.stats.record_drop(DropReason::continue_unwritten);
                    }
                    self->do_read_body();
                });
            return;
        }
        do_read_body();
    }

    // What the head alone decides, before a byte of the body is read (the connection then
    // closes): framing the server will not read, a missing or wrong key, a body too large.
    std::optional<ApiResponse> refusal_from_head() {
        const auto& request = parser_->get();
        if (auto framing = check_framing(request[http::field::transfer_encoding],
                                         request.count(http::field::transfer_encoding) > 0,
                                         request.count(http::field::content_length) > 0)) {
            return ApiResponse{framing->status, json_error(framing->message)};
        }
        if (!context_.metrics_only && needs_key(route_)) {
            const ApiAccess access = context_.auth.api_access(request[http::field::authorization]);
            if (!access.allowed) {
                ApiResponse response{access.status, json_error(access.message)};
                if (access.status == 401) response.www_authenticate = "Bearer";
                return response;
            }
        }
        if (auto length = parser_->content_length(); length && *length > config().max_body) {
            return ApiResponse{413, json_error("request body of " + std::to_string(*length) +
                                               " bytes exceeds http.max_body (" +
                                               std::to_string(config().max_body) + " bytes)")};
        }
        return std::nullopt;
    }

    // /metrics needs a key too when keys are set, unless metrics.require_key is off.
    bool needs_key(Route route) const {
        return needs_api_key(route) || (route == Route::metrics && config().metrics_require_key &&
                                        !config().auth.api_keys.empty());
    }

    // The body must come at http.min_body_rate at least: a deadline for the announced
    // length (or http.max_body when chunked), on top of http.header_timeout.
    void do_read_body() {
        phase_ = Phase::body;
        const std::uint64_t length = parser_->content_length().value_or(config().max_body);
        buffer_.reserve(buffer_.size() + std::min<std::uint64_t>(length, kBodyReadRoom));
        const auto seconds =
            static_cast<double>(length) / static_cast<double>(config().min_body_rate);
        arm_deadline(std::chrono::steady_clock::now() + config().header_timeout +
                     std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000)));
        http::async_read(stream_, buffer_, *parser_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) {
                             if (ec) return self->on_read_failed(ec);
                             self->handle();
                         });
    }

    // The head and body deadlines are this timer's, not the stream's: the stream's own expiry
    // closes the socket, and the 408 would have nowhere to go. Cancelling the read leaves it
    // open for the answer.
    void arm_deadline(std::chrono::steady_clock::time_point due) {
        stream_.expires_never();
        late_ = false;
        deadline_.expires_at(due);
        deadline_.async_wait(
            [weak = weak_from_this(), armed = ++deadline_armed_](beast::error_code ec) {
                const auto self = weak.lock();
                if (ec || !self || self->deadline_armed_ != armed) {
                    return;  // disarmed, or armed again since
                }
                self->late_ = true;
                beast::error_code ignored;
                self->stream_.socket().cancel(ignored);
            });
    }

    void disarm_deadline() {
        ++deadline_armed_;
        deadline_.cancel();
    }

    void on_read_failed(beast::error_code ec) {
        // A request that stopped arriving in time: say so (an idle connection just closes).
        if (late_ && phase_ != Phase::waiting) {
            const bool head = phase_ == Phase::head;
            return respond(ApiResponse{408, json_error(head ? "request header not received within "
                                                              "http.header_timeout"
                                                            : "request body arrived slower than "
                                                              "http.min_body_rate")},
                           true);
        }
        // A client that leaves between requests, or idles out, is not an error.
        if (is_benign(ec)) {
            return do_close();
        }
        if (ec == http::error::body_limit) {
            return respond(
                ApiResponse{413, json_error("request body exceeds http.max_body (" +
                                            std::to_string(config().max_body) + " bytes)")},
                true);
        }
        if (ec == http::error::header_limit) {
            route_ = Route::unknown;  // the header that would name it was never read whole
            return respond(ApiResponse{431, json_error("request header fields too large")}, true);
        }
        route_ = Route::unknown;
        respond(ApiResponse{400, json_error("malformed HTTP request: " + ec.message())}, true);
    }

    void handle() {
        disarm_deadline();
        ++requests_;
        auto& request = parser_->get();
        if (context_.metrics_only && route_ != Route::metrics && route_ != Route::healthz) {
            return respond(
                ApiResponse{404, json_error("this port serves only /metrics and /healthz")}, false);
        }
        if (!context_.metrics_only && route_ == Route::metrics && config().metrics_listen) {
            return respond(
                ApiResponse{404, json_error("metrics are served on metrics.listen only")}, false);
        }
        if (route_ == Route::websocket) {
            return upgrade();
        }
        const ApiRequest api_request{request.method_string(), request.target(), request.body()};
        auto reply_later = [self = shared_from_this()](ApiResponse response) {
            net::post(self->stream_.get_executor(),
                      [self, response = std::move(response)]() mutable {
                          self->respond(std::move(response), false);
                      });
        };
        if (auto response = context_.api.handle(api_request, reply_later)) {
            respond(std::move(*response), false);
        }
    }

    // Decided whole here, on the HTTP thread: nothing reaches a shard, and no session is
    // attached, replaced or claimed, unless the upgrade is valid, within the connection
    // limits, and its token verifies. The slot it takes is released if it does not.
    void upgrade() {
        if (!context_.accepting.load(std::memory_order_acquire) ||
            !context_.dispatcher.accepting()) {
            context_.stats.record_refusal(UpgradeRefusal::shutting_down);
            return respond(ApiResponse{503, json_error("shutting down")}, true);
        }
        ConnectionLimits::Grant grant = context_.limits.acquire(client_);
        if (grant.verdict != ConnectionLimits::Verdict::admitted) {
            return refuse_over_limit(grant.verdict);
        }
        std::string protocols;
        const UpgradeRequestView view = view_of(parser_->get(), protocols);
        UpgradeDecision decision = context_.auth.admit(view, std::chrono::system_clock::now());
        if (!decision.identity) {
            const UpgradeRefused& refused = decision.refused;
            context_.stats.record_refusal(refused.reason);
            ApiResponse response{refused.status, json_error(refused.message)};
            if (refused.status == 405) response.allow = "GET";
            if (refused.status == 401) response.www_authenticate = "Bearer";
            response.websocket_version =
                refused.status == 426 && !view.ws_version.empty() && view.ws_version != "13";
            return respond(std::move(response), true);
        }
        stream_.expires_never();
        dispatcher::Shard& shard = context_.dispatcher.shard_for(decision.identity->client_id);
        hand_off(shard, std::move(*decision.identity), std::move(grant.slot),
                 stream_.release_socket(), parser_->release(), context_.session);
    }

    void refuse_over_limit(ConnectionLimits::Verdict verdict) {
        const bool full = verdict == ConnectionLimits::Verdict::server_full;
        context_.stats.record_refusal(full ? UpgradeRefusal::too_many_connections
                                           : UpgradeRefusal::too_many_from_address);
        ApiResponse response =
            full ? ApiResponse{503, json_error("the server holds as many connections as it may "
                                               "(limits.max_connections); try another node")}
                 : ApiResponse{429, json_error("too many connections from your address "
                                               "(limits.max_connections_per_ip)")};
        response.retry_after = "5";
        respond(std::move(response), true);
    }

    void respond(ApiResponse response, bool close) {
        context_.stats.record(route_, response.status);
        const auto& request = parser_->get();
        // 429s and 503s come in floods exactly when the server is busiest: counted, not
        // logged. The rest is logged at a bounded rate.
        if (response.status >= 400 && response.status != 429 && response.status != 503) {
            context_.log.rejected(client_.to_string(), request.method_string(), request.target(),
                                  response.status, response.body);
        }
        write_response(std::move(response), close);
    }

    void write_response(ApiResponse response, bool close) {
        disarm_deadline();
        const auto& request = parser_->get();
        response_ = {};
        response_.version(request.version() == 10 ? 10 : 11);
        response_.result(response.status);
        response_.set(http::field::server, "shardcast");
        response_.set(http::field::content_type, response.content_type);
        if (!response.allow.empty()) response_.set(http::field::allow, response.allow);
        if (!response.www_authenticate.empty()) {
            response_.set(http::field::www_authenticate, response.www_authenticate);
        }
        if (response.status == 426) response_.set(http::field::upgrade, "websocket");
        if (response.websocket_version) response_.set(http::field::sec_websocket_version, "13");
        if (!response.retry_after.empty()) {
            response_.set(http::field::retry_after, response.retry_after);
        }
        response_.body() = std::move(response.body);
        response_.keep_alive(!close && request.keep_alive());
        response_.prepare_payload();
        // An answer to HEAD has no body whatever its status, but the Content-Length a GET
        // would get. A body here would be read as the start of the next response.
        if (request.method() == http::verb::head) response_.body().clear();
        stream_.expires_after(config().http_idle_timeout);  // a client that never reads
        http::async_write(
            stream_, response_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) {
                    return self->context_.stats.record_drop(DropReason::response_unwritten);
                }
                if (!self->response_.keep_alive()) return self->do_close();
                self->do_read();
            });
    }

    void do_close() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }

    beast::tcp_stream stream_;
    net::steady_timer deadline_;  // the head's and the body's
    std::uint64_t deadline_armed_ = 0;
    bool late_ = false;  // the deadline passed and cancelled the read
    const std::chrono::steady_clock::time_point first_head_due_;
    beast::flat_buffer buffer_;
    HttpContext& context_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> response_;
    net::ip::address peer_;    // the socket's peer
    net::ip::address client_;  // who the request is from (a trusted proxy may say)
    std::uint64_t requests_ = 0;
    Phase phase_ = Phase::waiting;
    Route route_ = Route::unknown;
};

}  // namespace

void start_http_session(tcp::socket socket, HttpContext& context) {
    std::make_shared<HttpSession>(std::move(socket), context)->run();
}

}  // namespace shardcast::transport
