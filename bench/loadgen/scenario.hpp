// run(): one loadgen run from start to finish, on the calling (main) thread, which only
// orchestrates: it starts the Loops, posts each phase to them, samples /proc at the edges of
// the measured window (and, with --sample-interval, a Sampler thread samples it throughout),
// and evaluates what the connections recorded once the Loops have stopped.
//
// The phases: connect every client (paced); then, for the publishing workloads, warm up,
// measure for `duration`, stop publishing and wait up to drain_timeout for the last messages;
// for idle, hold the connections for `duration`. Every phase is bounded, so run() returns by
// itself.
#pragma once

#include "bench/loadgen/options.hpp"
#include "bench/loadgen/report.hpp"

namespace shardcast::loadgen {

Result run(const Options& options);

}  // namespace shardcast::loadgen
