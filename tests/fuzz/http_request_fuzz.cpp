// libFuzzer target: the HTTP request path, from a request's bytes to its answer, as
// HttpSession takes it (transport/http_session.cpp): the first read, the head read whole up
// to 16 KiB and checked for folding, Beast's request_parser with the server's limits (header
// 16 KiB, body http.max_body), the framing, API key and size decided from the head, the body,
// then Authenticator::admit for an upgrade (the view built as the session builds it, within
// the connection limits) or Api::handle for the rest, against a real Dispatcher of two
// shards. The reads use the session's own calls (transport/read_head.hpp, Beast's reads), on an
// in-memory stream. The publish bodies are also fed to their routes directly, so the JSON and
// NDJSON readers are reached by every input of those modes.
//
// Input: byte 0 chooses the authenticator (bit 0x20 clear, as in an upper-case letter: the
// strict one, with an API key, one allowed origin and the JWT keys of tests/fuzz/keys with
// audience and issuer; set: anonymous clients, the same-origin rule and an open API) and the
// mode (its value modulo 8):
//   h (0, 7)     HTTP/1.1 requests on one connection, each read given all it asks for
//   i (1)        the same, in pieces a generator cuts, seeded by byte 1 (InputStream)
//   b, s, n, d   the body of POST /api/v1/broadcast (2), send (3), batch (6), disconnect (4)
//   u (5)        an upgrade's fields, one per line: method, target, Host, Connection, Upgrade,
//                Sec-WebSocket-Key, Sec-WebSocket-Version, Origin (present when its line is),
//                Authorization, Sec-WebSocket-Protocol
// The peer is 10.1.2.3, a trusted proxy, so X-Forwarded-For and X-Real-IP are read.
//
// Besides ASan, UBSan and LSan, it checks every answer: a status the server counts
// (HttpStats::kStatuses), a JSON body that parses (so is UTF-8), an admitted client with a
// valid id, no token in the log line, and the head the session checks is in its buffer.
#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcher/dispatcher.hpp"
#include "fuzz_support.hpp"
#include "transport/api.hpp"
#include "transport/ascii.hpp"
#include "transport/authenticator.hpp"
#include "transport/client_address.hpp"
#include "transport/client_id.hpp"
#include "transport/connection_limits.hpp"
#include "transport/read_head.hpp"
#include "transport/request_checks.hpp"
#include "transport/request_target.hpp"
#include "transport/upgrade_view.hpp"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace transport = shardcast::transport;
using shardcast::fuzz::check;

// As http_session.cpp reads: the first read's room, and the body's.
constexpr std::size_t kFirstReadRoom = 4 * 1024;
constexpr std::size_t kBodyReadRoom = 64 * 1024;
constexpr int kMaxRequests = 8;  // pipelined requests answered per input

transport::AuthConfig strict_auth() {
    transport::AuthConfig auth;
    auth.api_keys = {std::string(shardcast::fuzz::kApiKey)};
    auth.allowed_origins = {"https://app.fuzz.invalid"};
    auth.jwt = shardcast::fuzz::jwt_config(true);
    return auth;
}

transport::AuthConfig open_auth() {
    transport::AuthConfig auth;
    auth.insecure_api = true;
    auth.anonymous_clients = true;
    auth.jwt = shardcast::fuzz::jwt_config(false);
    return auth;
}

// The default transport behind a proxy on 10.0.0.0/8: the session reads who it forwards for.
transport::TransportConfig proxied() {
    transport::TransportConfig config;
    for (const char* range : {"10.0.0.0/8", "fd00::/8"}) {
        config.limits.trusted_proxies.push_back(*transport::parse_cidr(range));
    }
    return config;
}

shardcast::dispatcher::DispatcherConfig two_shards() {
    shardcast::dispatcher::DispatcherConfig config;
    config.shards = 2;
    return config;
}

// The server's parts an HTTP session reaches, built once. Its dispatcher stops at exit, so
// the shard threads are joined before LSan's last check.
struct Server {
    Server()
        : dispatcher(two_shards()),
          api(config, dispatcher, accepting, stats),
          strict(strict_auth()),
          open(open_auth()) {
        dispatcher.start();
        api.set_metrics([] { return std::string("# metrics\n"); });
        // One client id per shard, for settle().
        for (int n = 0; ids.size() < dispatcher.shard_count(); ++n) {
            std::string id = "fuzz-" + std::to_string(n);
            if (dispatcher.router().shard_of(id) == ids.size()) ids.push_back(std::move(id));
        }
    }

    // Waits until every shard has run what the input queued: the lookup is posted behind the
    // drain a publish schedules. So payloads are freed within the input that made them, and
    // libFuzzer's leak check after each input does not chase memory still in flight.
    void settle() {
        for (const std::string& id : ids) {
            auto done = std::make_shared<std::promise<void>>();
            std::future<void> ready = done->get_future();
            if (!dispatcher.lookup(
                    id, [done](shardcast::dispatcher::ClientInfo) { done->set_value(); })) {
                return;
            }
            ready.wait();
        }
    }

    transport::TransportConfig config = proxied();
    const net::ip::address peer = net::ip::make_address("10.1.2.3");
    transport::ConnectionLimits limits{0, 1000};
    shardcast::dispatcher::Dispatcher dispatcher;
    std::atomic<bool> accepting{true};
    transport::HttpStats stats;
    transport::Api api;
    const transport::Authenticator strict;
    const transport::Authenticator open;
    std::vector<std::string> ids;
};

Server& server() {
    static Server* const instance = [] {
        auto* s = new Server;
        std::atexit([] { server().dispatcher.stop(std::chrono::milliseconds(0)); });
        return s;
    }();
    return *instance;
}

// What every answer must be, whatever the request was.
void check_answer(const transport::ApiResponse& response) {
    const auto& statuses = transport::HttpStats::kStatuses;
    check(std::find(statuses.begin() + 1, statuses.end(), response.status) != statuses.end(),
          "a status the server does not count");
    if (response.content_type == "application/json") {
        boost::system::error_code ec;
        boost::json::parse(response.body, ec);
        check(!ec, "a JSON answer that does not parse");
    }
}

transport::ApiResponse call_api(Server& s, const transport::ApiRequest& request) {
    auto reply = std::make_shared<std::promise<transport::ApiResponse>>();
    std::future<transport::ApiResponse> later = reply->get_future();
    std::optional<transport::ApiResponse> now = s.api.handle(
        request, [reply](transport::ApiResponse r) { reply->set_value(std::move(r)); });
    transport::ApiResponse response = now ? std::move(*now) : later.get();
    s.settle();
    check_answer(response);
    return response;
}

void check_decision(const transport::UpgradeDecision& decision,
                    const transport::Authenticator& auth) {
    if (!decision.identity) {
        check(!decision.refused.message.empty(), "a refused upgrade without a message");
        check_answer(transport::ApiResponse{decision.refused.status,
                                            transport::json_error(decision.refused.message)});
        return;
    }
    check(transport::valid_client_id(decision.identity->client_id), "admitted an invalid id");
    check(!decision.identity->anonymous || auth.config().anonymous_clients,
          "admitted an anonymous client with anonymous_clients off");
}

// Admits or refuses; an admitted client is handed to its shard, which ends the HTTP session
// either way.
void upgrade(Server& s,
             const transport::Authenticator& auth,
             const transport::UpgradeRequestView& view) {
    const transport::UpgradeDecision decision = auth.admit(view, shardcast::fuzz::now());
    check_decision(decision, auth);
    if (decision.identity) {
        s.dispatcher.shard_for(decision.identity->client_id);
    }
}

// The target as HttpSession logs it: every token= pair shows ***, whatever the rest holds
// (or as much of *** as fits before the cut at 128 bytes).
void check_log_line(std::string_view target) {
    const std::string line = transport::loggable_target(target);
    std::string_view shown = line;
    const bool cut = shown.ends_with("...");
    if (cut) shown.remove_suffix(3);
    const std::size_t question = shown.find('?');
    if (question == std::string_view::npos) return;
    std::string_view query = shown.substr(question + 1);
    while (!query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (!pair.starts_with("token")) continue;
        const std::string_view rest = pair.substr(5);
        const bool last = query.empty() && amp == std::string_view::npos;
        check(rest.empty() ? last && cut
                           : rest[0] != '=' || rest == "=***" ||
                                 (last && cut && std::string_view("=***").starts_with(rest)),
              "a connect token reached the log line");
    }
}

// Answers one parsed request as HttpSession::handle does; returns whether the connection
// stays open for the next.
bool handle(Server& s,
            const transport::Authenticator& auth,
            const net::ip::address& client,
            const http::request<http::string_body>& request) {
    check_log_line(request.target());
    if (transport::route_of(request.target()) == transport::Route::websocket) {
        // The slot is released here, where the server would hand it to the session.
        const transport::ConnectionLimits::Grant grant = s.limits.acquire(client);
        if (grant.verdict == transport::ConnectionLimits::Verdict::admitted) {
            std::string protocols;
            upgrade(s, auth, transport::view_of(request, protocols));
        }
        return false;
    }
    call_api(s, {request.method_string(), request.target(), request.body()});
    return request.keep_alive();
}

// The input as a socket may deliver it: each read gets the next piece, then the stream ends.
// With a seed of 0 a read gets all it asks for; otherwise the pieces are cut by a generator
// the seed starts: 1 to 256 bytes, small ones as often as large, or, one read in four, all
// the read asks for.
class InputStream {
public:
    using executor_type = net::io_context::executor_type;

    InputStream(net::io_context& io, std::string_view input, std::uint32_t seed)
        : io_(io), input_(input), state_(seed) {}

    executor_type get_executor() { return io_.get_executor(); }

    template <class MutableBuffers, class Handler>
    void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
        beast::error_code ec;
        std::size_t n = 0;
        if (net::buffer_size(buffers) == 0) {
            // As a socket does (async_read_head asks for none when the head is there).
        } else if (input_.empty()) {
            ec = net::error::eof;
        } else {
            n = net::buffer_copy(buffers, net::buffer(input_.data(), next_piece()));
            input_.remove_prefix(n);
        }
        net::post(io_, beast::bind_front_handler(std::forward<Handler>(handler), ec, n));
    }

private:
    std::size_t next_piece() {
        if (state_ == 0) return input_.size();
        state_ = state_ * 1103515245u + 12345u;  // the same cuts for the same input
        const std::uint32_t r = state_ >> 16;
        // Small pieces as often as large ones: 1 + (0-255 shifted right by 0-7).
        const std::size_t piece = 1 + ((r & 0xFF) >> ((r >> 8) & 7));
        return r % 4 == 0 ? input_.size() : std::min(input_.size(), piece);
    }

    net::io_context& io_;
    std::string_view input_;
    std::uint32_t state_;
};

// One connection, read as HttpSession reads it (transport/http_session.cpp), step by step
// with the same Asio and Beast calls on the same buffer type, so the buffer and the parser
// meet what they meet in the server, from an InputStream. Each step runs the io_context
// until the stream has completed it.
class Session {
public:
    Session(Server& s,
            const transport::Authenticator& auth,
            std::string_view input,
            std::uint32_t seed)
        : server_(s), auth_(auth), stream_(io_, input, seed) {}

    void run() {
        for (int n = 0; n < kMaxRequests && serve_one(); ++n) {
        }
    }

private:
    // One request; returns whether the connection goes on to the next.
    bool serve_one() {
        parser_.emplace();
        parser_->header_limit(transport::kHeaderLimit);
        parser_->body_limit(server_.config.max_body);
        if (buffer_.size() == 0 && !read_first()) return false;
        const std::optional<std::size_t> head_size = read_head();
        if (!head_size) return false;
        const std::string_view head(static_cast<const char*>(buffer_.data().data()), *head_size);
        if (transport::has_obs_fold(head)) {
            return refuse({400, transport::json_error("obsolete line folding in a header field")});
        }
        beast::error_code ec;
        http::async_read_header(stream_, buffer_, *parser_,
                                [&](beast::error_code e, std::size_t) { ec = e; });
        complete();
        if (ec) return read_failed(ec);
        if (auto refusal = refusal_from_head()) return refuse(std::move(*refusal));
        const std::uint64_t length = parser_->content_length().value_or(server_.config.max_body);
        buffer_.reserve(buffer_.size() + std::min<std::uint64_t>(length, kBodyReadRoom));
        http::async_read(stream_, buffer_, *parser_,
                         [&](beast::error_code e, std::size_t) { ec = e; });
        complete();
        if (ec) return read_failed(ec);
        return handle(server_, auth_, client_, parser_->get());
    }

    // do_read: a connection's first bytes, or a kept-alive one's next request.
    bool read_first() {
        buffer_.shrink_to_fit();
        beast::error_code ec;
        std::size_t n = 0;
        stream_.async_read_some(buffer_.prepare(kFirstReadRoom),
                                [&](beast::error_code e, std::size_t k) {
                                    ec = e;
                                    n = k;
                                });
        complete();
        buffer_.commit(n);
        return !ec;  // the end of the stream between requests just closes
    }

    // read_head: the head read whole into the buffer, up to its limit, by the session's own
    // call. Its size, or nullopt when the request ended here (with a 431, or the stream's end).
    std::optional<std::size_t> read_head() {
        beast::error_code ec;
        std::size_t n = 0;
        transport::async_read_head(stream_, buffer_, transport::kHeaderLimit,
                                   [&](beast::error_code e, std::size_t k) {
                                       ec = e;
                                       n = k;
                                   });
        complete();
        if (ec == net::error::not_found) {
            refuse({431, transport::json_error("request header fields too large")});
            return std::nullopt;
        }
        if (ec) return std::nullopt;
        // on_head reads the head from its buffer: the bytes must be there.
        check(n <= buffer_.size(),
              "the head's size counts bytes the session's buffer does not hold");
        return n;
    }

    // refusal_from_head, with on_header's client address.
    std::optional<transport::ApiResponse> refusal_from_head() {
        const auto& request = parser_->get();
        client_ =
            transport::client_address(server_.peer, request["X-Forwarded-For"],
                                      request["X-Real-IP"], server_.config.limits.trusted_proxies);
        if (auto framing =
                transport::check_framing(request[http::field::transfer_encoding],
                                         request.count(http::field::transfer_encoding) > 0,
                                         request.count(http::field::content_length) > 0)) {
            return transport::ApiResponse{framing->status, transport::json_error(framing->message)};
        }
        const transport::Route route = transport::route_of(request.target());
        const bool needs_key =
            transport::needs_api_key(route) ||
            (route == transport::Route::metrics && server_.config.metrics_require_key &&
             !auth_.config().api_keys.empty());
        if (needs_key) {
            const transport::ApiAccess access =
                auth_.api_access(request[http::field::authorization]);
            if (!access.allowed)
                return transport::ApiResponse{access.status, transport::json_error(access.message)};
        }
        if (auto length = parser_->content_length(); length && *length > server_.config.max_body) {
            return transport::ApiResponse{413, transport::json_error("request body too large")};
        }
        return std::nullopt;
    }

    // on_read_failed: 413, 431 or 400 naming the error, then close; the stream's end closes.
    bool read_failed(beast::error_code ec) {
        if (ec != http::error::end_of_stream && ec != net::error::eof) {
            refuse({400, transport::json_error("malformed HTTP request: " + ec.message())});
        }
        return false;
    }

    // An answer that closes the connection.
    bool refuse(transport::ApiResponse response) {
        check_answer(response);
        return false;
    }

    void complete() {
        io_.run();
        io_.restart();
    }

    Server& server_;
    const transport::Authenticator& auth_;
    net::io_context io_;
    InputStream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    net::ip::address client_;
};

void serve(Server& s,
           const transport::Authenticator& auth,
           std::string_view input,
           std::uint32_t seed) {
    Session(s, auth, input, seed).run();
}

// The u mode: the view's fields straight from the input's lines.
void admit_fields(Server& s, const transport::Authenticator& auth, std::string_view input) {
    std::vector<std::string_view> lines;
    while (!input.empty() && lines.size() < 10) {
        const std::size_t newline = input.find('\n');
        lines.push_back(input.substr(0, newline));
        input = newline == std::string_view::npos ? std::string_view{} : input.substr(newline + 1);
    }
    lines.resize(10);
    transport::UpgradeRequestView view;
    view.method = lines[0];
    view.target = lines[1];
    view.host = lines[2];
    view.connection_upgrade = transport::has_token(lines[3], "upgrade");
    view.upgrade_websocket = transport::has_token(lines[4], "websocket");
    view.key = lines[5];
    view.ws_version = lines[6];
    view.has_origin = !lines[7].empty();
    view.origin = lines[7];
    view.authorization = lines[8];
    view.protocols = lines[9];
    upgrade(s, auth, view);
}

}  // namespace

// The server starts before the first input, so its threads' start-up is not charged to one.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    server();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Server& s = server();
    if (size < 1) {
        return 0;
    }
    const transport::Authenticator& auth = (data[0] & 0x20) == 0 ? s.strict : s.open;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 8) {
        case 1:
            if (!rest.empty()) serve(s, auth, rest.substr(1), std::uint8_t(rest[0]) + 1u);
            break;
        case 2:
            call_api(s, {"POST", "/api/v1/broadcast", rest});
            break;
        case 3:
            call_api(s, {"POST", "/api/v1/send", rest});
            break;
        case 4:
            call_api(s, {"POST", "/api/v1/disconnect", rest});
            break;
        case 5:
            admit_fields(s, auth, rest);
            break;
        case 6:
            call_api(s, {"POST", "/api/v1/batch", rest});
            break;
        default:
            serve(s, auth, rest, 0);
            break;
    }
    return 0;
}
