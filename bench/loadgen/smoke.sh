#!/usr/bin/env bash
# Smoke test of loadgen (ctest LoadgenSmoke): starts the shardcast binary on 127.0.0.1:0, runs
# a short fanout, targeted (paced, and unpaced with ?ack=taken) and churn scenario with 50
# clients against it, stops the server, and exits with loadgen's status (1 if any message was
# lost, reordered or duplicated, a publish was refused, or a connection closed unexpectedly).
# The server pings every 100 ms and closes a client it has not heard from in 300 ms, so the
# clients' pongs are part of the check.
#   smoke.sh <shardcast binary> <loadgen binary>
set -uo pipefail

shardcast=$1
loadgen=$2
log=$(mktemp)
# Open, as bench/run.sh runs it: the clients name their ids and the publishers bring no key.
"$shardcast" --listen 127.0.0.1:0 -s log.summary_interval=0 \
    -s auth.anonymous_clients=true -s auth.insecure_api=true \
    -s limits.max_connections_per_ip=0 \
    -s session.heartbeat_interval=100ms -s session.heartbeat_timeout=300ms 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT

# The server prints "listening on 127.0.0.1:<port>" once it is bound; give it 5 seconds.
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    [[ -n $port ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
if [[ -z $port ]]; then
    echo "smoke.sh: the server did not start" >&2
    cat "$log" >&2
    exit 1
fi

common=(--url "127.0.0.1:$port" --server-pid "$pid" --clients 50 --warmup 0.2 --duration 1)
"$loadgen" "${common[@]}" --workload fanout --rate 200 || exit $?
"$loadgen" "${common[@]}" --workload targeted --rate 2000 --batch 10 --publishers 2 || exit $?
# Unpaced, each publisher waiting for ?ack=taken: every answer must be a 200, nothing lost.
"$loadgen" "${common[@]}" --workload targeted --rate 0 --batch 10 --publishers 2 --ack-taken \
    || exit $?
"$loadgen" "${common[@]}" --workload churn --rate 200 --churn-rate 100 || exit $?
