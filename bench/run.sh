#!/usr/bin/env bash
# Runs shardcast and the Node `ws` peer (bench/peers/node-ws) in turn, A B A B A B, with the
# server pinned to CPU 0 and loadgen to CPU 1, then writes bench/results/latest.md (medians
# and min-max of the runs) and PNG plots beside it.
#
#   bench/run.sh                  the full set (about 30 minutes on 2 cores)
#   bench/run.sh --quick          fewer, shorter runs: checks the pipeline, not the figures
#   bench/run.sh --only REGEX     only the scenarios whose names match (grep -E)
#   RESULTS=DIR bench/run.sh ...  writes into DIR instead of bench/results
#
# Every run starts a fresh server. Raw results (one loadgen --json line per run) go to
# bench/results/raw.jsonl; bench/report.py turns them into the table and the plots.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/open_server.sh
source bench/open_server.sh

quick=false only=
while (( $# > 0 )); do
    case $1 in
        --quick) quick=true; shift ;;
        --only) only=$2; shift 2 ;;
        *) echo "usage: bench/run.sh [--quick] [--only REGEX]" >&2; exit 2 ;;
    esac
done
runs=3 duration=8 warmup=2
# The targeted rows vary most from run to run (the peer's cost as much as ours), and their
# targets are ratios near the noise: five runs each.
targeted_runs=5
$quick && runs=1 targeted_runs=1 duration=2 warmup=0.5

scripts/install-deps
# The commit the results describe: the one built below.
commit=$(git rev-parse --short HEAD)
cmake --preset release -G Ninja > /dev/null
cmake --build --preset release --target shardcast loadgen

results=${RESULTS:-bench/results}
raw=$results/raw.jsonl
mkdir -p "$results"
: > "$raw"

port=18480
server_pid=

start_server() {  # start_server NAME [shardcast args...]
    local name=$1; shift
    local log=$results/.server.log command=node-ws
    [[ $name == shardcast ]] && command="build/release/main/shardcast $*"
    open_server "$port" "$command" "$log" && return 0
    echo "run.sh: $name did not start" >&2; cat "$log" >&2; return 1
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}
trap stop_server EXIT

# run SCENARIO SERVER [SERVER ARGS...] -- LOADGEN ARGS...: one fresh server, one loadgen run.
run() {
    local scenario=$1 server=$2; shift 2
    [[ -z $only ]] || grep -qE -- "$only" <<< "$scenario" || return 0
    local server_args=()
    while [[ $1 != -- ]]; do server_args+=("$1"); shift; done
    shift
    start_server "$server" "${server_args[@]}"
    # lg0's own messages per write (the hot client's, when there is one), read near the end
    # of the window while its session is still open.
    local lg0=$results/.lg0.json lg0_reader=
    rm -f "$lg0"
    if [[ $server == shardcast ]]; then
        (sleep "$(python3 -c "print($warmup + 0.9 * $duration)")"
         curl -sf -o "$lg0" "http://127.0.0.1:$port/api/v1/clients/lg0") &
        lg0_reader=$!
    fi
    local line
    line=$(taskset -c 1 build/release/bench/loadgen --url "127.0.0.1:$port" --server-pid "$server_pid" \
        --duration "$duration" --warmup "$warmup" --json "$@" 2> "$results/.loadgen.log") || true
    # The design figures beside the timings, over the whole run: messages per socket write,
    # and wake-ups of a shard thread per message published.
    local per_write=null wakeups=null lg0_per_write=null
    [[ -n $lg0_reader ]] && { wait "$lg0_reader" || true; }
    if [[ -s $lg0 ]]; then
        lg0_per_write=$(python3 -c '
import json, sys
info = json.load(open(sys.argv[1]))
print(info["messages_sent"] / info["socket_writes"] if info["socket_writes"] else "null")' "$lg0")
    fi
    if [[ $server == shardcast && -n $line ]]; then
        read -r per_write wakeups < <(curl -sf "http://127.0.0.1:$port/metrics" | python3 -c '
import sys
names = ("shardcast_messages_sent_total", "shardcast_socket_writes_total",
         "shardcast_shard_wakeups_total", "shardcast_messages_published_total")
total = dict.fromkeys(names, 0.0)
for line in sys.stdin:
    name = line.split("{")[0].split(" ")[0]
    if name in total:
        total[name] += float(line.rsplit(" ", 1)[1])
def ratio(a, b):
    return total[a] / total[b] if total[b] else "null"
print(ratio("shardcast_messages_sent_total", "shardcast_socket_writes_total"),
      ratio("shardcast_shard_wakeups_total", "shardcast_messages_published_total"))') ||
            per_write=null wakeups=null
    fi
    stop_server
    if [[ -z $line ]]; then
        echo "run.sh: loadgen gave no result for $scenario on $server" >&2
        cat "$results/.loadgen.log" >&2
        return 1
    fi
    printf '{"scenario":"%s","server":"%s","deliveries_per_write":%s,"wakeups_per_message":%s,"lg0_deliveries_per_write":%s,"result":%s}\n' \
        "$scenario" "$server" "${per_write:-null}" "${wakeups:-null}" "$lg0_per_write" "$line" >> "$raw"
    printf '%s %s: ' "$scenario" "$server"
    python3 - "$line" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
cpu = r.get("server_cpu_us_per_delivery", float("nan"))
print(f"{r['delivered_per_s']:.0f} msg/s, {cpu:.2f} us/delivery, "
      f"p99 {r['latency_p99_us']:.0f} us, passed={r['passed']}")
PY
}

# alternate SCENARIO -- LOADGEN ARGS...: shardcast and the peer in turn, $runs times each.
alternate() {
    local scenario=$1; shift 2
    for _ in $(seq "$runs"); do
        run "$scenario" shardcast -- "$@"
        run "$scenario" node-ws -- "$@"
    done
}

fanout_clients=(100 1000 10000)
idle_clients=(1000 5000 10000)
targeted_rates=(5000 20000 40000)
$quick && fanout_clients=(100 1000) idle_clients=(1000) targeted_rates=(5000)
# 50,000 clients take a descriptor each in the server and in loadgen: only where the
# open-file limit can be raised that far. Below it, the largest round thousand that leaves
# a thousand descriptors spare stands in, so the curves still go past 10,000.
ulimit -n 131072 2> /dev/null || ulimit -n "$(ulimit -Hn)" 2> /dev/null || true
largest=$(( ($(ulimit -n) - 1000) / 1000 * 1000 ))
if $quick; then
    :
elif (( largest >= 50000 )); then
    fanout_clients+=(50000) idle_clients+=(50000)
else
    echo "run.sh: open-file limit $(ulimit -n): 50,000 clients skipped, $largest instead" >&2
    if (( largest > 10000 )); then
        fanout_clients+=("$largest") idle_clients+=("$largest")
    fi
fi

alternate fanout-1k-64B -- --workload fanout --clients 1000 --size 64 --rate 100 --publishers 2
alternate fanout-10k-64B -- --workload fanout --clients 10000 --size 64 --rate 10 --publishers 2
# The same fan-out with broadcasts arriving in bursts: 50 per /api/v1/batch request, so each
# client has 50 frames to receive at once, the case where frames can share a socket write.
alternate fanout-burst-1k-64B -- --workload fanout --clients 1000 --size 64 --rate 1000 --batch 50 --publishers 2
alternate fanout-burst-10k-64B -- --workload fanout --clients 10000 --size 64 --rate 100 --batch 50 --publishers 2
# targeted-1k-256B is also the 10,000 msg/s point of the rate sweep below.
runs=$targeted_runs alternate targeted-1k-256B -- --workload targeted --clients 1000 --size 256 --rate 10000 --batch 50 --publishers 4
runs=$targeted_runs alternate targeted-hot-1k-256B -- --workload targeted --clients 1000 --size 256 --rate 10000 --batch 50 --publishers 4 --hot-fraction 0.3
for n in "${idle_clients[@]}"; do
    alternate "idle-$n" -- --workload idle --clients "$n"
done
# Throughput vs clients at the same offered load for both servers: 200,000 deliveries/s.
for n in "${fanout_clients[@]}"; do
    alternate "sweep-fanout-$n" -- --workload fanout --clients "$n" --size 64 \
        --rate "$(awk -v n="$n" 'BEGIN { print 200000 / n }')" --publishers 2
done
# Unpaced broadcasts: each publisher sends the next as soon as the previous is answered.
# The peer answers after its send loop, shardcast as soon as the message is queued.
alternate overload-fanout-1k -- --workload fanout --clients 1000 --size 64 --rate 0 --publishers 4
# The regimes of the performance targets where a client gets about one message per write:
# paced pushes, targeted traffic at a fixed rate, the same under reconnects, and unpaced.
alternate paced-fanout-1k-50 -- --workload fanout --clients 1000 --size 64 --rate 50 --publishers 1
runs=$targeted_runs alternate paced-targeted-1k-10x10 -- --workload targeted --clients 1000 \
    --size 256 --rate 10000 --batch 10 --publishers 4
alternate churn-1k-200 -- --workload churn --churn-targeted --churn-rate 200 --clients 1000 \
    --size 256 --rate 20000 --batch 10 --publishers 4
alternate overload-fanout-10k -- --workload fanout --clients 10000 --size 64 --rate 0 --publishers 4
runs=$targeted_runs alternate overload-targeted-1k -- --workload targeted --clients 1000 \
    --size 256 --rate 0 --batch 10 --publishers 4
# The same with publishers that wait for ?ack=taken (the shards took their messages), as the
# peer answers after its send loop; the peer ignores the parameter.
runs=$targeted_runs alternate overload-targeted-1k-ack -- --workload targeted --clients 1000 \
    --size 256 --rate 0 --batch 10 --publishers 4 --ack-taken
for rate in "${targeted_rates[@]}"; do
    alternate "sweep-rate-$rate" -- --workload targeted --clients 1000 --size 256 --rate "$rate" --batch 50 --publishers 4
done
# Both shard counts on CPU 0: on a 2-core machine this shows what sharding costs, not how it
# scales (loadgen needs the other core).
for shards in 1 2; do
    for _ in $(seq "$runs"); do
        run "shards-$shards" shardcast --shards "$shards" -- --workload fanout --clients 1000 \
            --size 64 --rate 200 --publishers 2
    done
done
# The paced 1k fan-out again with session.write_delay, which holds each client's frames
# back so more of them share a write: what that saves in CPU, and what it adds to latency.
for delay in 20ms 100ms; do
    for _ in $(seq "$runs"); do
        run "write-delay-$delay-fanout-1k" shardcast -s "session.write_delay=$delay" -- \
            --workload fanout --clients 1000 --size 64 --rate 100 --publishers 2
    done
done

rm -f "$results/.server.log" "$results/.loadgen.log" "$results/.lg0.json"
python3 bench/report.py "$raw" "$results" "$($quick && echo quick || echo full)" "$commit"
echo "wrote $results/latest.md"
