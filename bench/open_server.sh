# Sourced by the bench scripts that compare servers: open_server PORT COMMAND [LOG] starts
# COMMAND on CPU 0, listening on 127.0.0.1:PORT and opened for loadgen (no token, no key, no
# per-address limit, quiet logs), or the Node peer for "node-ws", its stderr to LOG
# (default: none); it sets server_pid and returns once /healthz answers, or fails after 10 s.
# shellcheck shell=bash

open_server() {
    local port=$1 command=$2 log=${3:-/dev/null}
    if [[ $command == node-ws ]]; then
        [[ -d bench/peers/node-ws/node_modules ]] ||
            (cd bench/peers/node-ws && npm install --silent --no-audit --no-fund)
        taskset -c 0 node bench/peers/node-ws/server.js "$port" 127.0.0.1 2> "$log" &
    else
        # shellcheck disable=SC2086  # the command's words are meant to split
        taskset -c 0 $command --listen "127.0.0.1:$port" \
            -s auth.anonymous_clients=true -s auth.insecure_api=true \
            -s limits.max_connections_per_ip=0 -s log.summary_interval=0 -s log.level=warn \
            2> "$log" &
    fi
    # shellcheck disable=SC2034  # read by the script that sources this
    server_pid=$!
    for _ in $(seq 200); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && return 0
        sleep 0.05
    done
    return 1
}
