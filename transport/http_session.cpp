// HttpSession: one keep-alive HTTP connection on an HTTP thread. Reads the header first so
// an oversized body is refused before it is read, then the body, then answers through the
// Api or hands a WebSocket upgrade to the shard that owns the client id.
#include "transport/http_session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <optional>

#include "transport/io_error.hpp"
#include "transport/printable.hpp"
#include "transport/request_target.hpp"
#include "transport/ws_connection.hpp"

namespace shardcast::transport {
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr std::uint32_t kHeaderLimit = 16 * 1024;
// Beast sizes each read by the buffer's free capacity, at least 512 bytes. The parser moves
// body bytes out as they arrive, so the buffer never fills and never grows: without room made
// up front, a 15 KB batch takes 30 reads. Reads are capped at 64 KiB anyway.
constexpr std::size_t kBodyReadRoom = 64 * 1024;

class HttpSession : public std::enable_shared_from_this<HttpSession> {
public:
    HttpSession(tcp::socket socket, HttpContext& context)
        : stream_(std::move(socket)), context_(context) {}

    void run() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
    }

private:
    void do_read() {
        // A keep-alive connection between requests holds no read buffer.
        buffer_.shrink_to_fit();
        parser_.emplace();
        parser_->header_limit(kHeaderLimit);
        parser_->body_limit(context_.config.max_body);
        stream_.expires_after(context_.config.http_idle_timeout);
        http::async_read_header(stream_, buffer_, *parser_,
                                [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                    self->on_header(ec);
                                });
    }

    void on_header(beast::error_code ec) {
        if (ec) {
            return on_read_failed(ec);
        }
        const auto& request = parser_->get();
        route_ = route_of(request.target());
        // Decided from the header alone: the body is never read, so the connection closes.
        if (!context_.metrics_only && needs_api_key(route_)) {
            const ApiAccess access = context_.auth.api_access(request[http::field::authorization]);
            if (!access.allowed) {
                ApiResponse response{access.status, json_error(access.message)};
                if (access.status == 401) response.www_authenticate = "Bearer";
                return respond(std::move(response), true);
            }
        }
        if (auto length = parser_->content_length(); length && *length > context_.config.max_body) {
            return respond(
                ApiResponse{413, json_error("request body of " + std::to_string(*length) +
                                            " bytes exceeds http.max_body (" +
                                            std::to_string(context_.config.max_body) + " bytes)")},
                true);
        }
        if (beast::iequals(request[http::field::expect], "100-continue")) {
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

    void do_read_body() {
        if (auto length = parser_->content_length()) {
            buffer_.reserve(buffer_.size() + std::min<std::uint64_t>(*length, kBodyReadRoom));
        }
        http::async_read(stream_, buffer_, *parser_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) {
                             if (ec) return self->on_read_failed(ec);
                             self->handle();
                         });
    }

    void on_read_failed(beast::error_code ec) {
        // A client that leaves between requests, or idles out, is not an error.
        if (is_benign(ec)) {
            return do_close();
        }
        if (ec == http::error::body_limit) {
            return respond(
                ApiResponse{413, json_error("request body exceeds http.max_body (" +
                                            std::to_string(context_.config.max_body) + " bytes)")},
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
        auto& request = parser_->get();
        if (context_.metrics_only && route_ != Route::metrics && route_ != Route::healthz) {
            return respond(
                ApiResponse{404, json_error("this port serves only /metrics and /healthz")}, false);
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
    // attached, replaced or claimed, unless the upgrade is valid and its token verifies.
    void upgrade() {
        auto& request = parser_->get();
        if (!context_.accepting.load(std::memory_order_acquire) ||
            !context_.dispatcher.accepting()) {
            context_.stats.record_refusal(UpgradeRefusal::shutting_down);
            return respond(ApiResponse{503, json_error("shutting down")}, true);
        }
        std::string protocols;
        const auto [first, last] = request.equal_range(http::field::sec_websocket_protocol);
        for (auto field = first; field != last; ++field) {
            protocols.append(protocols.empty() ? "" : ", ").append(field->value());
        }
        const auto origin = request.find(http::field::origin);
        UpgradeRequestView view;
        view.method = request.method_string();
        view.version = request.version();
        view.target = request.target();
        view.host = request[http::field::host];
        view.connection_upgrade =
            http::token_list{request[http::field::connection]}.exists("upgrade");
        view.upgrade_websocket =
            http::token_list{request[http::field::upgrade]}.exists("websocket");
        view.key = request[http::field::sec_websocket_key];
        view.ws_version = request[http::field::sec_websocket_version];
        view.has_origin = origin != request.end();
        if (view.has_origin) view.origin = origin->value();
        view.authorization = request[http::field::authorization];
        view.protocols = protocols;
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
        hand_off(shard, std::move(*decision.identity), stream_.release_socket(), parser_->release(),
                 context_.stats, context_.auth.verifier());
    }

    void respond(ApiResponse response, bool close) {
        context_.stats.record(route_, response.status);
        const auto& request = parser_->get();
        // 429s come in floods exactly when the server is busiest: counted, not logged.
        if (response.status >= 400 && response.status < 500 && response.status != 429) {
            spdlog::warn("rejected {} {}: {} {}", printable(request.method_string()),
                         loggable_target(request.target()), response.status, response.body);
        }
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
    beast::flat_buffer buffer_;
    HttpContext& context_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> response_;
    Route route_ = Route::unknown;
};

}  // namespace

void start_http_session(tcp::socket socket, HttpContext& context) {
    std::make_shared<HttpSession>(std::move(socket), context)->run();
}

}  // namespace shardcast::transport
