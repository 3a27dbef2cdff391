#include "main/summary.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace shardcast {

std::string Summary::next() {
    std::uint64_t sent = 0, failed = 0, cleaned = 0;
    std::int64_t depth = 0;
    for (std::size_t i = 0; i < dispatcher_.shard_count(); ++i) {
        auto& stats = dispatcher_.shard(i).stats();
        sent += stats.sent.load();
        failed += stats.failed_total();
        cleaned += stats.cleaned_total();
        depth = std::max(depth, stats.queue_depth_peak.take());
    }
    const std::uint64_t rejected = http_.rejected();
    std::string line =
        fmt::format("sessions={} sent=+{} failed=+{} cleaned=+{} rejected=+{} max_queue_depth={}",
                    dispatcher_.online(), sent - sent_, failed - failed_, cleaned - cleaned_,
                    rejected - rejected_, depth);
    sent_ = sent;
    failed_ = failed;
    cleaned_ = cleaned;
    rejected_ = rejected;
    return line;
}

}  // namespace shardcast
