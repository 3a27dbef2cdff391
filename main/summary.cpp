#include "main/summary.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace shardcast {

std::string Summary::next() {
    const dispatcher::StatsTotals totals = dispatcher_.totals();
    const std::uint64_t sent = totals.sent;
    const std::uint64_t failed = totals.failed_total();
    const std::uint64_t cleaned = totals.cleaned_total();
    std::int64_t depth = 0;
    for (std::size_t i = 0; i < dispatcher_.shard_count(); ++i) {
        depth = std::max(depth, dispatcher_.shard(i).stats().queue_depth_peak.take());
    }
    const std::uint64_t rejected = http_.rejected();
    std::string line =
        fmt::format("sessions={} sent=+{} failed=+{} cleaned=+{} rejected=+{} max_queue_depth={}",
                    totals.sessions, sent - sent_, failed - failed_, cleaned - cleaned_,
                    rejected - rejected_, depth);
    sent_ = sent;
    failed_ = failed;
    cleaned_ = cleaned;
    rejected_ = rejected;
    if (bus_ != nullptr) {
        std::uint64_t out = 0, in = 0, refused = 0;
        for (std::size_t k = 0; k < transport::kBusKindCount; ++k) {
            out += bus_->out[k].load();
            in += bus_->in[k].load();
            refused += bus_->refused[k].load();
        }
        line += fmt::format(" bus={} bus_out=+{} bus_in=+{} bus_refused=+{}",
                            bus_->connected.load() ? "up" : "down", out - bus_out_, in - bus_in_,
                            refused - bus_refused_);
        bus_out_ = out;
        bus_in_ = in;
        bus_refused_ = refused;
    }
    return line;
}

}  // namespace shardcast
