#!/usr/bin/env bash
# The soak: one shardcast server under churn for SECONDS (default 600). 1,000 clients
# reconnect 200 times a second, alternately after a close handshake and by a TCP reset, while
# 4 publishers send 2,000 targeted messages a second (/api/v1/send) and a fifth broadcasts to
# every client twice a second, all after a warm-up under the same load (below). Beside them
# bench/hostile_clients.py keeps 2 connections of each hostile kind open for the whole run,
# each reopened once the server has dealt with it: idle, a trickled request head, bytes that
# are not HTTP, a WebSocket reader that stalls and never answers a ping, a ping flood and a
# message over the size limit. Each must get its own answer (408, 400, 4002, 1008, 1009).
# The server runs with a 2 s header timeout and a 3 s heartbeat with a 10 s timeout, so that
# those paths run hundreds of times rather than a few. It shows that nothing piles up:
#   - no message is lost, reordered or duplicated (loadgen's checks under churn)
#   - every hostile connection is answered as its kind must be
#   - the server's RSS stays flat (sampled every SECONDS/120 s, at least every second, plotted)
#   - once the clients have gone, its sessions have all ended (its /metrics) and its
#     descriptors are back where they started
# and writes OUT/soak.md (the table), OUT/soak_rss.png and OUT/soak.json (everything raw).
# bench/soak_report.py holds the thresholds and why they are what they are.
#
#   bench/soak.sh [options] [SECONDS]
#     --server BIN    the shardcast binary (default build/release/main/shardcast, built with
#                     the release preset if missing)
#     --loadgen BIN   the loadgen binary (default build/release/bench/loadgen, likewise)
#     --out DIR       where the results go (default bench/results)
#     --clients N     WebSocket clients (default 1000)
#     --set KEY=VALUE a server setting (its -s), e.g. --set history.size=4; repeatable
#     --no-pin        leave both processes to the scheduler; by default the server runs on
#                     CPU 0 and loadgen on CPU 1, as bench/run.sh pins them
#
# Exit status: 0 when every check passed, 1 when one failed, 2 on a usage error or when the
# server did not start.
set -euo pipefail
cd "$(dirname "$0")/.."
invocation="bench/soak.sh${*:+ $*}"
# The commit the server's sources are at as the run begins, marked when they differ from it.
commit=$(git rev-parse --short HEAD 2> /dev/null || echo unknown)
[[ -n $(git status --porcelain -- dispatcher transport main metrics 2> /dev/null) ]] &&
    commit+=" (server sources modified)"

server=
loadgen=
out=bench/results
clients=1000
pin=true
seconds=600
settings=()
rate=2000           # targeted messages per second, over 4 publishers
broadcast_rate=2    # broadcasts per second, from a fifth
history_size=100    # the server's default history.size
history=true
while (($#)); do
    case $1 in
        --set)
            settings+=(-s "$2")
            case $2 in
                history.size=*) history_size=${2#*=} ;;
                history.enabled=false) history=false ;;
            esac
            shift 2 ;;
        --server) server=$2; shift 2 ;;
        --loadgen) loadgen=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --no-pin) pin=false; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        -*) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
        *) seconds=$1; shift ;;
    esac
done
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 10)); then
    echo "soak.sh: SECONDS must be a whole number of at least 10, not '$seconds'" >&2
    exit 2
fi

if [[ -z $server || -z $loadgen ]]; then
    server=${server:-build/release/main/shardcast}
    loadgen=${loadgen:-build/release/bench/loadgen}
    if [[ ! -x $server || ! -x $loadgen ]]; then
        cmake --preset release -G Ninja > /dev/null
        cmake --build --preset release --target shardcast loadgen
    fi
fi
mkdir -p "$out"
# What the binary says it was built from (the working tree may have moved on since).
server_version=$("$server" --version 2>&1 | head -n 1) || server_version=unknown

# The measured window is SECONDS; publishing and churn begin a warm-up earlier, which the
# RSS check leaves out: connections, buffers and malloc's arenas reach their working size,
# and the server's history fills. It keeps history.size messages per client id and as many
# broadcasts per shard, a bounded store whose filling is not a leak: at 2 messages per id a
# second the default 100 take 50 s on average and the last of 1,000 ids about 65 s, so the
# warm-up adds 1.5 times the average.
warmup=$((seconds / 20 < 2 ? 2 : seconds / 20 > 30 ? 30 : seconds / 20))
if $history; then
    warmup=$(awk -v w="$warmup" -v n="$history_size" -v c="$clients" -v r="$rate" \
        -v b="$broadcast_rate" 'BEGIN { per = c / r > 1 / b ? c / r : 1 / b
                                        printf "%d", w + 1.5 * n * per + 0.999 }')
fi
interval=$(awk -v s="$seconds" 'BEGIN { i = s / 120; print (i < 1 ? 1 : i) }')
server_cpu=() loadgen_cpu=()
if $pin && (($(nproc) >= 2)); then
    server_cpu=(taskset -c 0) loadgen_cpu=(taskset -c 1)
fi

# The descriptors of a process by kind: socket, pipe, anon_inode:[eventpoll], /dev/null, file
# (any other path: the log, a redirected stdout).
descriptor_kinds() {
    local fd
    for fd in /proc/"$1"/fd/*; do
        readlink "$fd" 2> /dev/null || true
    done | sed -e 's/:\[[0-9]*\]$//' -e '\|^/dev/|!s|^/.*|file|' | sort | uniq -c |
        awk '{ printf "%s%s:%s", sep, $2, $1; sep = "," }'
}
count_descriptors() { find /proc/"$1"/fd -mindepth 1 -maxdepth 1 2> /dev/null | wc -l; }
rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' /proc/"$1"/status 2> /dev/null || echo 0; }

log=$out/.soak-server.log
# Open, as bench/run.sh runs it for loadgen: the clients name their ids in the URL, all from
# 127.0.0.1, and the publishers send no key.
"${server_cpu[@]}" "$server" --listen 127.0.0.1:0 -s log.summary_interval=0 \
    -s auth.anonymous_clients=true -s auth.insecure_api=true \
    -s limits.max_connections_per_ip=0 -s http.header_timeout=2s \
    -s session.heartbeat_interval=3s -s session.heartbeat_timeout=10s "${settings[@]}" \
    2> "$log" &
pid=$!
trap 'kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true' EXIT

port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    [[ -n $port ]] && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.05
done
if [[ -z $port ]]; then
    echo "soak.sh: the server did not start" >&2
    cat "$log" >&2
    exit 2
fi

# The machine is shared: what else was running goes into the results.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# top's second pass measures its one-second delay; its first covers the processes' lifetime.
busiest=$(top -b -n 2 -d 1 -w 200 | awk '/^top -/ { pass++ }
    pass == 2 && $1 ~ /^[0-9]+$/ && $9 >= 10 { printf "%s%s %s%%", sep, $12, $9; sep = ", " }')
fds_before=$(count_descriptors "$pid")
kinds_before=$(descriptor_kinds "$pid")

echo "soak.sh: $seconds s (+$warmup s warm-up), $clients clients, server pid $pid on port $port" >&2
result=$out/.soak-loadgen.json
hostile=$out/.soak-hostile.json
: > "$hostile"
# It stops when loadgen has; the bound only ends it should loadgen hang.
"${loadgen_cpu[@]}" python3 bench/hostile_clients.py --port "$port" --out "$hostile" \
    --seconds $((warmup + seconds + 600)) &
hostile_pid=$!
trap 'kill "$hostile_pid" "$pid" 2> /dev/null || true; wait 2> /dev/null || true' EXIT
loadgen_status=0
"${loadgen_cpu[@]}" "$loadgen" --url "127.0.0.1:$port" --server-pid "$pid" --json \
    --workload soak --clients "$clients" --publishers 4 --rate "$rate" \
    --broadcast-rate "$broadcast_rate" \
    --churn-rate 200 --churn-close alternate --warmup "$warmup" --duration "$seconds" \
    --sample-interval "$interval" > "$result" || loadgen_status=$?
kill -TERM "$hostile_pid" 2> /dev/null || true
hostile_status=0
wait "$hostile_pid" || hostile_status=$?

# loadgen has closed every client; the server notices each at its next read. Its descriptors
# are back once they are no more than at the start; 10 s bounds the wait (a close handshake
# the server began takes at most session.close_timeout, 2 s).
settle_start=$(date +%s.%N)
fds_after=$(count_descriptors "$pid")
for _ in $(seq 100); do
    ((fds_after <= fds_before)) && break
    sleep 0.1
    fds_after=$(count_descriptors "$pid")
done
settle_s=$(awk -v a="$settle_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
kinds_after=$(descriptor_kinds "$pid")
rss_after=$(rss_bytes "$pid")
# The server's own counts, read after the descriptors (the scrape is a connection of its own).
metrics=$out/.soak-metrics.txt
curl -sf --max-time 5 -o "$metrics" "http://127.0.0.1:$port/metrics" || : > "$metrics"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# A server that died during the run fails the checks above; its exit status is recorded.
kill "$pid" 2> /dev/null || true
server_status=0
wait "$pid" || server_status=$?
trap - EXIT

pinned=false
((${#server_cpu[@]})) && pinned=true
python3 - "$out/soak.json" "$result" "$log" "$metrics" "$hostile" <<PY
import json, sys
out_path, result_path, log_path, metrics_path, hostile_path = sys.argv[1:6]
def read_json(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip() or "null")
    except (OSError, ValueError):
        return None
result = read_json(result_path)
hostile = read_json(hostile_path)
with open(log_path, errors="replace") as f:
    server_log = f.read().splitlines()
listening = next((i for i, line in enumerate(server_log) if " listening on " in line), -1)

# Each family summed over its labels (shards, reasons), and the removals by reason.
metrics, cleaned = {}, {}
with open(metrics_path) as f:
    for line in f:
        if line.startswith("shardcast_") or line.startswith("process_"):
            name = line.split("{")[0].split(" ")[0]
            value = float(line.rsplit(" ", 1)[1])
            metrics[name] = metrics.get(name, 0) + value
            if name == "shardcast_sessions_cleaned_total" and 'reason="' in line:
                reason = line.split('reason="', 1)[1].split('"', 1)[0]
                cleaned[reason] = cleaned.get(reason, 0) + value

def kinds(text):
    return {k: int(v) for k, v in (p.rsplit(":", 1) for p in text.split(",") if p)}

soak = {
    "command": """$invocation""",
    "commit": "$commit",
    "server_version": "$server_version",
    "seconds": $seconds,
    "warmup_s": $warmup,
    "sample_interval_s": $interval,
    "clients": $clients,
    "server_settings": """${settings[*]:-}""".replace("-s ", "").split(),
    "pinned": "$pinned" == "true",
    "load_before": "$load_before",
    "load_after": "$load_after",
    "busiest_before": """$busiest""",
    "descriptors_before": $fds_before,
    "descriptors_after": $fds_after,
    "descriptor_kinds_before": kinds("$kinds_before"),
    "descriptor_kinds_after": kinds("$kinds_after"),
    "descriptors_settle_s": $settle_s,
    "rss_after_clients_bytes": ${rss_after:-0},
    "metrics_after_clients": metrics,
    "sessions_cleaned_by_reason": cleaned,
    "loadgen_status": $loadgen_status,
    "hostile_status": $hostile_status,
    "hostile": hostile,
    "server_status": $server_status,
    # What the server logged once it listened, info lines and the hostile clients' refusals
    # left out: warnings and errors.
    "server_log": [line for line in server_log[listening + 1:]
                   if line.split(" ")[1:2] != ["info"] and " rejected " not in line][-50:],
    "server_log_rejections": sum(" rejected " in line for line in server_log),
    # Its own counts since it started, from the line it logs as it stops.
    "server_stopped": next((line.split(" stopped: ", 1)[1] for line in server_log
                            if " stopped: " in line), None),
    "result": result,
}
with open(out_path, "w") as f:
    json.dump(soak, f, indent=1)
    f.write("\n")
PY
rm -f "$result" "$log" "$metrics" "$hostile"
python3 bench/soak_report.py "$out/soak.json" "$out"
