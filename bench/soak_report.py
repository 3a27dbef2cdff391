#!/usr/bin/python3
"""Judges a soak (bench/soak.sh) and writes its table and plot: OUT/soak.md and
OUT/soak_rss.png from OUT/soak.json. Exits 1 when a check failed, else 0.

    soak_report.py SOAK_JSON OUT_DIR

The checks, and why they are drawn where they are:
- Messages: loadgen's own verdict under churn (nothing lost, reordered, duplicated or left
  undelivered of what was owed to a connection; no publish refused, no connection closed by
  the server), with lost, reordered and duplicated also required to be 0 here by name.
- Sessions: after the clients have gone, the server's own counts (/metrics) show none online,
  every session it ever attached removed, and nothing left queued in any shard. These are
  exact, where RSS is not: they catch a session kept alive by a reference however small it is.
- Descriptors: after the clients have gone, exactly as many as before they came. The server
  opens its long-lived descriptors (listener, each io_context's epoll, eventfd and timerfd,
  the log) at startup, before the first count; everything it opens later belongs to a client
  or publisher connection, all of which loadgen has closed. No tolerance is needed, because
  soak.sh waits for the count to come back (the server notices a closed peer at its next read,
  and a close handshake it began ends within session.close_timeout) before reading it.
- RSS: flat over the measured window (the warm-up, in which connections, buffers and malloc's
  arenas reach their working size, is left out). Flat means the highest sample of the second
  half is at most RSS_BOUND (1.25) times the highest of the first half. RSS is the high-water
  mark of what the heap once needed, not of what it holds: malloc keeps freed memory, so a
  backlog that builds while the server waits for a CPU leaves a step that never comes down.
  On the shared 2-core machine the soak runs on, the first full run had one such wait (about
  45 s in which the server got between a tenth and two thirds of its usual CPU, with builds
  and a fuzzer on both cores) and it left a step of 11 % (10.9 to 12.1 MiB) with every
  descriptor accounted for; 10 %, the first bound tried, failed on that alone. 25 % clears
  what a wait leaves yet still catches a leak that matters: the table states the smallest
  leak per reconnect and per delivery the bound would catch (about 150 B and 8 B in ten
  minutes over the 34 MiB the server holds with its history full), and a leaked session or
  message buffer is larger. Each sample also records how long the server waited for a CPU,
  so that a step can be matched to a wait.
- Hostile clients (bench/hostile_clients.py): every kind got its own answer (408, 400, 4002,
  1008, 1009) at least once and for at least 90 % of its connections; the rest may have been
  cut short by the end of the run or refused while the server waited for a CPU. What they
  leave behind is caught by the session, descriptor and RSS checks, which count them too.
- That the soak did what it claims: at least 90 % of the reconnects the churn rate asks for,
  and at least 90 % of the offered deliveries arrived (a targeted message to a client between
  connections is accepted but has nobody to go to, as is a broadcast's copy for that client).
"""
import json
import os
import platform
import subprocess
import sys

RSS_BOUND = 1.25
DONE_SHARE = 0.90  # of the reconnects asked for, and of the deliveries offered


def mib(n):
    return n / 2**20


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def halves(samples, start, end):
    """The samples of the window [start, end], split at its midpoint."""
    middle = (start + end) / 2
    first = [s for s in samples if start <= s["t_s"] < middle]
    second = [s for s in samples if middle <= s["t_s"] <= end]
    return first, second


def slope_per_second(samples):
    """Least-squares slope of RSS over time, in bytes per second; None under two samples."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mean_t = sum(s["t_s"] for s in samples) / n
    mean_r = sum(s["rss_bytes"] for s in samples) / n
    var = sum((s["t_s"] - mean_t) ** 2 for s in samples)
    if var == 0:
        return None
    cov = sum((s["t_s"] - mean_t) * (s["rss_bytes"] - mean_r) for s in samples)
    return cov / var


def kinds(counts):
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "–"


def sessions_row(metrics, cleaned):
    """The server's own session counts once the clients have gone, from /metrics."""
    names = ("shardcast_sessions", "shardcast_connections_total",
             "shardcast_sessions_cleaned_total", "shardcast_shard_outbound_bytes",
             "shardcast_shard_queue_depth")
    if any(name not in metrics for name in names):
        return ("sessions", "the server's /metrics could not be read", "", False)
    online, attached, removed, queued, depth = (int(metrics[name]) for name in names)
    reasons = ", ".join(f"{k} {int(v):,}" for k, v in sorted(cleaned.items(), key=lambda kv: -kv[1])
                        if v)
    return ("sessions", f"{attached:,} attached, {removed:,} removed ({reasons}); once the "
            f"clients had gone {online} online, {queued} bytes and {depth} commands queued",
            "none online, every one removed, nothing queued",
            online == 0 and attached == removed and queued == 0 and depth == 0)


def starvation(samples, start, end):
    """How long the server's threads waited, runnable, for a CPU over the window, and the
    interval in which they waited most; None when the samples do not say."""
    window = [s for s in samples if start <= s["t_s"] <= end and "wait_s" in s]
    if len(window) < 2:
        return None
    waited = window[-1]["wait_s"] - window[0]["wait_s"]
    worst = max(zip(window, window[1:]),
                key=lambda p: (p[1]["wait_s"] - p[0]["wait_s"]) / (p[1]["t_s"] - p[0]["t_s"]))
    a, b = worst
    span = b["t_s"] - a["t_s"]
    return (f"{waited:.1f} s in all over the window (the server's threads together); most from "
            f"{a['t_s']:.0f} to {b['t_s']:.0f} s: {(b['wait_s'] - a['wait_s']) / span:.2f} s "
            f"per second, while it ran {(b['cpu_s'] - a['cpu_s']) / span:.2f} s per second")


def traffic_rows(soak, r):
    """What the churning clients did, and loadgen's verdict on their messages."""
    clients = soak["clients"]
    rows = [("duration", f"{r['window_s']:.0f} s measured, after {soak['warmup_s']} s of "
             f"warm-up under the same load", "", None),
            ("clients", f"{clients:,} ({r['connected']:,} connected at the start)", "", None)]
    churned = r.get("churned_handshake", 0) + r.get("churned_reset", 0)
    asked = r.get("churn_rate", 0) * (soak["warmup_s"] + r["window_s"])
    rows.append(("reconnects", f"{r['reconnects']:,} ({r.get('churned_handshake', 0):,} after "
                 f"a close handshake, {r.get('churned_reset', 0):,} by TCP reset), "
                 f"{churned / max(soak['warmup_s'] + r['window_s'], 1):.0f}/s",
                 f"≥ {DONE_SHARE:.0%} of {r.get('churn_rate', 0):.0f}/s",
                 asked > 0 and churned >= DONE_SHARE * asked))
    targeted = r["published"] - r.get("broadcasts", 0)
    rows.append(("messages published", f"{r['published']:,}: {targeted:,} targeted "
                 f"(/api/v1/send), {r.get('broadcasts', 0):,} broadcasts", "", None))
    offered = targeted + r.get("broadcasts", 0) * clients
    rows.append(("messages delivered", f"{r['received']:,} ({r['delivered_per_s']:,.0f}/s in "
                 f"the window; {r['received'] / max(offered, 1):.1%} of {offered:,} offered)",
                 f"≥ {DONE_SHARE:.0%} of offered", r["received"] >= DONE_SHARE * offered))
    wrong = (r["lost"], r["reordered"], r["duplicates"])
    rows.append(("lost / reordered / duplicated", " / ".join(f"{n:,}" for n in wrong),
                 "all 0", wrong == (0, 0, 0)))
    rows.append(("loadgen's other checks", "passed" if r["passed"] else
                 "FAILED: " + "; ".join(r["problems"]),
                 "undelivered 0, no publish refused, no connection closed by the server",
                 bool(r["passed"])))
    rows.append(("in flight at a close", f"{r.get('unconfirmed_tail', 0):,} messages answered "
                 "before their client closed, after the last message that connection received: "
                 "not owed to it", "", None))
    rows.append(("latency", f"p50 {r['latency_p50_us'] / 1e3:.1f} ms, p99 "
                 f"{r['latency_p99_us'] / 1e3:.1f} ms, max {r['latency_max_us'] / 1e3:.0f} ms",
                 "", None))
    return rows


def hostile_row(soak):
    """Whether each kind of hostile client (bench/hostile_clients.py) got its answer: at least
    once, and for DONE_SHARE of its connections (one still waiting when the soak ended, or
    refused while the server waited for a CPU, is not a failure of the server)."""
    hostile = soak.get("hostile")
    if not hostile:
        return ("hostile clients", f"no summary (exit status {soak.get('hostile_status')})",
                "", False)
    parts, ok = [], True
    for kind, k in hostile["kinds"].items():
        total = k["answered_as_expected"] + k["other"]
        others = ", ".join(f"{n} {o}" for o, n in k["outcomes"].items()
                           if not (o.lstrip("-").isdigit() and int(o) in k["expected"]))
        parts.append(f"{kind} {k['answered_as_expected']:,}/{total:,}"
                     + (f" (other: {others})" if others else ""))
        ok = ok and k["answered_as_expected"] >= 1 and \
            k["answered_as_expected"] >= DONE_SHARE * total
    return ("hostile clients", f"answered as expected / opened: {'; '.join(parts)} "
            f"({hostile['each']} of each kind at once)",
            f"each kind answered, ≥ {DONE_SHARE:.0%} as expected", ok)


def rss_rows(soak, r, samples):
    """RSS over the run, and the flatness check over the window's two halves."""
    start, end = r.get("window_start_s", 0), r.get("window_end_s", 0)
    first, second = halves(samples, start, end)
    if len(first) < 2 or len(second) < 2:
        return [("RSS, second half against first", f"{len(samples)} samples: too few",
                 "at least 2 per half", False)]
    top1 = max(s["rss_bytes"] for s in first)
    top2 = max(s["rss_bytes"] for s in second)
    window = first + second
    rows = [("RSS", f"{mib(samples[0]['rss_bytes']):.1f} MiB before the clients, "
             f"{mib(window[0]['rss_bytes']):.1f} at the window's start, "
             f"{mib(window[-1]['rss_bytes']):.1f} at its end, "
             f"{mib(max(s['rss_bytes'] for s in samples)):.1f} at most; "
             f"{mib(soak['rss_after_clients_bytes']):.1f} once the clients had gone", "", None)]
    allowed = top1 * RSS_BOUND
    # The smallest leak the bound catches: the allowance spread over the second half.
    reconnects_half = r.get("churn_rate", 0) * (end - start) / 2
    delivered_half = second[-1]["received"] - first[-1]["received"]
    catches = [f"{(allowed - top1) / reconnects_half:,.0f} B per reconnect"
               if reconnects_half > 0 else None,
               f"{(allowed - top1) / delivered_half:,.1f} B per delivery"
               if delivered_half > 0 else None]
    slope = slope_per_second(window)
    trend = "–" if slope is None else f"{mib(slope * (end - start)):+.2f} MiB"
    rows.append(("RSS, second half against first",
                 f"highest {mib(top2):.2f} MiB against {mib(top1):.2f} MiB "
                 f"({top2 / top1:.3f}×); least-squares trend {trend} over the window",
                 f"≤ {RSS_BOUND:.2f}× (catches a leak of "
                 f"{' or '.join(c for c in catches if c)})", top2 <= allowed))
    return rows


def descriptor_rows(soak, samples):
    """Descriptors before the clients came and after they had gone, in all and by kind."""
    rows = [("descriptors", f"{soak['descriptors_before']} before the clients came, "
             f"{max(s['descriptors'] for s in samples) if samples else '–'} at most, "
             f"{soak['descriptors_after']} after they had gone "
             f"({soak['descriptors_settle_s']} s after loadgen ended)",
             "after = before", soak["descriptors_after"] == soak["descriptors_before"])]
    before, after = soak["descriptor_kinds_before"], soak["descriptor_kinds_after"]
    changed = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    changed = ", ".join(f"{k} {n:+d}" for k, n in sorted(changed.items()) if n)
    rows.append(("descriptor kinds", f"before: {kinds(before)}; after: {kinds(after)}"
                 + (f"; changed: {changed}" if changed else ""), "", None))
    return rows


def machine_rows(soak, r, samples):
    """What the server spent and waited for, and what else the machine did: information."""
    rows = []
    if "server_cpu_percent" in r:
        cpu = samples[-1]["cpu_s"] - samples[0]["cpu_s"] if samples else None
        rows.append(("server CPU", f"{r['server_cpu_percent']:.1f} % of a core over the window"
                     f" ({r.get('server_cpu_us_per_delivery', 0):.1f} µs per delivery)"
                     + (f", {cpu:.0f} s in all" if cpu is not None else ""), "", None))
    starved = starvation(samples, r.get("window_start_s", 0), r.get("window_end_s", 0))
    if starved:
        rows.append(("waiting for a CPU", starved, "", None))
    if soak.get("server_stopped"):
        rows.append(("the server's counts at exit", f"`{soak['server_stopped']}`", "", None))
    if "steal_percent" in r:
        rows.append(("hypervisor steal", f"{r['steal_percent']:.1f} % of the machine's CPU "
                     "time over the window", "", None))
    return rows


def judge(soak):
    """[(what, value, check, passed or None)] rows of the table; passed None: information."""
    r = soak.get("result") or {}
    if not r:
        return [("loadgen", f"no result (exit status {soak['loadgen_status']})", "", False)]
    samples = r.get("samples", [])
    return (traffic_rows(soak, r) + [hostile_row(soak)] + rss_rows(soak, r, samples)
            + [sessions_row(soak.get("metrics_after_clients") or {},
                            soak.get("sessions_cleaned_by_reason") or {})]
            + descriptor_rows(soak, samples) + machine_rows(soak, r, samples))


def plot(soak, out_dir):
    """RSS and descriptors against time, the window and the RSS bound marked."""
    r = soak.get("result") or {}
    samples = r.get("samples", [])
    if not samples:
        return False
    data = os.path.join(out_dir, ".soak_rss.dat")
    with open(data, "w") as f:
        for s in samples:
            f.write(f"{s['t_s']:.2f} {mib(s['rss_bytes']):.3f} {s['descriptors']}\n")
    start, end = r["window_start_s"], r["window_end_s"]
    first, _ = halves(samples, start, end)
    limit = mib(max(s["rss_bytes"] for s in first)) * RSS_BOUND if first else 0
    bound = (f"set arrow from {(start + end) / 2},{limit} to {end},{limit} nohead dt 2 "
             "lc rgb 'red'" if first else "")
    # Room for the bound above the highest sample, and no empty axis past the last one.
    top = max(limit, mib(max(s["rss_bytes"] for s in samples))) * 1.1
    middle = (start + end) / 2
    shade = "behind fc rgb '#e8e8e8' fs solid noborder"
    title = (f"Soak: {soak['clients']:,} clients, {r.get('churn_rate', 0):.0f} reconnects/s, "
             "targeted + broadcast, hostile clients")
    script = f"""set terminal pngcairo size 720,420
set output '{os.path.join(out_dir, 'soak_rss.png')}'
set title '{title}'
set xlabel 'seconds'
set ylabel 'server RSS (MiB)'
set y2label 'server descriptors'
set ytics nomirror
set y2tics
set xrange [0:{samples[-1]['t_s']:.0f}]
set yrange [0:{top:.1f}]
set y2range [0:*]
set key right bottom
set grid
set object 1 rect from graph 0,graph 0 to first {start},graph 1 {shade}
set object 2 rect from first {end},graph 0 to graph 1,graph 1 {shade}
set label 1 'warm-up' at first {start / 2},graph 0.05 center
set arrow from {middle},graph 0 to {middle},graph 1 nohead dt 2 lc rgb '#606060'
{bound}
plot '{data}' using 1:2 with lines lw 2 title 'RSS', \\
     '{data}' using 1:3 axes x1y2 with lines title 'descriptors'
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(data)
    return True


def intro(soak):
    """The run's command, machine and load, and what the soak does."""
    r = soak.get("result") or {}
    settings = soak.get("server_settings") or []
    return ["# Soak", "",
            f"`{soak['command']}` on {machine()}, commit {soak['commit']}"
            + (f", server `{soak['server_version']}`" if soak.get("server_version") else "")
            + f"{', server on CPU 0 and loadgen on CPU 1' if soak['pinned'] else ', unpinned'}"
            + (f", server settings {', '.join(f'`{x}`' for x in settings)}" if settings else "")
            + ". "
            f"The machine is shared: load average {soak['load_before']} before the run and "
            f"{soak['load_after']} after it"
            + (f"; busiest processes before it: {soak['busiest_before']}"
               if soak['busiest_before'] else "") + ".", "",
            "One server, its clients churning throughout: "
            f"{soak['clients']:,} clients reconnect {r.get('churn_rate', 0):.0f} times a second, "
            "alternately after a close handshake and by a TCP reset, while 4 publishers send "
            f"{r.get('rate', 0):,.0f} targeted messages a second and a fifth broadcasts to every "
            f"client {r.get('broadcast_rate', 0):g} times a second. Beside them "
            "`bench/hostile_clients.py` keeps connections of each hostile kind open, each "
            "reopened once the server has dealt with it: idle, a trickled request head, bytes "
            "that are not HTTP, a WebSocket reader that stalls and never answers a ping, a ping "
            "flood and a message over the size limit (the server runs with a 2 s header "
            "timeout and a 3 s heartbeat with a 10 s timeout, so that these paths run often). "
            "Under churn a connection is "
            "owed every message for it whose publish began after it opened: one still open at "
            "the end must have had them all, one that closed every one up to the last it "
            "received. Those answered before it closed but after that last one are counted "
            "apart, as in flight at a close: they may have been queued when the client left. "
            "loadgen checks every connection against that. RSS and descriptors are sampled "
            f"every {soak['sample_interval_s']} s; `bench/soak_report.py` gives the reasons for "
            "each bound."]


def main(soak_path, out_dir):
    with open(soak_path) as f:
        soak = json.load(f)
    rows = judge(soak)
    passed = all(ok is not False for _, _, _, ok in rows)
    plotted = plot(soak, out_dir)
    out = intro(soak) + ["", "| measure | value | check | passed |", "|---|---|---|---|"]
    for what, value, check, ok in rows:
        verdict = "" if ok is None else "yes" if ok else "**NO**"
        out.append(f"| {what} | {value} | {check} | {verdict} |")
    out += ["", f"Result: **{'PASS' if passed else 'FAIL'}**.", ""]
    if plotted:
        out += ["![server RSS and descriptors over the soak](soak_rss.png)", "",
                "Shaded: before and after the measured window (warm-up, then the drain); the "
                "dashed line halves the window, and the dashed red line is the bound the "
                "second half's RSS must stay under.", ""]
    if soak.get("server_log_rejections"):
        out += [f"The server logged {soak['server_log_rejections']:,} refused requests, the "
                "hostile clients' garbage and trickled heads; they are left out of the lines "
                "below.", ""]
    if soak.get("server_log"):
        out += ["The server's warnings and errors:", "", "```"] + soak["server_log"] + ["```", ""]
    out += [f"Raw figures: [soak.json](soak.json).", ""]
    with open(os.path.join(out_dir, "soak.md"), "w") as f:
        f.write("\n".join(out))
    for what, value, check, ok in rows:
        if ok is False:
            print(f"soak: FAILED {what}: {value} (check: {check})", file=sys.stderr)
    print(f"soak: {'PASS' if passed else 'FAIL'}; wrote {os.path.join(out_dir, 'soak.md')}",
          file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
