#!/usr/bin/env bash
# Idle memory: the server's RSS per connected client, with CLIENTS WebSocket clients that
# connect (5,000 a second) and then only hold their connections. Runs the given servers in
# turn, A B A B ..., each pinned to CPU 0 with loadgen on CPU 1, and prints each run and the
# median per server and client count.
#
#   bench/idle_memory.sh RUNS "CLIENTS..." LABEL=COMMAND...
#
# COMMAND is a shardcast command line without --listen, or node-ws for the Node peer, e.g.
#   bench/idle_memory.sh 3 "10000 19000" before=/tmp/old/shardcast \
#       after=build/release/main/shardcast
# Every server is opened as bench/run.sh opens it. Raw loadgen lines go to $RAW (default: a
# temporary file, named at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/open_server.sh
source bench/open_server.sh

runs=$1 counts=$2; shift 2
loadgen=${LOADGEN:-build/release/bench/loadgen}
port=18495
raw=${RAW:-$(mktemp)}
: > "$raw"

run_one() {  # run_one LABEL COMMAND CLIENTS
    local label=$1 command=$2 clients=$3 line
    open_server "$port" "$command"
    line=$(taskset -c 1 "$loadgen" --url "127.0.0.1:$port" --server-pid "$server_pid" --json \
        --workload idle --clients "$clients" --duration 3 2> /dev/null) || true
    kill "$server_pid"; wait "$server_pid" 2> /dev/null || true
    printf '{"label":"%s","clients":%s,"result":%s}\n' "$label" "$clients" "${line:-null}" >> "$raw"
}

for _ in $(seq "$runs"); do
    for clients in $counts; do
        for spec in "$@"; do
            run_one "${spec%%=*}" "${spec#*=}" "$clients"
            tail -n 1 "$raw" | cut -c 1-160
        done
    done
done

python3 - "$raw" <<'PY'
import json, statistics, sys
by = {}
for line in open(sys.argv[1]):
    row = json.loads(line)
    by.setdefault((row["clients"], row["label"]), []).append(row["result"])
print("| clients | server | runs | RSS per connection, median (min-max) | connected |")
print("|---|---|---|---|---|")
for (clients, label), results in sorted(by.items(), key=lambda kv: kv[0][0]):
    ok = [r for r in results if r and r.get("connected") == clients]
    per = [r["server_rss_per_connection_bytes"] for r in ok]
    span = f"{statistics.median(per):,.0f} B ({min(per):,.0f}-{max(per):,.0f})" if per else "-"
    print(f"| {clients:,} | {label} | {len(results)} | {span} | {len(ok)}/{len(results)} |")
PY
echo "raw results: $raw"
