// HttpStats: requests answered, by route and status code, plus the refused upgrades, the
// publishes refused for an overloaded shard (by limit), the rejected batch lines and the
// listener's failed accepts. Written by every HTTP thread
// (relaxed atomic adds: the API path is far from the per-message hot path) and read by
// the stats API, the log summary and the metrics scrape.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "dispatcher/enum_name.hpp"
#include "dispatcher/overload_limit.hpp"

namespace shardcast::transport {

enum class Route : unsigned char {
    websocket,
    send,
    broadcast,
    batch,
    disconnect,
    client,
    stats,
    healthz,
    readyz,
    metrics,
    unknown
};
inline constexpr std::size_t kRouteCount = enum_count<Route>;

// Why an upgrade request on /ws or /ws/{clientId} was answered without a WebSocket. The
// token refusals come first, in TokenError's order.
enum class UpgradeRefusal : unsigned char {
    missing_token,
    malformed_token,
    algorithm_refused,
    bad_signature,
    token_expired,
    token_not_yet_valid,
    wrong_audience,
    wrong_issuer,
    sub_mismatch,       // the token's sub is not the id in the path
    origin_refused,     // a browser on an origin that is neither ours nor allowed
    invalid_client_id,  // the path's id breaks the id rules
    not_upgrade,        // not a WebSocket upgrade, or a malformed one
    shutting_down,
    too_many_connections,   // limits.max_connections reached
    too_many_from_address,  // limits.max_connections_per_ip reached for the client's address
    bad_resume,             // since or epoch missing, malformed, or one without the other
};
inline constexpr std::size_t kUpgradeRefusalCount = enum_count<UpgradeRefusal>;

// Why an answer, or a connection, was dropped on the way: each is counted.
enum class DropReason : unsigned char {
    response_unwritten,  // the connection failed before a response (or a refusal) went out
    continue_unwritten,  // the connection failed before "100 Continue" went out
    handoff_failed,      // an admitted upgrade's socket could not be moved to its shard
};
inline constexpr std::size_t kDropReasonCount = enum_count<DropReason>;

class HttpStats {
public:
    // The status codes the server answers with; anything else is counted as 0 ("other").
    static constexpr std::array<unsigned, 18> kStatuses = {
        0, 101, 200, 202, 400, 401, 403, 404, 405, 408, 409, 413, 426, 429, 431, 500, 501, 503};

    void record(Route route, unsigned status) {
        std::size_t s = 0;
        for (std::size_t i = 1; i < kStatuses.size(); ++i) {
            if (kStatuses[i] == status) s = i;
        }
        counts_[static_cast<std::size_t>(route)][s].fetch_add(1, std::memory_order_relaxed);
    }
    void record_refusal(UpgradeRefusal reason) {
        refusals_[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
    }
    std::uint64_t refusals(UpgradeRefusal reason) const {
        return refusals_[static_cast<std::size_t>(reason)].load(std::memory_order_relaxed);
    }
    // A publish answered 429 because a shard was over this limit.
    void record_overloaded(dispatcher::OverloadLimit limit) {
        overloaded_[enum_index(limit)].fetch_add(1, std::memory_order_relaxed);
    }
    std::uint64_t overloaded(dispatcher::OverloadLimit limit) const {
        return overloaded_[enum_index(limit)].load(std::memory_order_relaxed);
    }
    void record_rejected_batch_lines(std::uint64_t n) {
        rejected_batch_lines_.fetch_add(n, std::memory_order_relaxed);
    }
    void record_accept_error() { accept_errors_.fetch_add(1, std::memory_order_relaxed); }
    void record_drop(DropReason reason) {
        drops_[enum_index(reason)].fetch_add(1, std::memory_order_relaxed);
    }
    std::uint64_t drops(DropReason reason) const {
        return drops_[enum_index(reason)].load(std::memory_order_relaxed);
    }

    std::uint64_t count(Route route, std::size_t status_index) const {
        return counts_[static_cast<std::size_t>(route)][status_index].load(
            std::memory_order_relaxed);
    }
    std::uint64_t rejected_batch_lines() const {
        return rejected_batch_lines_.load(std::memory_order_relaxed);
    }
    // Connections the listener failed to accept (see Listener).
    std::uint64_t accept_errors() const { return accept_errors_.load(std::memory_order_relaxed); }
    // Requests answered with a 4xx status, all routes.
    std::uint64_t rejected() const {
        std::uint64_t sum = 0;
        for (std::size_t r = 0; r < kRouteCount; ++r) {
            for (std::size_t s = 0; s < kStatuses.size(); ++s) {
                if (kStatuses[s] >= 400 && kStatuses[s] < 500) sum += count(Route(r), s);
            }
        }
        return sum;
    }

private:
    std::array<std::array<std::atomic<std::uint64_t>, kStatuses.size()>, kRouteCount> counts_{};
    std::atomic<std::uint64_t> rejected_batch_lines_{0};
    std::atomic<std::uint64_t> accept_errors_{0};
    std::array<std::atomic<std::uint64_t>, kDropReasonCount> drops_{};
    std::array<std::atomic<std::uint64_t>, kUpgradeRefusalCount> refusals_{};
    std::array<std::atomic<std::uint64_t>, dispatcher::kOverloadLimitCount> overloaded_{};
};

}  // namespace shardcast::transport
