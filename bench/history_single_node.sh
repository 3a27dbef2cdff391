#!/usr/bin/env bash
# What per-client history (history.enabled, on by default) costs on one node: the server
# with history.enabled=true, then false, alternating, a fresh server each run, pinned to
# CPU 0 and driven by loadgen pinned to CPU 1, as bench/run.sh does. Four scenarios:
#
#   targeted     1,000 clients, 256 B, 10,000 msg/s in batches of 10 (4 publishers); 15 s of
#                warm-up first, so every client's history holds history.size (100) messages
#                and each store evicts one, then 20 s measured
#   fanout       1,000 clients, 64 B, 50 broadcasts/s (2 publishers), 3 s warm-up, 20 s
#   idle         10,000 idle clients held 10 s: RSS per connection
#   idle-filled  10,000 idle clients, then 100 messages of 64 B to each (1,000,000 targeted
#                sends in /api/v1/batch requests of 10,000 lines, from a script on CPU 1):
#                the server's RSS before, after, and once the clients have gone
#
#   bench/history_single_node.sh [RUNS] [SCENARIO...]   RUNS of each setting (default 3)
#
# Environment: SHARDCAST, LOADGEN (default build/release/main/shardcast and
# build/release/bench/loadgen; build them with
# `cmake --build --preset release --target shardcast loadgen`), OUT (the JSON lines, one per
# run; default a new temporary file, named at the end). A table of medians with min-max is
# printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
shift || true
scenarios=("$@")
(( ${#scenarios[@]} )) || scenarios=(targeted fanout idle idle-filled)
shardcast=${SHARDCAST:-build/release/main/shardcast}
loadgen=${LOADGEN:-build/release/bench/loadgen}
out=${OUT:-$(mktemp -d)/history_single_node.jsonl}
port=18590
for binary in "$shardcast" "$loadgen"; do
    [[ -x $binary ]] || { echo "history_single_node.sh: $binary is not built" >&2; exit 1; }
done
ulimit -n 20000 2> /dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
server_pid="" loadgen_pid=""
stop() {
    [[ -n $loadgen_pid ]] && { kill "$loadgen_pid" 2> /dev/null || true; wait "$loadgen_pid" 2> /dev/null || true; }
    [[ -n $server_pid ]] && { kill "$server_pid" 2> /dev/null || true; wait "$server_pid" 2> /dev/null || true; }
    server_pid="" loadgen_pid=""
}
trap 'stop; rm -rf "$work"' EXIT

rss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$server_pid/status"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
stats() { curl -sf "http://127.0.0.1:$port/api/v1/stats" || echo null; }
# stat_ge FIELD N: totals.FIELD >= N
stat_ge() {
    python3 -c 'import json, sys
s = json.loads(sys.argv[1])
sys.exit(0 if s and s["totals"][sys.argv[2]] >= int(sys.argv[3]) else 1)' "$(stats)" "$1" "$2"
}

start_server() {  # start_server true|false
    if curl -sf -o /dev/null "http://127.0.0.1:$port/healthz"; then
        echo "history_single_node.sh: something already listens on $port" >&2; return 1
    fi
    # Open like bench/run.sh's server: loadgen's clients name their ids and its publishers
    # send no key.
    taskset -c 0 "$shardcast" --listen "127.0.0.1:$port" \
        -s auth.anonymous_clients=true -s auth.insecure_api=true \
        -s limits.max_connections_per_ip=0 -s log.summary_interval=0 -s log.level=warn \
        -s "history.enabled=$1" 2> "$work/server.log" &
    server_pid=$!
    for _ in $(seq 200); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && return 0
        sleep 0.05
    done
    echo "history_single_node.sh: the server did not start" >&2; cat "$work/server.log" >&2; return 1
}

# Sends ROUNDS messages of SIZE bytes to each of lg0..lg<CLIENTS-1>, round by round, in
# /api/v1/batch requests of LINES lines, one request in flight; a 429 is retried.
publish_filled() {  # publish_filled CLIENTS ROUNDS SIZE LINES
    taskset -c 1 python3 - "$port" "$@" <<'PY'
import http.client, json, sys, time
port, clients, rounds, size, lines = (int(x) for x in sys.argv[1:6])
conn = http.client.HTTPConnection("127.0.0.1", port)
data = "x" * size
accepted = throttled = 0
for r in range(rounds):
    for first in range(0, clients, lines):
        body = "".join(f'{{"to":"lg{i}","data":"{data}"}}\n'
                       for i in range(first, min(first + lines, clients))).encode()
        while True:
            conn.request("POST", "/api/v1/batch", body, {"Content-Type": "application/x-ndjson"})
            resp = conn.getresponse()
            answer = resp.read()
            if resp.status == 429:
                throttled += 1
                time.sleep(0.2)
                continue
            if resp.status != 202:
                sys.exit(f"batch answered {resp.status}: {answer[:200]!r}")
            accepted += json.loads(answer)["accepted"]
            break
print(json.dumps({"accepted": accepted, "throttled": throttled}))
PY
}

# Runs loadgen against a fresh server; the record gets its JSON result, the server's RSS once
# the clients have gone and /api/v1/stats then.
run_loadgen() {  # run_loadgen SCENARIO true|false LOADGEN ARGS...
    local scenario=$1 history=$2; shift 2
    start_server "$history"
    local load line
    load=$(cut -d' ' -f1 /proc/loadavg)
    line=$(taskset -c 1 "$loadgen" --url "127.0.0.1:$port" --server-pid "$server_pid" --json "$@" \
        2> "$work/loadgen.log") || true
    sleep 1  # the server notices the closes
    local rss_after stats_after
    rss_after=$(rss) stats_after=$(stats)
    stop
    if [[ -z $line ]]; then
        echo "history_single_node.sh: loadgen gave no result ($scenario, history $history)" >&2
        cat "$work/loadgen.log" >&2
        return 1
    fi
    python3 - "$scenario" "$history" "$load" "$line" "$rss_after" "$stats_after" "$*" >> "$out" <<'PY'
import json, sys
scenario, history, load, line, rss_after, stats, args = sys.argv[1:8]
stats = json.loads(stats)
print(json.dumps({
    "scenario": scenario, "history": history == "true", "load1": float(load),
    "loadgen_args": args, "result": json.loads(line), "rss_after_clients_left": int(rss_after),
    "totals_history": stats["totals"]["history"] if stats else None,
    "totals_sent": stats["totals"]["sent"] if stats else None,
    "totals_failed": stats["totals"]["failed"] if stats else None,
}))
PY
}

run_idle_filled() {  # run_idle_filled true|false
    local history=$1 clients=10000 rounds=100 size=64 lines=10000
    start_server "$history"
    local load rss0 rss_idle rss_filled rss_left t0 t1 wall0 wall1 published stats_filled
    load=$(cut -d' ' -f1 /proc/loadavg)
    rss0=$(rss)
    # Held far longer than needed: stopped once the readings are taken.
    taskset -c 1 "$loadgen" --url "127.0.0.1:$port" --workload idle --clients "$clients" \
        --duration 600 > /dev/null 2> "$work/loadgen.log" &
    loadgen_pid=$!
    for _ in $(seq 300); do stat_ge online "$clients" && break; sleep 0.1; done
    stat_ge online "$clients" || { echo "history_single_node.sh: clients did not connect" >&2; return 1; }
    sleep 2
    rss_idle=$(rss)
    t0=$(ticks) wall0=$(date +%s.%N)
    published=$(publish_filled "$clients" "$rounds" "$size" "$lines")
    for _ in $(seq 1200); do stat_ge sent $((clients * rounds)) && break; sleep 0.1; done
    t1=$(ticks) wall1=$(date +%s.%N)
    sleep 1
    rss_filled=$(rss) stats_filled=$(stats)
    kill "$loadgen_pid"; wait "$loadgen_pid" 2> /dev/null || true; loadgen_pid=""
    for _ in $(seq 100); do
        python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1])["totals"]["online"] != 0)' "$(stats)" && break
        sleep 0.1
    done
    sleep 1
    rss_left=$(rss)
    stop
    python3 - "$history" "$load" "$rss0" "$rss_idle" "$rss_filled" "$rss_left" "$t0" "$t1" \
        "$wall0" "$wall1" "$published" "$stats_filled" "$(getconf CLK_TCK)" "$clients" "$rounds" \
        "$size" >> "$out" <<'PY'
import json, sys
history, load = sys.argv[1:3]
rss0, rss_idle, rss_filled, rss_left, t0, t1 = (int(x) for x in sys.argv[3:9])
wall0, wall1 = float(sys.argv[9]), float(sys.argv[10])
published, stats = json.loads(sys.argv[11]), json.loads(sys.argv[12])
hz, clients, rounds, size = (int(x) for x in sys.argv[13:17])
sent = stats["totals"]["sent"]
print(json.dumps({
    "scenario": "idle-filled", "history": history == "true", "load1": float(load),
    "clients": clients, "messages_per_client": rounds, "size": size,
    "rss_start": rss0, "rss_idle": rss_idle, "rss_filled": rss_filled,
    "rss_after_clients_left": rss_left,
    "rss_per_connection_idle": (rss_idle - rss0) / clients,
    "publish_seconds": wall1 - wall0, "published": published,
    "server_cpu_us_per_delivery": (t1 - t0) * 1e6 / hz / sent if sent else None,
    "totals_history": stats["totals"]["history"], "totals_sent": sent,
    "totals_failed": stats["totals"]["failed"],
}))
PY
}

mkdir -p "$(dirname "$out")"
for scenario in "${scenarios[@]}"; do
    for _ in $(seq "$runs"); do
        for history in true false; do
            case $scenario in
                targeted)
                    run_loadgen targeted "$history" --workload targeted --clients 1000 --size 256 \
                        --rate 10000 --batch 10 --publishers 4 --warmup 15 --duration 20 ;;
                fanout)
                    run_loadgen fanout "$history" --workload fanout --clients 1000 --size 64 \
                        --rate 50 --publishers 2 --warmup 3 --duration 20 ;;
                idle)
                    run_loadgen idle "$history" --workload idle --clients 10000 --duration 10 ;;
                idle-filled)
                    run_idle_filled "$history" ;;
                *)
                    echo "history_single_node.sh: no scenario $scenario" >&2; exit 2 ;;
            esac
            tail -n 1 "$out" | python3 -c 'import json, sys
x = json.loads(sys.stdin.read()); r = x.get("result", x)
print(x["scenario"], "history", "on " if x["history"] else "off", "load", x["load1"],
      "cpu/delivery", round(r.get("server_cpu_us_per_delivery") or 0, 2), "passed", r.get("passed"),
      "rss after", round(x["rss_after_clients_left"] / 2**20, 1), "MiB", file=sys.stderr)'
        done
    done
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = statistics.median
def fig(values, scale=1.0, digits=2):
    v = [x * scale for x in values]
    return f"{med(v):,.{digits}f} ({min(v):,.{digits}f}–{max(v):,.{digits}f})"
MiB = 1 / 2**20
for scenario in ("targeted", "fanout"):
    rs = [x for x in rows if x["scenario"] == scenario]
    if not rs:
        continue
    print(f"\n{scenario}\n")
    print("| history | runs | server CPU per delivery (µs) | delivered msg/s | p50 (ms) | p99 (ms) "
          "| RSS at the window's end (MiB) | RSS after the clients left (MiB) | lost / dup / reordered "
          "| history messages / bytes after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for on in (True, False):
        xs = [x for x in rs if x["history"] == on]
        if not xs:
            continue
        res = [x["result"] for x in xs]
        bad = "/".join(str(sum(r[k] for r in res)) for k in ("lost", "duplicates", "reordered"))
        h = [x["totals_history"] for x in xs]
        print(f"| {'on' if on else 'off'} | {len(xs)} "
              f"| {fig(r['server_cpu_us_per_delivery'] for r in res)} "
              f"| {fig((r['delivered_per_s'] for r in res), digits=0)} "
              f"| {fig((r['latency_p50_us'] for r in res), 1e-3)} "
              f"| {fig((r['latency_p99_us'] for r in res), 1e-3)} "
              f"| {fig((r['server_rss_end_bytes'] for r in res), MiB, 1)} "
              f"| {fig((x['rss_after_clients_left'] for x in xs), MiB, 1)} | {bad} "
              f"| {med(y['messages'] for y in h):,.0f} / {med(y['bytes'] for y in h):,.0f} |")
rs = [x for x in rows if x["scenario"] == "idle"]
if rs:
    print("\nidle\n")
    print("| history | runs | RSS per connection (B) | RSS with the clients (MiB) |")
    print("|---|---|---|---|")
    for on in (True, False):
        xs = [x["result"] for x in rs if x["history"] == on]
        if xs:
            print(f"| {'on' if on else 'off'} | {len(xs)} "
                  f"| {fig((r['server_rss_per_connection_bytes'] for r in xs), digits=0)} "
                  f"| {fig((r['server_rss_end_bytes'] for r in xs), MiB, 1)} |")
rs = [x for x in rows if x["scenario"] == "idle-filled"]
if rs:
    print("\nidle-filled\n")
    print("| history | runs | RSS idle (MiB) | RSS per connection idle (B) | RSS after 100 messages each (MiB) "
          "| RSS after the clients left (MiB) | server CPU per delivery (µs) | history messages / bytes |")
    print("|---|---|---|---|---|---|---|---|")
    for on in (True, False):
        xs = [x for x in rs if x["history"] == on]
        if xs:
            h = [x["totals_history"] for x in xs]
            print(f"| {'on' if on else 'off'} | {len(xs)} | {fig((x['rss_idle'] for x in xs), MiB, 1)} "
                  f"| {fig((x['rss_per_connection_idle'] for x in xs), digits=0)} "
                  f"| {fig((x['rss_filled'] for x in xs), MiB, 1)} "
                  f"| {fig((x['rss_after_clients_left'] for x in xs), MiB, 1)} "
                  f"| {fig(x['server_cpu_us_per_delivery'] for x in xs)} "
                  f"| {med(y['messages'] for y in h):,.0f} / {med(y['bytes'] for y in h):,.0f} |")
print(f"\nraw: {sys.argv[1]}")
PY
