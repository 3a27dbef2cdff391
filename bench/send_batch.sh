#!/usr/bin/env bash
# Alternates build/release/bench/send_batch's two modes, sendmsg then io_uring, RUNS times
# for each number of sends per turn, at 10,000 messages a second in all, and prints the
# medians of the sender's CPU per message (bench/micro/send_batch.cpp says what it does).
#
#   bench/send_batch.sh [RUNS]        default 3; needs liburing-dev to have built send_batch
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
binary=build/release/bench/send_batch
[[ -x $binary ]] || { echo "send_batch.sh: no $binary (apt-get install liburing-dev, rebuild)" >&2; exit 1; }
ulimit -n 4096
raw=$(mktemp)
for _ in $(seq "$runs"); do
    for per_turn in 1 10 40 256; do
        turns=$(python3 -c "print(10000 / $per_turn)")
        for mode in sendmsg uring; do
            "$binary" --mode "$mode" --per-turn "$per_turn" --turns-per-second "$turns" \
                --seconds 5 | tee -a "$raw"
        done
    done
done
python3 - "$raw" <<'PY'
import json, statistics, sys
by = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    by.setdefault((r["per_turn"], r["mode"]), []).append(r["sender_cpu_us_per_message"])
print("| sends per turn | sendmsg µs/message | io_uring µs/message | io_uring ÷ sendmsg |")
print("|---|---|---|---|")
for per_turn in sorted({k[0] for k in by}):
    a, b = by[(per_turn, "sendmsg")], by[(per_turn, "uring")]
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"| {per_turn} | {ma:.2f} ({min(a):.2f}–{max(a):.2f}) | "
          f"{mb:.2f} ({min(b):.2f}–{max(b):.2f}) | {mb / ma:.2f} |")
PY
rm -f "$raw"
