#!/usr/bin/env bash
# What cluster history on NATS JetStream costs per message: one cluster node with
# history.enabled=true, then false, alternating, each run with a fresh nats-server (-js, a new
# store) and a fresh node, driven by loadgen with the targeted load of bench/run.sh at a fixed
# rate. The node and nats-server are pinned to CPU 0, loadgen to CPU 1. Before the measured
# run, PREFILL seconds of the same load (default: long enough for history.size, 100, messages
# per client) bring the stream to its steady state, where every store evicts the subject's
# oldest message; PREFILL=0 measures a stream that is still filling.
#
#   bench/cluster_history.sh [RUNS]     RUNS of each setting (default 5), about 30 s a run
#
# Environment: SHARDCAST, LOADGEN (default build/release/main/shardcast and
# build/release/bench/loadgen; build them with
# `cmake --build --preset release --target shardcast loadgen`), RATE (5000), CLIENTS (1000),
# DURATION (20), WARMUP (2), OUT (bench/results/cluster_history.jsonl), NATS_CPUS (the CPUs
# nats-server is pinned to, 0), NODE_ARGS (more node options, e.g.
# "-s cluster.history.storage=memory").
# Each run appends one JSON line to OUT; a table of medians is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
shardcast=${SHARDCAST:-build/release/main/shardcast}
loadgen=${LOADGEN:-build/release/bench/loadgen}
rate=${RATE:-5000} clients=${CLIENTS:-1000} duration=${DURATION:-20} warmup=${WARMUP:-2}
prefill=${PREFILL:-$(python3 -c "print(round(1.25 * 100 * $clients / $rate))")}
out=${OUT:-bench/results/cluster_history.jsonl}
nats_cpus=${NATS_CPUS:-0}
read -r -a node_args <<< "${NODE_ARGS:-}"
nats_port=14722 port=18580
for binary in "$shardcast" "$loadgen"; do
    [[ -x $binary ]] || { echo "cluster_history.sh: $binary is not built" >&2; exit 1; }
done
command -v nats-server > /dev/null || { echo "cluster_history.sh: no nats-server" >&2; exit 1; }

work=$(mktemp -d)
nats_pid="" node_pid=""
stop() {
    [[ -n $node_pid ]] && { kill "$node_pid" 2> /dev/null || true; wait "$node_pid" 2> /dev/null || true; }
    [[ -n $nats_pid ]] && { kill "$nats_pid" 2> /dev/null || true; wait "$nats_pid" 2> /dev/null || true; }
    node_pid="" nats_pid=""
}
trap 'stop; rm -rf "$work"' EXIT

# utime + stime of a process, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run() {  # run true|false
    local history=$1
    rm -rf "$work/js"
    taskset -c "$nats_cpus" nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/js" > "$work/nats.log" 2>&1 &
    nats_pid=$!
    for _ in $(seq 100); do
        (: > "/dev/tcp/127.0.0.1/$nats_port") 2> /dev/null && break
        sleep 0.05
    done
    # Open like bench/run.sh's server: loadgen's clients name their ids and its publishers
    # send no key. One node, so with history off nothing goes over NATS but the claims.
    taskset -c 0 "$shardcast" --listen "127.0.0.1:$port" \
        -s auth.anonymous_clients=true -s auth.insecure_api=true \
        -s limits.max_connections_per_ip=0 -s log.summary_interval=0 -s log.level=warn \
        -s "cluster.nats.url=nats://127.0.0.1:$nats_port" -s cluster.node=n1 \
        -s "history.enabled=$history" "${node_args[@]}" 2> "$work/node.log" &
    node_pid=$!
    local stats=null
    for _ in $(seq 200); do
        stats=$(curl -sf "http://127.0.0.1:$port/api/v1/stats") &&
            python3 -c 'import json, sys
c = json.loads(sys.argv[1])["cluster"]
sys.exit(0 if c["bus_connected"] and (not c["history"]["enabled"] or c["history"]["available"]) else 1)' "$stats" && break
        sleep 0.05
    done
    local load nats0 node0 nats1 node1 line
    if (( prefill > 0 )); then
        taskset -c 1 "$loadgen" --url "127.0.0.1:$port" --duration "$prefill" --warmup 0 \
            --workload targeted --clients "$clients" --size 256 --rate "$rate" --batch 50 \
            --publishers 4 > /dev/null 2> "$work/prefill.log" ||
            { echo "cluster_history.sh: prefill failed" >&2; cat "$work/prefill.log" >&2; }
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    nats0=$(ticks "$nats_pid") node0=$(ticks "$node_pid")
    line=$(taskset -c 1 "$loadgen" --url "127.0.0.1:$port" --server-pid "$node_pid" \
        --duration "$duration" --warmup "$warmup" --json --workload targeted \
        --clients "$clients" --size 256 --rate "$rate" --batch 50 --publishers 4 \
        2> "$work/loadgen.log") || true
    nats1=$(ticks "$nats_pid") node1=$(ticks "$node_pid")
    stats=$(curl -sf "http://127.0.0.1:$port/api/v1/stats" || echo null)
    stop
    if [[ -z $line ]]; then
        echo "cluster_history.sh: loadgen gave no result (history $history)" >&2
        cat "$work/loadgen.log" >&2
        return 1
    fi
    # Log lines beyond the two warnings the open configuration always logs.
    local node_log nats_log
    node_log=$({ grep -v -e 'auth.insecure_api is true' -e 'auth.anonymous_clients is true' \
        "$work/node.log" || true; } | head -c 2000 | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))')
    nats_log=$({ grep -E '\[(ERR|WRN|FTL)\]' "$work/nats.log" || true; } | head -c 2000 |
        python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))')
    python3 - "$history" "$line" "$stats" "$load" "$(getconf CLK_TCK)" \
        "$nats0" "$nats1" "$node0" "$node1" "$node_log" "$nats_log" "$nats_cpus" \
        "${NODE_ARGS:-}" "$prefill" >> "$out" <<'PY'
import json, sys
history, line, stats, load, hz = sys.argv[1:6]
nats0, nats1, node0, node1 = (int(x) for x in sys.argv[6:10])
r, stats, hz = json.loads(line), json.loads(stats), int(hz)
received = r["received"]
cluster = stats["cluster"] if stats else {}
print(json.dumps({
    "history": history == "true", "load1": float(load), "result": r,
    "nats_cpus": sys.argv[12], "node_args": sys.argv[13], "prefill_s": float(sys.argv[14]),
    # Over the whole loadgen run (connect, warm-up, window, drain), per message received.
    "nats_us_per_message": (nats1 - nats0) * 1e6 / hz / received if received else None,
    "node_us_per_message_run": (node1 - node0) * 1e6 / hz / received if received else None,
    "history_stats": cluster.get("history"), "publish_errors": cluster.get("publish_errors"),
    "failed": stats["totals"]["failed"] if stats else None,
    "node_log": json.loads(sys.argv[10]), "nats_log": json.loads(sys.argv[11]),
}))
h = cluster.get("history") or {}
print(f"history {history:5}: node {r['server_cpu_us_per_delivery']:.2f} us, nats "
      f"{(nats1 - nats0) * 1e6 / hz / max(received, 1):.2f} us per message; p50 "
      f"{r['latency_p50_us'] / 1000:.1f} ms, p99 {r['latency_p99_us'] / 1000:.1f} ms; lost "
      f"{r['lost']}, duplicates {r['duplicates']}, reordered {r['reordered']}; stored "
      f"{h.get('stored')}, unstored {h.get('unstored')}, fetch_errors {h.get('fetch_errors')}; "
      f"load {load}; passed {r['passed']}", file=sys.stderr)
PY
}

mkdir -p "$(dirname "$out")"
for _ in $(seq "$runs"); do
    run true
    run false
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = statistics.median
print("| history | runs | node CPU per message | nats-server CPU per message | p50 | p99 | lost / dup / reordered |")
print("|---|---|---|---|---|---|---|")
for on in (True, False):
    rs = [x for x in rows if x["history"] == on]
    if not rs:
        continue
    res = [x["result"] for x in rs]
    bad = sum(r["lost"] + r["duplicates"] + r["reordered"] for r in res)
    print(f"| {'on' if on else 'off'} | {len(rs)} | {med(r['server_cpu_us_per_delivery'] for r in res):.2f} µs "
          f"| {med(x['nats_us_per_message'] for x in rs):.2f} µs "
          f"| {med(r['latency_p50_us'] for r in res) / 1000:.1f} ms "
          f"| {med(r['latency_p99_us'] for r in res) / 1000:.1f} ms | {bad} |")
PY
