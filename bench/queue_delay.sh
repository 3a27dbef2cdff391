#!/usr/bin/env bash
# Targeted sends, unpaced: four publishers each send the next batch of 10 as soon as the last
# is answered, to 1,000 clients, 256 B each. Runs the given servers in turn, A B C A B C ...,
# each pinned to CPU 0 with loadgen on CPU 1 as bench/run.sh pins them, and prints each run
# and the medians of delivered msg/s, p50, p99 and the share of requests answered 429.
#
#   bench/queue_delay.sh RUNS LABEL=COMMAND...
#
# COMMAND is a server command line without --listen, e.g.
#   bench/queue_delay.sh 3 "before=/tmp/old/shardcast" \
#       "20ms=build/release/main/shardcast -s publish.max_queue_delay=20ms" node-ws
# "node-ws" alone runs the Node peer (bench/peers/node-ws, npm ws installed). What follows
# " -- " in a COMMAND goes to loadgen for that server's runs, e.g.
#   "ack=build/release/main/shardcast -- --ack-taken" "node-ws=node-ws -- --ack-taken" Every
# shardcast is opened as run.sh opens it. Raw loadgen lines go to $RAW (default: a temporary
# file, named at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/open_server.sh
source bench/open_server.sh

runs=$1; shift
loadgen=${LOADGEN:-build/release/bench/loadgen}
port=18490
raw=${RAW:-$(mktemp)}
: > "$raw"
duration=8 warmup=2

run_one() {  # run_one LABEL COMMAND [-- LOADGEN FLAGS]
    local label=$1 command=${2%% -- *} flags=
    [[ $2 == *" -- "* ]] && flags=${2#* -- }
    open_server "$port" "$command"
    local line
    # shellcheck disable=SC2086  # the flags are meant to split
    line=$(taskset -c 1 "$loadgen" --url "127.0.0.1:$port" --server-pid "$server_pid" \
        --duration "$duration" --warmup "$warmup" --json --workload targeted --clients 1000 \
        --size 256 --rate 0 --batch 10 --publishers 4 $flags 2> /dev/null) || true
    kill "$server_pid"; wait "$server_pid" 2> /dev/null || true
    printf '{"label":"%s","result":%s}\n' "$label" "${line:-null}" >> "$raw"
}

for _ in $(seq "$runs"); do
    for spec in "$@"; do
        label=${spec%%=*} command=${spec#*=}
        run_one "$label" "$command"
        tail -n 1 "$raw"
    done
done

python3 - "$raw" <<'PY'
import json, statistics, sys
by = {}
for line in open(sys.argv[1]):
    row = json.loads(line)
    by.setdefault(row["label"], []).append(row["result"])
print("| server | runs | delivered msg/s | p50 ms | p99 ms | p99.9 ms | requests answered 429 | server CPU µs/delivery | passed |")
print("|---|---|---|---|---|---|---|---|---|")
for label, results in by.items():
    ok = [r for r in results if r]
    def med(key, scale=1.0):
        values = [r[key] * scale for r in ok if r.get(key) is not None]
        return statistics.median(values) if values else float("nan")
    def refused(r):
        done = r.get("requests", 0) + r.get("throttled", 0)
        return 100.0 * r.get("throttled", 0) / done if done else 0.0
    share = statistics.median([refused(r) for r in ok]) if ok else float("nan")
    passed = sum(1 for r in ok if r.get("passed"))
    print(f"| {label} | {len(ok)} | {med('delivered_per_s'):,.0f} | {med('latency_p50_us', 1e-3):.1f} "
          f"| {med('latency_p99_us', 1e-3):.1f} | {med('latency_p999_us', 1e-3):.1f} | {share:.0f} % "
          f"| {med('server_cpu_us_per_delivery'):.2f} | {passed}/{len(results)} |")
PY
echo "raw results: $raw"
