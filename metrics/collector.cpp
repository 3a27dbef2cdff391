#include "metrics/collector.hpp"

#include <prometheus/text_serializer.h>

#include <string>

#include "metrics/process_stats.hpp"

namespace shardcast::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

MetricFamily& family(std::vector<MetricFamily>& out,
                     std::string name,
                     std::string help,
                     MetricType type) {
    out.push_back(MetricFamily{std::move(name), std::move(help), type, {}});
    return out.back();
}

void add(MetricFamily& f, double value, Labels labels = {}) {
    ClientMetric m;
    m.label = std::move(labels);
    if (f.type == MetricType::Counter) {
        m.counter.value = value;
    } else {
        m.gauge.value = value;
    }
    f.metric.push_back(std::move(m));
}

double d(std::uint64_t v) { return static_cast<double>(v); }
double d(std::int64_t v) { return static_cast<double>(v); }

// The fixed-bucket histogram as Prometheus wants it: cumulative counts per upper bound.
ClientMetric latency_metric(const dispatcher::LatencyHistogram& h, Labels labels) {
    ClientMetric m;
    m.label = std::move(labels);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < dispatcher::LatencyHistogram::kBounds.size(); ++i) {
        cumulative += h.bucket(i);
        m.histogram.bucket.push_back({cumulative, dispatcher::LatencyHistogram::kBounds[i]});
    }
    // Counted after the finite buckets, so +Inf (the count) is never below the last bucket
    // even if the shard records while we read.
    cumulative += h.bucket(dispatcher::LatencyHistogram::kBounds.size());
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = h.sum_seconds();
    return m;
}

// What history holds, lets go, and what resumes found.
void add_history(std::vector<MetricFamily>& out, const dispatcher::StatsTotals& totals) {
    using dispatcher::EvictionReason;
    using dispatcher::GapReason;
    add(family(out, "shardcast_history_bytes",
               "Payload bytes kept for resumes (a broadcast once per shard).", MetricType::Gauge),
        d(totals.history_bytes));
    add(family(out, "shardcast_history_messages", "Messages kept for resumes.", MetricType::Gauge),
        d(totals.history_entries));
    auto& evicted = family(out, "shardcast_history_evicted_total",
                           "Messages that left history, by reason.", MetricType::Counter);
    for (std::size_t r = 0; r < dispatcher::kEvictionReasonCount; ++r) {
        add(evicted, d(totals.history_evicted[r]),
            {{"reason", std::string(enum_names<EvictionReason>[r])}});
    }
    add(family(out, "shardcast_resumes_total", "Sessions that asked to resume.",
               MetricType::Counter),
        d(totals.resumes));
    add(family(out, "shardcast_resume_replayed_total", "Messages resumes delivered again.",
               MetricType::Counter),
        d(totals.replayed));
    auto& gaps = family(out, "shardcast_resume_gaps_total",
                        "Resumes that could not be whole, by reason.", MetricType::Counter);
    for (std::size_t r = 0; r < dispatcher::kGapReasonCount; ++r) {
        add(gaps, d(totals.gaps[r]), {{"reason", std::string(enum_names<GapReason>[r])}});
    }
}

// The publishes refused with 429 for a shard that was behind, by the limit it was over.
void add_overloaded(std::vector<MetricFamily>& out, const transport::HttpStats& http) {
    auto& overloaded = family(out, "shardcast_publish_overloaded_total",
                              "Publish requests answered 429 because a shard was over a publish "
                              "admission limit, by the limit.",
                              MetricType::Counter);
    for (std::size_t r = 1; r < dispatcher::kOverloadLimitCount; ++r) {
        const auto limit = dispatcher::OverloadLimit(r);
        add(overloaded, d(http.overloaded(limit)), {{"reason", std::string(enum_name(limit))}});
    }
}

}  // namespace

Collector::Collector(const dispatcher::Dispatcher& dispatcher,
                     const transport::HttpStats& http,
                     BuildInfo build,
                     std::string node,
                     const transport::BusStats* bus)
    : dispatcher_(dispatcher),
      http_(http),
      build_(std::move(build)),
      node_(std::move(node)),
      bus_(bus) {}

std::vector<MetricFamily> Collector::Collect() const {
    using dispatcher::FailureReason;
    using dispatcher::PublishKind;
    using dispatcher::RemovalReason;
    std::vector<MetricFamily> out;
    out.reserve(24);
    const std::size_t shards = dispatcher_.shard_count();
    const dispatcher::StatsTotals totals = dispatcher_.totals();

    auto& published = family(out, "shardcast_messages_published_total",
                             "Messages accepted from producers, by API.", MetricType::Counter);
    for (std::size_t k = 0; k < dispatcher::kPublishKindCount; ++k) {
        add(published, d(totals.published[k]), {{"kind", std::string(enum_names<PublishKind>[k])}});
    }

    auto& sent = family(out, "shardcast_messages_sent_total",
                        "Frames fully written to a client socket.", MetricType::Counter);
    auto& held = family(out, "shardcast_messages_held_total",
                        "Sends for a client with no session here, kept in history for its resume.",
                        MetricType::Counter);
    auto& writes =
        family(out, "shardcast_socket_writes_total",
               "Socket writes that carried messages; sent / writes is messages per write.",
               MetricType::Counter);
    auto& failed = family(out, "shardcast_messages_failed_total",
                          "Messages that did not reach a session, by reason.", MetricType::Counter);
    auto& frames = family(out, "shardcast_frames_received_total",
                          "Frames clients sent (their content is dropped).", MetricType::Counter);
    auto& sessions = family(out, "shardcast_sessions", "Sessions online.", MetricType::Gauge);
    auto& depth =
        family(out, "shardcast_shard_queue_depth",
               "Commands published to the shard and not yet delivered.", MetricType::Gauge);
    auto& outbound =
        family(out, "shardcast_shard_outbound_bytes",
               "Bytes queued or in flight in the shard's sessions.", MetricType::Gauge);
    auto& wakeups =
        family(out, "shardcast_shard_wakeups_total",
               "Drain turns publishers scheduled on an idle shard: wake-ups of its thread.",
               MetricType::Counter);
    auto& latency =
        family(out, "shardcast_delivery_latency_seconds",
               "Time from publish to the completed socket write.", MetricType::Histogram);
    for (std::size_t i = 0; i < shards; ++i) {
        const dispatcher::Shard& shard = dispatcher_.shard(i);
        const dispatcher::ShardStats& s = shard.stats();
        const std::string id = std::to_string(i);
        add(sent, d(s.sent.load()), {{"shard", id}});
        add(held, d(s.held.load()), {{"shard", id}});
        add(writes, d(s.writes.load()), {{"shard", id}});
        for (std::size_t r = 0; r < dispatcher::kFailureReasonCount; ++r) {
            add(failed, d(s.failed[r].load()),
                {{"shard", id}, {"reason", std::string(enum_name(FailureReason(r)))}});
        }
        add(frames, d(s.frames_received.load()), {{"shard", id}});
        add(sessions, d(s.sessions.load()), {{"shard", id}});
        add(depth, d(static_cast<std::uint64_t>(shard.queue_depth())), {{"shard", id}});
        add(outbound, d(s.outbound_bytes.load()), {{"shard", id}});
        add(wakeups, d(s.wakeups.load()), {{"shard", id}});
        latency.metric.push_back(latency_metric(shard.latency(), {{"shard", id}}));
    }

    auto& cleaned_family = family(out, "shardcast_sessions_cleaned_total",
                                  "Sessions removed, by reason.", MetricType::Counter);
    for (std::size_t r = 0; r < totals.cleaned.size(); ++r) {
        add(cleaned_family, d(totals.cleaned[r]),
            {{"reason", std::string(enum_names<RemovalReason>[r])}});
    }
    add(family(out, "shardcast_sessions_swept_total",
               "Dead sessions found by the cleanup sweep instead of by a failed read or write.",
               MetricType::Counter),
        d(totals.sweep_removed));
    add(family(out, "shardcast_connections_total", "Sessions ever attached.", MetricType::Counter),
        d(totals.connections));

    using transport::UpgradeRefusal;
    auto& handshakes =
        family(out, "shardcast_handshake_failures_total",
               "WebSocket upgrades that did not become a session, by reason.", MetricType::Counter);
    for (std::size_t r = 0; r < transport::kUpgradeRefusalCount; ++r) {
        const auto reason = UpgradeRefusal(r);
        // A shard refuses a session too once it is stopping: both are shutting_down.
        const std::uint64_t more =
            reason == UpgradeRefusal::shutting_down ? totals.refused_stopping : 0;
        add(handshakes, d(http_.refusals(reason) + more),
            {{"reason", std::string(enum_name(reason))}});
    }
    add(handshakes, d(totals.refused_too_many), {{"reason", "too_many_sessions"}});
    add(handshakes, d(totals.cleaned[enum_index(RemovalReason::handshake_failed)]),
        {{"reason", "handshake_error"}});

    auto& drops = family(out, "shardcast_http_dropped_total",
                         "Responses and upgrade hand-offs dropped because the connection failed, "
                         "by reason.",
                         MetricType::Counter);
    for (std::size_t r = 0; r < transport::kDropReasonCount; ++r) {
        const auto reason = transport::DropReason(r);
        add(drops, d(http_.drops(reason)), {{"reason", std::string(enum_name(reason))}});
    }

    add_history(out, totals);

    // Only the (route, code) pairs that occurred: most pairs never can.
    auto& requests =
        family(out, "shardcast_http_requests_total",
               "HTTP requests answered, by route and status code.", MetricType::Counter);
    for (std::size_t r = 0; r < transport::kRouteCount; ++r) {
        for (std::size_t c = 0; c < transport::HttpStats::kStatuses.size(); ++c) {
            if (const auto n = http_.count(transport::Route(r), c); n > 0) {
                const unsigned code = transport::HttpStats::kStatuses[c];
                add(requests, d(n),
                    {{"route", std::string(enum_name(transport::Route(r)))},
                     {"code", code == 0 ? "other" : std::to_string(code)}});
            }
        }
    }
    add_overloaded(out, http_);
    add(family(out, "shardcast_batch_lines_rejected_total",
               "Lines of /api/v1/batch requests that were rejected.", MetricType::Counter),
        d(http_.rejected_batch_lines()));
    add(family(out, "shardcast_accept_errors_total",
               "Connections the listener failed to accept, most often for want of a file "
               "descriptor; it pauses up to 1 s before each retry.",
               MetricType::Counter),
        d(http_.accept_errors()));

    add(family(out, "shardcast_build_info", "Version and revision of this build; always 1.",
               MetricType::Gauge),
        1, {{"version", build_.version}, {"revision", build_.revision}});
    if (!node_.empty()) {
        add(family(out, "shardcast_node_info", "This node's name (cluster.node); always 1.",
                   MetricType::Gauge),
            1, {{"node", node_}});
    }
    if (bus_ != nullptr) {
        collect_bus(out);
    }

    if (auto p = read_process_stats()) {
        add(family(out, "process_cpu_seconds_total",
                   "Total user and system CPU time spent in seconds.", MetricType::Counter),
            p->cpu_seconds);
        add(family(out, "process_resident_memory_bytes", "Resident memory size in bytes.",
                   MetricType::Gauge),
            p->resident_bytes);
        add(family(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
                   MetricType::Gauge),
            p->virtual_bytes);
        add(family(out, "process_open_fds", "Number of open file descriptors.", MetricType::Gauge),
            p->open_fds);
        add(family(out, "process_max_fds", "Maximum number of open file descriptors.",
                   MetricType::Gauge),
            p->max_fds);
        add(family(out, "process_start_time_seconds",
                   "Start time of the process since unix epoch in seconds.", MetricType::Gauge),
            p->start_time_seconds);
    }
    return out;
}

void Collector::collect_bus(std::vector<MetricFamily>& out) const {
    using transport::BusKind;
    using transport::BusReceiveError;
    using transport::BusStats;
    add(family(out, "shardcast_bus_connected", "1 while connected to NATS, else 0.",
               MetricType::Gauge),
        bus_->connected.load(std::memory_order_acquire) ? 1 : 0);
    add(family(out, "shardcast_bus_reconnects_total", "Reconnections to NATS after a loss.",
               MetricType::Counter),
        d(bus_->reconnects.load()));
    add(family(out, "shardcast_bus_subscriptions",
               "NATS subscriptions: one per client id held here, plus broadcast.",
               MetricType::Gauge),
        static_cast<double>(bus_->subscriptions.load(std::memory_order_relaxed)));
    auto& messages = family(out, "shardcast_bus_messages_total",
                            "Messages published to (out) and received from (in) NATS, by kind.",
                            MetricType::Counter);
    auto& refused = family(out, "shardcast_bus_refused_total",
                           "Messages not published because NATS was down or the outbox full.",
                           MetricType::Counter);
    for (std::size_t k = 0; k < transport::kBusKindCount; ++k) {
        const std::string kind(enum_name(BusKind(k)));
        add(messages, d(bus_->out[k].load()), {{"direction", "out"}, {"kind", kind}});
        add(messages, d(bus_->in[k].load()), {{"direction", "in"}, {"kind", kind}});
        add(refused, d(bus_->refused[k].load()), {{"kind", kind}});
    }
    add(family(out, "shardcast_bus_publish_errors_total",
               "Publishes the NATS client failed after taking them.", MetricType::Counter),
        d(bus_->publish_errors.load()));
    auto& errors =
        family(out, "shardcast_bus_receive_errors_total",
               "Messages from NATS that were not delivered, by reason.", MetricType::Counter);
    for (std::size_t e = 0; e < transport::kBusReceiveErrorCount; ++e) {
        add(errors, d(bus_->receive_errors[e].load()),
            {{"reason", std::string(enum_name(BusReceiveError(e)))}});
    }
    if (bus_->history.enabled.load(std::memory_order_relaxed)) {
        collect_history_stream(out, bus_->history);
    }
}

void Collector::collect_history_stream(std::vector<MetricFamily>& out,
                                       const transport::HistoryStreamStats& h) const {
    add(family(out, "shardcast_bus_history_available",
               "1 while the JetStream history stream answers and stores, else 0.",
               MetricType::Gauge),
        h.available.load(std::memory_order_relaxed) ? 1 : 0);
    add(family(out, "shardcast_bus_history_stored_total",
               "Messages the JetStream history stream acknowledged.", MetricType::Counter),
        d(h.stored.load()));
    add(family(out, "shardcast_bus_history_unstored_total",
               "Messages delivered live without being stored (JetStream unavailable).",
               MetricType::Counter),
        d(h.unstored.load()));
    add(family(out, "shardcast_bus_history_fetches_total",
               "Resumes looked up in the JetStream history stream.", MetricType::Counter),
        d(h.fetches.load()));
    add(family(out, "shardcast_bus_history_fetch_errors_total",
               "Resume lookups the JetStream history stream did not answer.", MetricType::Counter),
        d(h.fetch_errors.load()));
    auto& out_of_order = family(out, "shardcast_bus_history_out_of_order_total",
                                "Stored copies that arrived after a higher stream sequence: "
                                "overtaken (put back in order) or late (the window was short).",
                                MetricType::Counter);
    add(out_of_order, d(h.overtaken.load()), {{"outcome", "overtaken"}});
    add(out_of_order, d(h.late.load()), {{"outcome", "late"}});
    add(family(out, "shardcast_bus_history_epochs_total",
               "Epoch markers this node wrote to the history stream.", MetricType::Counter),
        d(h.epochs.load()));
}

std::string Collector::text() const { return prometheus::TextSerializer{}.Serialize(Collect()); }

}  // namespace shardcast::metrics
