#!/usr/bin/python3
"""Turns bench/run.sh's raw results (one JSON line per run) into bench/results/latest.md and
PNG plots: medians with min-max per (scenario, server), and the ratios the targets use.

    report.py RAW_JSONL RESULTS_DIR [full|quick] [COMMIT]

COMMIT is the commit the runs measured (run.sh passes the one it built); without it, HEAD.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict

FIELDS = [  # (key in loadgen's JSON, column title, format)
    ("delivered_per_s", "delivered msg/s", "{:,.0f}"),
    ("server_cpu_us_per_delivery", "server CPU µs/delivery", "{:.2f}"),
    ("deliveries_per_write", "deliveries per socket write", "{:.1f}"),
    ("wakeups_per_message", "shard wake-ups per message", "{:.2f}"),
    ("latency_p50_us", "p50 µs", "{:,.0f}"),
    ("latency_p99_us", "p99 µs", "{:,.0f}"),
    ("latency_p999_us", "p99.9 µs", "{:,.0f}"),
    ("server_rss_per_connection_bytes", "RSS B/conn", "{:,.0f}"),
    ("loadgen_max_thread_cpu_percent", "loadgen busiest thread %", "{:.0f}"),
    ("steal_percent", "steal %", "{:.0f}"),
]


def load(path):
    groups = defaultdict(list)
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            result = row["result"]
            result["deliveries_per_write"] = row.get("deliveries_per_write")
            result["wakeups_per_message"] = row.get("wakeups_per_message")
            result["lg0_deliveries_per_write"] = row.get("lg0_deliveries_per_write")
            groups[(row["scenario"], row["server"])].append(result)
    return groups


def summary(results, key):
    values = [r[key] for r in results if r.get(key) is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def cell(stat, fmt):
    if stat is None:
        return "–"
    median, low, high = stat
    if len(set([low, high])) == 1:
        return fmt.format(median)
    return f"{fmt.format(median)} ({fmt.format(low)}–{fmt.format(high)})"


def machine(commit):
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                      capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, commit {commit}"


def passing(groups, scenario, server):
    """The runs a target is judged on: those that passed loadgen's checks, or every run when
    none did (the table's passed column says so either way)."""
    results = groups.get((scenario, server), [])
    good = [r for r in results if r["passed"]]
    return good or results


def left_out(groups, scenario):
    """Names the failed runs a target leaves out, e.g. " (left out: node-ws 2 of 3 failed)"."""
    notes = []
    for server in ("shardcast", "node-ws"):
        results = groups.get((scenario, server), [])
        failed = sum(1 for r in results if not r["passed"])
        if failed and failed < len(results):
            notes.append(f"{server} {failed} of {len(results)} failed")
    return f" (left out: {', '.join(notes)})" if notes else ""


def ratio(groups, scenario, key):
    ours = summary(passing(groups, scenario, "shardcast"), key)
    peer = summary(passing(groups, scenario, "node-ws"), key)
    if not ours or not peer or peer[0] == 0:
        return None
    return ours[0] / peer[0]


def writes_needed(groups, scenario, bound):
    """Why a CPU-per-delivery target is missed, where each socket write costs more than the
    target allows several deliveries: the deliveries one write would have to carry, at this
    run's cost per write, against what it carried."""
    ours = passing(groups, scenario, "shardcast")
    cpu = summary(ours, "server_cpu_us_per_delivery")
    per_write = summary(ours, "deliveries_per_write")
    peer = summary(passing(groups, scenario, "node-ws"), "server_cpu_us_per_delivery")
    if not cpu or not per_write or not peer:
        return ""
    cost_per_write = cpu[0] * per_write[0]
    needed = cost_per_write / (peer[0] * bound)
    if needed <= per_write[0] * 1.5:
        return ""
    return (f": at this run's {cost_per_write:.1f} µs per socket write it needs at least "
            f"{needed:.0f} deliveries per write (a fuller write costs more); the workload gives "
            f"each client {per_write[0]:.1f} to merge")


def plot(results_dir, name, title, xlabel, ylabel, series, logx=False, xtics=None):
    """series: {label: [(x, median, low, high), ...]}; writes NAME.png with gnuplot, each point
    at its median with a bar from the lowest to the highest run. Without a point (a run of
    some scenarios only, run.sh --only) there is no plot, and any older one is removed."""
    png = os.path.join(results_dir, name + ".png")
    series = {label: points for label, points in series.items() if points}
    if not series:
        if os.path.exists(png):
            os.remove(png)
        return
    data = os.path.join(results_dir, f".{name}.dat")
    with open(data, "w") as f:
        for label, points in series.items():
            f.write(f'"{label}"\n')
            for point in sorted(points):
                f.write(" ".join(str(v) for v in point) + "\n")
            f.write("\n\n")
    plots = ", ".join(f"'{data}' index {i} using 1:2:3:4 with yerrorlines title columnheader(1)"
                      for i in range(len(series)))
    script = f"""set terminal pngcairo size 720,420
set output '{png}'
set title '{title}'
set xlabel '{xlabel}'
set ylabel '{ylabel}'
set key left top
set grid
set yrange [0:*]
{'set logscale x' if logx else ''}
{f'set xtics ({xtics})' if xtics else ''}
{'set offsets 0.5, 0.5, 0, 0' if xtics else ''}
plot {plots}
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(data)


def sweep(groups, prefix, key, also=None, scale=1):
    """Points from the scenarios named PREFIX<x>, plus ALSO: {scenario: x} for a scenario that
    is a point of the sweep under another name; each value times SCALE."""
    series = defaultdict(list)
    for (scenario, server), results in groups.items():
        if scenario.startswith(prefix):
            x = int(scenario[len(prefix):])
        elif also and scenario in also:
            x = also[scenario]
        else:
            continue
        stat = summary(results, key)
        if stat:
            series[server].append((x, *(v * scale for v in stat)))
    return dict(series)


def idle_clients(scenario):
    """The client count of an idle-N scenario; None for any other."""
    return int(scenario[len("idle-"):]) if scenario.startswith("idle-") else None


REGIMES = [  # (title, scenario, the least Node ÷ shardcast CPU per delivery to meet)
    ("paced fan-out, 1,000 clients, 64 B, one broadcast per request at 50/s",
     "paced-fanout-1k-50", 2.0),
    ("targeted at 10,000 msg/s, 1,000 clients, 256 B, batches of 10",
     "paced-targeted-1k-10x10", 3.5),
    ("churn: 1,000 clients, 200 reconnects/s, 20,000 msg/s targeted", "churn-1k-200", 3.3),
    ("fan-out, 10,000 clients, unpaced", "overload-fanout-10k", 27),
    ("fan-out, 1,000 clients, unpaced", "overload-fanout-1k", 60),
    ("targeted, 1,000 clients, unpaced", "overload-targeted-1k", 2.6),
    ("targeted, 1,000 clients, unpaced, publishers wait for ?ack=taken",
     "overload-targeted-1k-ack", 2.6),
]

LATENCY_REGIMES = [  # (title, scenario): p99 and throughput against the peer's
    ("targeted unpaced: p99 at or below the peer's, delivering at least as much",
     "overload-targeted-1k"),
    ("the same with ?ack=taken: p99 at or below the peer's, delivering at least as much",
     "overload-targeted-1k-ack"),
]


def regime_targets(groups):
    """The performance targets by regime: the peer's CPU per delivery over shardcast's, and
    for the unpaced targeted run, p99 latency and throughput against the peer's."""
    out = ["", "## The regimes: the peer's CPU per delivery ÷ shardcast's", "",
           "| regime | Node ÷ shardcast | target | met |", "|---|---|---|---|"]
    for title, scenario, bound in REGIMES:
        r = ratio(groups, scenario, "server_cpu_us_per_delivery")
        if r is None or r == 0:
            continue
        out.append(f"| {title} | {1 / r:.2f}{left_out(groups, scenario)} | ≥ {bound} | "
                   f"{'yes' if 1 / r >= bound else 'no'} |")
    for (scenario, server), results in sorted(groups.items()):
        clients = idle_clients(scenario)
        stat = summary(results, "server_rss_per_connection_bytes")
        if clients is not None and clients >= 10000 and server == "shardcast" and stat:
            out.append(f"| idle, {clients:,} clients: RSS per connection | {stat[0]:,.0f} B | "
                       f"≤ 512 B | {'yes' if stat[0] <= 512 else 'no'} |")
    for title, scenario in LATENCY_REGIMES:
        latency = ratio(groups, scenario, "latency_p99_us")
        rate = ratio(groups, scenario, "delivered_per_s")
        if latency is not None and rate is not None:
            met = latency <= 1 and rate >= 1
            out.append(f"| {title} | p99 {latency:.2f}× the peer's, {rate:.2f}× its msg/s | "
                       f"≤ 1, ≥ 1 | {'yes' if met else 'no'} |")
    return out


def plots(groups, results_dir):
    """Writes the plots there are points for; returns the Markdown lines that show them."""
    plot(results_dir, "throughput_vs_clients", "Fan-out, 200,000 deliveries/s offered", "clients",
         "delivered msg/s", sweep(groups, "sweep-fanout-", "delivered_per_s"), logx=True)
    plot(results_dir, "cpu_vs_clients", "Fan-out, 200,000 deliveries/s offered", "clients",
         "server CPU per delivery (µs)",
         sweep(groups, "sweep-fanout-", "server_cpu_us_per_delivery"), logx=True)
    plot(results_dir, "latency_vs_load", "Targeted 256 B, 1,000 clients", "offered msg/s",
         "p99 latency (ms)",
         sweep(groups, "sweep-rate-", "latency_p99_us", also={"targeted-1k-256B": 10000},
               scale=1e-3))
    rss = defaultdict(list)
    for (scenario, server), results in groups.items():
        stat = summary(results, "server_rss_end_bytes")
        if idle_clients(scenario) is not None and stat:
            rss[server].append((idle_clients(scenario), *(v / 2**20 for v in stat)))
    plot(results_dir, "rss_vs_connections", "Idle connections", "connections", "server RSS (MiB)",
         dict(rss))
    plot(results_dir, "shards",
         "shardcast fan-out, 1,000 clients, 200 broadcasts/s, the server on one CPU", "shards",
         "server CPU per delivery (µs)",
         sweep(groups, "shards-", "server_cpu_us_per_delivery"), xtics="1, 2")
    names = ["throughput_vs_clients", "cpu_vs_clients", "latency_vs_load",
             "rss_vs_connections", "shards"]
    titles = ["throughput vs clients", "CPU per delivery vs clients", "latency vs offered load",
              "RSS vs connections", "shards 1 vs 2"]
    shown = [f"![{t}]({n}.png)" for n, t in zip(names, titles)
             if os.path.exists(os.path.join(results_dir, n + ".png"))]
    return shown


def main(raw, results_dir, mode, commit=None):
    groups = load(raw)
    scenarios = sorted({s for s, _ in groups}, key=lambda s: (s.split("-")[0], len(s), s))
    out = ["# Benchmark results", "", f"Machine: {machine(commit)}.", ""]
    if mode == "quick":
        out += ["**Mode: quick** (`bench/run.sh --quick`: one run per server and 2 s windows). "
                "It checks the pipeline; its figures are indicative only.", ""]
    out += [
           "Produced by `bench/run.sh`: each run starts a fresh server pinned to CPU 0 and drives "
           "it with `loadgen` pinned to CPU 1; shardcast and the Node `ws` peer alternate. Cells "
           "are medians with min–max over the runs. Server CPU per delivery is the server's CPU "
           "time over the window divided by the messages delivered in it. Steal is the share "
           "of the machine's CPU time the hypervisor gave to other guests during the window: "
           "where it is high, latencies say more about the host than about the server. A run "
           "that failed loadgen's checks (loss, order, duplicates, unanswered requests) stays "
           "in the table and is marked; the targets below are judged on the runs that passed.",
           ""]
    header = "| scenario | server | runs | " + " | ".join(t for _, t, _ in FIELDS) + " | passed |"
    out += [header, "|" + "---|" * (len(FIELDS) + 4)]
    for scenario in scenarios:
        for server in ("shardcast", "node-ws"):
            results = groups.get((scenario, server))
            if not results:
                continue
            cells = [cell(summary(results, k), f) for k, _, f in FIELDS]
            failed = sum(1 for r in results if not r["passed"])
            verdict = "yes" if not failed else f"NO ({failed} of {len(results)} failed)"
            out.append(f"| {scenario} | {server} | {len(results)} | " + " | ".join(cells) +
                       f" | {verdict} |")
    out += ["", "## Against the targets", "",
            "| target | measured | met |", "|---|---|---|"]
    checks = [
        ("fan-out 1k × 64 B, paced: CPU/delivery ≤ 1/30 of the peer", "fanout-1k-64B", 1 / 30),
        ("fan-out 1k × 64 B, bursts of 50: CPU/delivery ≤ 1/30 of the peer",
         "fanout-burst-1k-64B", 1 / 30),
        ("fan-out 1k × 64 B, unpaced: CPU/delivery ≤ 1/30 of the peer", "overload-fanout-1k",
         1 / 30),
        ("fan-out 10k × 64 B, paced: CPU/delivery ≤ 1/12 of the peer", "fanout-10k-64B", 1 / 12),
        ("fan-out 10k × 64 B, bursts of 50: CPU/delivery ≤ 1/12 of the peer",
         "fanout-burst-10k-64B", 1 / 12),
        ("targeted 1k × 256 B: CPU/delivery ≤ 0.6× the peer", "targeted-1k-256B", 0.6),
    ]
    for title, scenario, bound in checks:
        r = ratio(groups, scenario, "server_cpu_us_per_delivery")
        shown = "–" if r is None else f"{r:.2f}×" if bound >= 0.5 else f"{r:.3f}× (1/{1 / r:.0f})"
        verdict = "–" if r is None else "yes" if r <= bound else "no" + writes_needed(
            groups, scenario, bound)
        out.append(f"| {title} | {shown}{left_out(groups, scenario)} | {verdict} |")
    # The opt-in write delay against the peer's paced figure (the peer has no such setting).
    peer = summary(groups.get(("fanout-1k-64B", "node-ws"), []), "server_cpu_us_per_delivery")
    for delay in ("20ms", "100ms"):
        ours = summary(groups.get((f"write-delay-{delay}-fanout-1k", "shardcast"), []),
                       "server_cpu_us_per_delivery")
        if ours and peer and peer[0] > 0:
            r = ours[0] / peer[0]
            out.append(f"| fan-out 1k × 64 B, paced, `session.write_delay={delay}` (opt-in): "
                       f"CPU/delivery ≤ 1/30 of the peer | {r:.3f}× (1/{1 / r:.0f}) | "
                       f"{'yes' if r <= 1 / 30 else 'no'} |")
    idle = summary(groups.get(("idle-10000", "shardcast"), []), "server_rss_per_connection_bytes")
    if idle:
        out.append(f"| idle 10k: ≤ 2 KiB RSS per connection | {idle[0]:,.0f} B | "
                   f"{'yes' if idle[0] <= 2048 else 'no'} |")
    hot = summary(groups.get(("targeted-hot-1k-256B", "shardcast"), []), "others_latency_p99_us")
    cold = summary(groups.get(("targeted-1k-256B", "shardcast"), []), "latency_p99_us")
    if hot and cold and cold[0] > 0:
        r = hot[0] / cold[0]
        out.append(f"| hot client (30 %): the others' p99 ≤ 2× their p99 without it | "
                   f"{r:.2f}× | {'yes' if r <= 2 else 'no'} |")
    merged = summary(groups.get(("targeted-hot-1k-256B", "shardcast"), []),
                     "lg0_deliveries_per_write")
    if merged:
        out.append(f"| hot client (30 %): its frames coalesced into fewer writes | "
                   f"{merged[0]:.1f} messages per write | {'yes' if merged[0] > 1 else 'no'} |")
    r = ratio(groups, "targeted-1k-256B", "latency_p99_us")
    if r is not None:
        out.append(f"| targeted p99 below the peer's | {r:.2f}× the peer"
                   f"{left_out(groups, 'targeted-1k-256B')} | {'yes' if r < 1 else 'no'} |")
    out += regime_targets(groups)
    shown = plots(groups, results_dir)
    if shown:
        out += ["", "## Plots", "", *shown]
    out.append("")
    with open(os.path.join(results_dir, "latest.md"), "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "full",
         sys.argv[4] if len(sys.argv) > 4 else None)
