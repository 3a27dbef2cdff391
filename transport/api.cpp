#include "transport/api.hpp"

#include <boost/json.hpp>
#include <string>

#include "dispatcher/close_code.hpp"
#include "transport/client_id.hpp"
#include "transport/json_reader.hpp"
#include "transport/printable.hpp"
#include "transport/request_target.hpp"

namespace shardcast::transport {
namespace json = boost::json;
namespace {

constexpr std::string_view kClientPrefix = "/api/v1/clients/";
// A batch answer lists at most this many line errors; "rejected" still counts them all.
constexpr std::size_t kMaxListedErrors = 100;

ApiResponse error(unsigned status, std::string_view message) {
    return ApiResponse{status, json_error(message)};
}

// What the shard is over, and by how much, for the producer's log.
std::string overload_text(const dispatcher::Dispatcher::Overload& overload,
                          const dispatcher::DispatcherConfig& config) {
    const std::string shard = "shard " + std::to_string(overload.shard);
    if (overload.limit == dispatcher::OverloadLimit::queue_delay) {
        const std::uint64_t tenths = overload.value / 100;  // of a millisecond
        return shard + "'s oldest command has waited " + std::to_string(tenths / 10) + "." +
               std::to_string(tenths % 10) + " ms (publish.max_queue_delay " +
               std::to_string(config.max_queue_delay.count()) + "ms)";
    }
    return shard + " has " + std::to_string(overload.value) +
           " commands waiting (publish.max_queue_depth " + std::to_string(config.max_queue_depth) +
           ")";
}

// 429 with Retry-After: the producer should slow down, not give up. Counted by the limit.
ApiResponse overloaded(const dispatcher::Dispatcher::Overload& overload,
                       const dispatcher::DispatcherConfig& config,
                       HttpStats& stats) {
    stats.record_overloaded(overload.limit);
    ApiResponse response{
        429, json_error("overloaded: " + overload_text(overload, config) + "; retry later")};
    response.retry_after = "1";
    return response;
}

// The 429s answered for overloaded shards, by limit; none is never counted.
json::object overloaded_by_reason(const HttpStats& stats) {
    json::object out;
    for (std::size_t i = 1; i < dispatcher::kOverloadLimitCount; ++i) {
        const auto limit = static_cast<dispatcher::OverloadLimit>(i);
        out[enum_name(limit)] = stats.overloaded(limit);
    }
    return out;
}

ApiResponse accepted(std::size_t n) {
    return ApiResponse{202, R"({"accepted":)" + std::to_string(n) + "}"};
}

// One message of the publish API: {"to"?, "except"?, "data"}.
struct Message {
    std::string to;
    std::string except;
    dispatcher::Payload payload;
};

enum class Shape { send, broadcast, batch_line };

// Checks the fields a shape allows and needs. Returns "" or the problem.
std::string read_message(JsonReader& reader, std::string_view text, Shape shape, Message& out) {
    if (std::string problem = reader.parse(text); !problem.empty()) {
        return problem;
    }
    const json::object* object = reader.value().if_object();
    if (object == nullptr) {
        return "expected a JSON object";
    }
    const json::value* data = nullptr;
    for (const auto& [key, field] : *object) {
        if (key == "data") {
            data = &field;
        } else if (key == "to" && shape != Shape::broadcast) {
            const json::string* to = field.if_string();
            if (to == nullptr) {
                return "\"to\" must be a string";
            }
            out.to.assign(to->data(), to->size());
        } else if (key == "except" && shape == Shape::broadcast) {
            const json::string* except = field.if_string();
            if (except == nullptr) {
                return "\"except\" must be a string";
            }
            out.except.assign(except->data(), except->size());
            if (!valid_client_id(out.except)) {
                return "\"except\" is not a valid client id";
            }
        } else {
            return "unknown field \"" + std::string(key) + "\"";
        }
    }
    if (shape != Shape::broadcast) {
        if (!object->contains("to")) {
            return "missing field \"to\"";
        }
        const bool wildcard = shape == Shape::batch_line && out.to == "*";
        if (!wildcard && !valid_client_id(out.to)) {
            return "\"to\" is not a valid client id (1-128 of A-Z a-z 0-9 . _ : @ -)";
        }
    }
    if (data == nullptr) {
        return "missing field \"data\"";
    }
    // A JSON string is delivered as its text; anything else as its serialised JSON.
    if (const json::string* s = data->if_string()) {
        out.payload = dispatcher::make_payload(std::string(s->data(), s->size()));
    } else {
        out.payload = dispatcher::make_json_payload(json::serialize(*data));
    }
    return {};
}

// Values indexed by an enum, as {"<enumerator>": value, ...}: counters (anything with load())
// or plain numbers.
template <class E, class Values>
json::object named(const Values& values) {
    static_assert(std::tuple_size_v<Values> == enum_count<E>);
    json::object out;
    for (std::size_t i = 0; i < values.size(); ++i) {
        if constexpr (std::is_arithmetic_v<typename Values::value_type>) {
            out[enum_names<E>[i]] = values[i];
        } else {
            out[enum_names<E>[i]] = values[i].load();
        }
    }
    return out;
}

// The cluster's history stream: "epoch" only while it stores, as frames would carry it.
json::object history_stats(const HistoryStreamStats& h) {
    json::object out{{"enabled", h.enabled.load(std::memory_order_relaxed)},
                     {"available", h.available.load(std::memory_order_relaxed)},
                     {"stored", h.stored.load()},
                     {"unstored", h.unstored.load()},
                     {"fetches", h.fetches.load()},
                     {"fetch_errors", h.fetch_errors.load()},
                     {"epochs", h.epochs.load()},
                     {"overtaken", h.overtaken.load()},
                     {"late", h.late.load()}};
    if (std::string epoch = h.epoch(); !epoch.empty() && out["available"].as_bool()) {
        out["epoch"] = std::move(epoch);
    } else {
        out["epoch"] = nullptr;
    }
    return out;
}

// The methods a route answers, as its 405's Allow header names them.
constexpr std::string_view methods_of(Route route) {
    switch (route) {
        case Route::send:
        case Route::broadcast:
        case Route::batch:
        case Route::disconnect:
            return "POST";
        default:
            return "GET, HEAD";
    }
}

// The id's shard is one a publish reached; looked up only when the answer waits for it.
void mark_reached(std::vector<bool>& reached,
                  const dispatcher::Dispatcher& dispatcher,
                  std::string_view id) {
    if (!reached.empty()) reached[dispatcher.router().shard_of(id)] = true;
}

// One batch line: to its client, or to everyone for "*".
bool publish_line(dispatcher::Dispatcher& dispatcher,
                  Message& message,
                  std::vector<bool>& reached) {
    if (message.to == "*") {
        if (!dispatcher.broadcast(std::move(message.payload), {}, dispatcher::PublishKind::batch)) {
            return false;
        }
        reached.assign(reached.size(), true);
        return true;
    }
    if (!dispatcher.send(message.to, std::move(message.payload), dispatcher::PublishKind::batch)) {
        return false;
    }
    mark_reached(reached, dispatcher, message.to);
    return true;
}

}  // namespace

Route route_of(std::string_view path) {
    path = path_of(path);
    if (path == kWsPath || path.starts_with(kWsPrefix)) return Route::websocket;
    if (path == "/api/v1/send") return Route::send;
    if (path == "/api/v1/broadcast") return Route::broadcast;
    if (path == "/api/v1/batch") return Route::batch;
    if (path == "/api/v1/disconnect") return Route::disconnect;
    if (path.starts_with(kClientPrefix)) return Route::client;
    if (path == "/api/v1/stats") return Route::stats;
    if (path == "/healthz") return Route::healthz;
    if (path == "/readyz") return Route::readyz;
    if (path == "/metrics") return Route::metrics;
    return Route::unknown;
}

std::string json_error(std::string_view message) {
    return json::serialize(json::object{{"error", message}});
}

Api::Api(const TransportConfig& config,
         dispatcher::Dispatcher& dispatcher,
         const std::atomic<bool>& accepting,
         HttpStats& stats)
    : config_(config), dispatcher_(dispatcher), accepting_(accepting), stats_(stats) {}

std::optional<ApiResponse> Api::handle(const ApiRequest& request, const Reply& later) {
    const std::string_view path = path_of(request.target);
    const Route route = route_of(path);
    // Upgrades are taken by the HttpSession before this point.
    if (route == Route::unknown || route == Route::websocket) {
        return error(404, "no route for " + printable(path));
    }
    if (route == Route::metrics && !metrics_) {
        return error(404, "metrics are disabled");
    }
    // HEAD is GET without the body (the session leaves it out): load balancers check health
    // with either. What publishes or reveals clients had its key checked by the HttpSession.
    const std::string_view allow = methods_of(route);
    const bool allowed = allow == "POST" ? request.method == "POST"
                                         : request.method == "GET" || request.method == "HEAD";
    if (!allowed) {
        ApiResponse r = error(405, "method not allowed; use " + std::string(allow));
        r.allow = allow;
        return r;
    }
    switch (route) {
        case Route::healthz:
            return ApiResponse{200, R"({"status":"ok"})"};
        case Route::readyz:
            return readiness();
        case Route::metrics:
            return ApiResponse{200, metrics_(), "text/plain; version=0.0.4; charset=utf-8"};
        case Route::send:
        case Route::broadcast:
        case Route::batch:
            return publish(route, request, later);
        case Route::disconnect:
            return disconnect(request.body);
        case Route::stats:
            return stats();
        case Route::client:
            return client(path.substr(kClientPrefix.size()), later);
        case Route::unknown:
        case Route::websocket:
            break;
    }
    return error(404, "no route for " + printable(path));
}

// Answered later, from the client's shard.
std::optional<ApiResponse> Api::client(std::string_view id, const Reply& later) {
    if (!valid_client_id(id)) {
        return error(400, "invalid client id (1-128 of A-Z a-z 0-9 . _ : @ -)");
    }
    const bool asked = dispatcher_.lookup(id, [later](dispatcher::ClientInfo info) {
        later(
            ApiResponse{200, json::serialize(json::object{{"id", info.id},
                                                          {"online", info.online},
                                                          {"sessions", info.sessions},
                                                          {"shard", info.shard},
                                                          {"messages_sent", info.messages_sent},
                                                          {"socket_writes", info.socket_writes}})});
    });
    if (!asked) {
        return error(503, "shutting down");
    }
    return std::nullopt;
}

// Default: 202 as soon as the messages are queued. With ?ack=taken: 200 with the same body
// once every shard they went to has taken them (Dispatcher::when_taken), so a publisher that
// waits for its answers is held to the pace its clients are written at.
std::optional<ApiResponse> Api::publish(Route route,
                                        const ApiRequest& request,
                                        const Reply& later) {
    const std::optional<std::string> ack = query_param(request.target, "ack");
    if (ack && *ack != "queued" && *ack != "taken") {
        return error(400, R"("ack" must be "queued" or "taken")");
    }
    // Which shards the messages went to, tracked only when the answer waits for them.
    std::vector<bool> reached(ack == "taken" ? dispatcher_.shard_count() : 0, false);
    ApiResponse response = route == Route::send        ? send(request.body, reached)
                           : route == Route::broadcast ? broadcast(request.body, reached)
                                                       : batch(request.body, reached);
    if (response.status != 202 || ack != "taken") {
        return response;
    }
    std::vector<std::size_t> shards;
    for (std::size_t i = 0; i < reached.size(); ++i) {
        if (reached[i]) shards.push_back(i);
    }
    response.status = 200;
    dispatcher_.when_taken(shards, [later, response = std::move(response)](bool taken) {
        later(taken ? response : error(503, "shutting down: the messages may not be delivered"));
    });
    return std::nullopt;
}

ApiResponse Api::send(std::string_view body, std::vector<bool>& reached) {
    JsonReader reader;
    Message message;
    if (std::string problem = read_message(reader, body, Shape::send, message); !problem.empty()) {
        return error(400, problem);
    }
    if (auto overload = dispatcher_.overload_of(message.to)) {
        return overloaded(overload, dispatcher_.config(), stats_);
    }
    if (!dispatcher_.send(message.to, std::move(message.payload))) {
        return error(503, "shutting down");
    }
    mark_reached(reached, dispatcher_, message.to);
    return accepted(1);
}

ApiResponse Api::broadcast(std::string_view body, std::vector<bool>& reached) {
    JsonReader reader;
    Message message;
    if (std::string problem = read_message(reader, body, Shape::broadcast, message);
        !problem.empty()) {
        return error(400, problem);
    }
    if (auto overload = dispatcher_.overload_of_any()) {
        return overloaded(overload, dispatcher_.config(), stats_);
    }
    if (!dispatcher_.broadcast(std::move(message.payload), message.except)) {
        return error(503, "shutting down");
    }
    reached.assign(reached.size(), true);
    return accepted(1);
}

// NDJSON: each line is published on its own, in order, so lines to one client keep their
// order; a bad line is reported and skipped, never fails the lines around it. An overloaded
// server refuses the whole batch with 429, before reading it.
ApiResponse Api::batch(std::string_view body, std::vector<bool>& reached) {
    // Checked once for the whole batch: a batch is either taken or refused, never half taken.
    if (!dispatcher_.accepting()) {
        return error(503, "shutting down");
    }
    if (auto overload = dispatcher_.overload_of_any()) {
        return overloaded(overload, dispatcher_.config(), stats_);
    }
    std::size_t accepted_count = 0;
    std::size_t rejected = 0;
    std::size_t line_number = 0;
    json::array errors;
    JsonReader reader;  // one for every line: they parse into the same memory
    auto reject = [&](std::string problem) {
        ++rejected;
        if (errors.size() < kMaxListedErrors) {
            errors.push_back(json::object{{"line", line_number}, {"error", problem}});
        }
    };
    while (!body.empty()) {
        ++line_number;
        const std::size_t end = body.find('\n');
        std::string_view line = body.substr(0, end);
        body = end == std::string_view::npos ? std::string_view{} : body.substr(end + 1);
        if (line.ends_with('\r')) {
            line.remove_suffix(1);
        }
        if (line.find_first_not_of(" \t") == std::string_view::npos) {
            continue;
        }
        Message message;
        if (std::string problem = read_message(reader, line, Shape::batch_line, message);
            !problem.empty()) {
            reject(std::move(problem));
            continue;
        }
        if (!publish_line(dispatcher_, message, reached)) {
            reject("shutting down");
            continue;
        }
        ++accepted_count;
    }
    if (accepted_count == 0 && rejected == 0) {
        return error(400, "empty batch: expected one JSON object per line");
    }
    stats_.record_rejected_batch_lines(rejected);
    return ApiResponse{202, json::serialize(json::object{{"accepted", accepted_count},
                                                         {"rejected", rejected},
                                                         {"errors", std::move(errors)}})};
}

// {"to":"<id>","code":<close code>?,"reason":"<text>"?}: closes every session of the id.
ApiResponse Api::disconnect(std::string_view body) {
    JsonReader reader;
    if (std::string problem = reader.parse(body); !problem.empty()) {
        return error(400, problem);
    }
    const json::object* object = reader.value().if_object();
    if (object == nullptr) {
        return error(400, "expected a JSON object");
    }
    std::string to;
    std::int64_t code = dispatcher::close_code::kNormal;
    std::string reason;
    for (const auto& [key, field] : *object) {
        if (key == "to" && field.is_string()) {
            to.assign(field.get_string().data(), field.get_string().size());
        } else if (key == "code" && field.is_int64()) {
            code = field.get_int64();
        } else if (key == "reason" && field.is_string()) {
            reason.assign(field.get_string().data(), field.get_string().size());
        } else if (key == "to" || key == "code" || key == "reason") {
            return error(400, "\"" + std::string(key) + "\" has the wrong type");
        } else {
            return error(400, "unknown field \"" + std::string(key) + "\"");
        }
    }
    if (!valid_client_id(to)) {
        return error(400, "\"to\" is missing or not a valid client id");
    }
    if (code < 0 || code > 0xFFFF ||
        !dispatcher::close_code::server_may_send(static_cast<std::uint16_t>(code))) {
        return error(400, "\"code\" must be 1000 or from 3000 to 4999");
    }
    if (reason.size() > dispatcher::close_code::kMaxReasonBytes) {
        return error(400, "\"reason\" is longer than 123 bytes");
    }
    if (!dispatcher_.disconnect(to, static_cast<std::uint16_t>(code), reason)) {
        return error(503, "shutting down");
    }
    return accepted(1);
}

// One shard's figures, as /api/v1/stats lists them.
static json::object shard_stats(const dispatcher::Shard& shard, std::size_t index) {
    using dispatcher::FailureReason;
    using dispatcher::PublishKind;
    using dispatcher::RemovalReason;
    const dispatcher::ShardStats& s = shard.stats();
    return json::object{
        {"shard", index},
        {"sessions", s.sessions.load()},
        {"queue_depth", shard.queue_depth()},
        {"outbound_bytes", s.outbound_bytes.load()},
        {"sent", s.sent.load()},
        {"held", s.held.load()},
        {"writes", s.writes.load()},
        {"failed", named<FailureReason>(s.failed)},
        {"cleaned", named<RemovalReason>(s.cleaned)},
        {"published", named<PublishKind>(s.published)},
        {"connections", s.connections.load()},
        {"frames_received", s.frames_received.load()},
        {"sessions_refused", s.refused_too_many.load() + s.refused_stopping.load()},
        {"sweep_removed", s.sweep_removed.load()},
        {"wakeups", s.wakeups.load()},
        {"delivery_latency", json::object{{"count", shard.latency().count()},
                                          {"sum_seconds", shard.latency().sum_seconds()}}},
    };
}

ApiResponse Api::stats() const {
    using dispatcher::FailureReason;
    using dispatcher::PublishKind;
    using dispatcher::RemovalReason;
    json::array shards;
    for (std::size_t i = 0; i < dispatcher_.shard_count(); ++i) {
        shards.push_back(shard_stats(dispatcher_.shard(i), i));
    }
    const dispatcher::StatsTotals all = dispatcher_.totals();
    json::object totals{
        {"online", all.sessions},
        {"sent", all.sent},
        {"held", all.held},
        {"failed", all.failed_total()},
        {"cleaned", all.cleaned_total()},
        {"connections", all.connections},
        {"frames_received", all.frames_received},
        {"outbound_bytes", all.outbound_bytes},
        {"failed_by_reason", named<FailureReason>(all.failed)},
        {"cleaned_by_reason", named<RemovalReason>(all.cleaned)},
        {"published", named<PublishKind>(all.published)},
        {"history",
         json::object{{"bytes", all.history_bytes},
                      {"messages", all.history_entries},
                      {"evicted", named<dispatcher::EvictionReason>(all.history_evicted)},
                      {"resumes", all.resumes},
                      {"replayed", all.replayed},
                      {"gaps", named<dispatcher::GapReason>(all.gaps)}}},
        {"http_rejected", stats_.rejected()},
        {"overloaded_by_reason", overloaded_by_reason(stats_)},
        {"batch_lines_rejected", stats_.rejected_batch_lines()},
    };
    json::object cluster{{"enabled", bus_ != nullptr}};
    if (bus_ != nullptr) {
        cluster["bus_connected"] = bus_->connected.load(std::memory_order_acquire);
        cluster["subscriptions"] = bus_->subscriptions.load(std::memory_order_relaxed);
        cluster["messages_out"] = named<BusKind>(bus_->out);
        cluster["messages_in"] = named<BusKind>(bus_->in);
        cluster["refused"] = named<BusKind>(bus_->refused);
        cluster["receive_errors"] = named<BusReceiveError>(bus_->receive_errors);
        cluster["publish_errors"] = bus_->publish_errors.load();
        cluster["reconnects"] = bus_->reconnects.load();
        cluster["history"] = history_stats(bus_->history);
    }
    return ApiResponse{200, json::serialize(json::object{{"node", node_},
                                                         {"cluster", std::move(cluster)},
                                                         {"totals", std::move(totals)},
                                                         {"shards", std::move(shards)}})};
}

ApiResponse Api::readiness() const {
    if (accepting_.load(std::memory_order_acquire) && dispatcher_.ready()) {
        return ApiResponse{200, R"({"status":"ready"})"};
    }
    return ApiResponse{503, R"({"status":"not ready"})"};
}

}  // namespace shardcast::transport
