#!/usr/bin/python3
"""Tests of bench/report.py (ctest BenchReport*): it is given raw results in bench/run.sh's
format, written here run by run, and must turn them into the medians, verdicts and plots
that bench/results/latest.md publishes.

    report_test.py SOURCE_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../..")
REPORT = os.path.join(SOURCE, "bench", "report.py")
PLOTS = ["throughput_vs_clients", "cpu_vs_clients", "latency_vs_load", "rss_vs_connections",
         "shards"]


def row(scenario, server, per_write=None, wakeups=None, **result):
    """One line of raw.jsonl: what run.sh writes around one loadgen --json result."""
    result.setdefault("passed", True)
    return {"scenario": scenario, "server": server, "deliveries_per_write": per_write,
            "wakeups_per_message": wakeups, "lg0_deliveries_per_write": None, "result": result}


def cpu(us, **more):
    return dict(server_cpu_us_per_delivery=us, delivered_per_s=1000.0, latency_p99_us=2000.0,
                **more)


def runs():
    rows = []
    # Paced fan-out: 2.0 us per delivery at 1.7 per write is 3.4 us per write; 1/30 of the
    # peer's 6.0 us is 0.2 us, so a write would have to carry at least 17 deliveries.
    for _ in range(3):
        rows.append(row("fanout-1k-64B", "shardcast", 1.7, **cpu(2.0)))
        rows.append(row("fanout-1k-64B", "node-ws", **cpu(6.0)))
    # Bursts: 0.1 against 4.0 is 1/40.
    rows.append(row("fanout-burst-1k-64B", "shardcast", 80.0, **cpu(0.1)))
    rows.append(row("fanout-burst-1k-64B", "node-ws", **cpu(4.0)))
    # Targeted: the median of the runs that passed (9 against 16, 0.56x) meets 0.6x, where
    # their mean (15.7) would not; one shardcast run failed, which the passed column shows
    # and the target leaves out.
    for us, passed in ((8.0, True), (9.0, True), (30.0, True), (100.0, False)):
        rows.append(row("targeted-1k-256B", "shardcast", 1.1, **cpu(us), passed=passed))
        rows.append(row("targeted-1k-256B", "node-ws", **cpu(16.0)))
    # Idle: 2,100 B per connection at 10,000 misses the 2 KiB target.
    rows.append(row("idle-1000", "shardcast", server_rss_per_connection_bytes=2500.0,
                    server_rss_end_bytes=2.5e6))
    rows.append(row("idle-1000", "node-ws", server_rss_per_connection_bytes=6000.0,
                    server_rss_end_bytes=6e6))
    rows.append(row("idle-10000", "shardcast", server_rss_per_connection_bytes=2100.0,
                    server_rss_end_bytes=21e6))
    rows.append(row("idle-10000", "node-ws", server_rss_per_connection_bytes=6500.0,
                    server_rss_end_bytes=65e6))
    for n in (100, 1000):
        rows.append(row(f"sweep-fanout-{n}", "shardcast", 1.7, **cpu(2.0)))
        rows.append(row(f"sweep-fanout-{n}", "node-ws", **cpu(6.0)))
    rows.append(row("sweep-rate-5000", "shardcast", 1.1, **cpu(8.0)))
    rows.append(row("sweep-rate-5000", "node-ws", **cpu(16.0)))
    # The regimes: paced fan-out 9.0 / 4.0 = 2.25 meets 2.0; targeted unpaced 10 / 5 = 2.0
    # misses 2.6, and its p99 (11x the peer's) misses too although it delivers more.
    for wakeups in (0.9, 1.0, 0.95):
        rows.append(row("paced-fanout-1k-50", "shardcast", 1.0, wakeups, **cpu(4.0)))
        rows.append(row("paced-fanout-1k-50", "node-ws", **cpu(9.0)))
    rows.append(row("overload-targeted-1k", "shardcast", 1.2, 0.01, server_cpu_us_per_delivery=5.0,
                    delivered_per_s=200000.0, latency_p99_us=66000.0))
    rows.append(row("overload-targeted-1k", "node-ws", server_cpu_us_per_delivery=10.0,
                    delivered_per_s=100000.0, latency_p99_us=6000.0))
    # With ?ack=taken: p99 half the peer's at 1.5x its rate meets the latency target.
    rows.append(row("overload-targeted-1k-ack", "shardcast", 1.1, 0.2,
                    server_cpu_us_per_delivery=6.0, delivered_per_s=150000.0,
                    latency_p99_us=3000.0))
    rows.append(row("overload-targeted-1k-ack", "node-ws", server_cpu_us_per_delivery=10.0,
                    delivered_per_s=100000.0, latency_p99_us=6000.0))
    for shards in (1, 2):
        rows.append(row(f"shards-{shards}", "shardcast", 1.7, **cpu(2.0 + shards / 10)))
    return rows


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        raw = os.path.join(cls.dir.name, "raw.jsonl")
        with open(raw, "w") as f:
            for r in runs():
                f.write(json.dumps(r) + "\n")
        subprocess.run(["/usr/bin/python3", REPORT, raw, cls.dir.name, "full", "abc1234"],
                       cwd=SOURCE, check=True)
        with open(os.path.join(cls.dir.name, "latest.md")) as f:
            cls.text = f.read()

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def target(self, title):
        for line in self.text.splitlines():
            if line.startswith(f"| {title}"):
                return [cell.strip() for cell in line.strip("|").split("|")]
        self.fail(f"no target row starting {title!r} in:\n{self.text}")

    def scenario(self, scenario, server):
        for line in self.text.splitlines():
            if line.startswith(f"| {scenario} | {server} |"):
                return [cell.strip() for cell in line.strip("|").split("|")]
        self.fail(f"no row for {scenario} on {server} in:\n{self.text}")

    def test_a_met_ratio_target_says_yes(self):
        self.assertEqual(self.target("fan-out 1k × 64 B, bursts of 50")[1:],
                         ["0.025× (1/40)", "yes"])

    def test_a_missed_fanout_target_names_the_deliveries_per_write_it_would_need(self):
        measured, met = self.target("fan-out 1k × 64 B, paced")[1:]
        self.assertEqual(measured, "0.333× (1/3)")
        self.assertTrue(met.startswith("no: at this run's 3.4 µs per socket write it needs at "
                                       "least 17 deliveries per write"), met)
        self.assertIn("each client 1.7 to merge", met)

    def test_targets_use_the_median_of_the_runs_that_passed(self):
        self.assertEqual(self.target("targeted 1k × 256 B")[1:],
                         ["0.56× (left out: shardcast 1 of 4 failed)", "yes"])

    def test_cells_use_the_median_of_every_run(self):
        row = self.scenario("targeted-1k-256B", "shardcast")
        self.assertEqual(row[2], "4")
        self.assertEqual(row[4], "19.50 (8.00–100.00)")

    def test_a_failed_run_marks_its_scenario_not_passed(self):
        self.assertEqual(self.scenario("targeted-1k-256B", "shardcast")[-1], "NO (1 of 4 failed)")
        self.assertEqual(self.scenario("targeted-1k-256B", "node-ws")[-1], "yes")

    def test_idle_memory_over_two_kib_misses_its_target(self):
        self.assertEqual(self.target("idle 10k")[1:], ["2,100 B", "no"])

    def test_a_regime_compares_the_peers_cpu_per_delivery_with_ours(self):
        self.assertEqual(self.target("paced fan-out, 1,000 clients")[1:], ["2.25", "≥ 2.0", "yes"])
        self.assertEqual(self.target("targeted, 1,000 clients, unpaced")[1:],
                         ["2.00", "≥ 2.6", "no"])

    def test_unpaced_targeted_latency_is_judged_with_throughput(self):
        self.assertEqual(self.target("targeted unpaced: p99")[1:],
                         ["p99 11.00× the peer's, 2.00× its msg/s", "≤ 1, ≥ 1", "no"])

    def test_acked_targeted_latency_is_judged_the_same_way(self):
        self.assertEqual(self.target("the same with ?ack=taken")[1:],
                         ["p99 0.50× the peer's, 1.50× its msg/s", "≤ 1, ≥ 1", "yes"])
        self.assertEqual(self.target("targeted, 1,000 clients, unpaced, publishers wait")[1:],
                         ["1.67", "≥ 2.6", "no"])

    def test_idle_memory_is_held_to_512_bytes(self):
        self.assertEqual(self.target("idle, 10,000 clients")[1:], ["2,100 B", "≤ 512 B", "no"])

    def test_wakeups_per_message_are_shown_for_shardcast_only(self):
        self.assertEqual(self.scenario("paced-fanout-1k-50", "shardcast")[6], "0.95 (0.90–1.00)")
        self.assertEqual(self.scenario("paced-fanout-1k-50", "node-ws")[6], "–")

    def test_the_commit_measured_is_named(self):
        self.assertIn(", commit abc1234.", self.text)

    def test_every_plot_is_a_png_and_linked(self):
        for name in PLOTS:
            with open(os.path.join(self.dir.name, name + ".png"), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", name)
            self.assertIn(f"({name}.png)", self.text)
        self.assertEqual(sorted(n for n in os.listdir(self.dir.name) if n.startswith(".")), [],
                         "the plots' data files are left behind")


if __name__ == "__main__":
    unittest.main(verbosity=2)
