#!/usr/bin/python3
"""Tests of bench/soak_report.py (ctest SoakReport*): it is given soak.json files in
bench/soak.sh's format, made up here, and must pass a clean soak and fail each kind of leak
or loss, with its table and plot written either way. And of how bench/hostile_clients.py
reads the server's close codes.

    soak_report_test.py SOURCE_DIR
"""
import copy
import json
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
REPORT = os.path.join(SOURCE, "bench", "soak_report.py")
sys.path.insert(0, os.path.join(SOURCE, "bench"))
sys.dont_write_bytecode = True  # nothing left in the source tree
import hostile_clients  # noqa: E402 (found through SOURCE)
MIB = 2**20


def samples(rss_mib):
    """One sample a second from t = 0; the window is [2, 2 + len - 3]."""
    return [{"t_s": float(t), "rss_bytes": int(rss * MIB), "descriptors": 1017 if t else 17,
             "cpu_s": t * 0.2, "wait_s": t * 0.01, "open": 1000 if t else 0,
             "received": t * 4000}
            for t, rss in enumerate(rss_mib)]


def clean():
    """A 20-second soak that passed: flat RSS, descriptors back, nothing lost."""
    rss = [8.0] + [10.5] * 23
    return {
        "command": "bench/soak.sh 20", "commit": "abc1234", "seconds": 20, "warmup_s": 2,
        "sample_interval_s": 1, "clients": 1000, "pinned": False,
        "load_before": "1.00 1.00 1.00", "load_after": "1.00 1.00 1.00",
        "busiest_before": "fuzzer 99%", "descriptors_before": 17, "descriptors_after": 17,
        "descriptor_kinds_before": {"socket": 1, "anon_inode:[eventpoll]": 3},
        "descriptor_kinds_after": {"socket": 1, "anon_inode:[eventpoll]": 3},
        "descriptors_settle_s": 0.1, "rss_after_clients_bytes": int(10.5 * MIB),
        "metrics_after_clients": {
            "shardcast_sessions": 0, "shardcast_connections_total": 5400,
            "shardcast_sessions_cleaned_total": 5400, "shardcast_shard_outbound_bytes": 0,
            "shardcast_shard_queue_depth": 0},
        "sessions_cleaned_by_reason": {"closed_by_client": 3200, "io_error": 2200},
        "loadgen_status": 0, "server_status": 0, "server_log": [],
        "hostile_status": 0, "hostile": {"each": 2, "kinds": {
            "garbage": {"outcomes": {"400": 90}, "expected": [400],
                        "answered_as_expected": 90, "other": 0},
            "stalled": {"outcomes": {"4002": 9, "unanswered": 1}, "expected": [0, 4002],
                        "answered_as_expected": 9, "other": 1},
            "ping_flood": {"outcomes": {"1008": 20}, "expected": [1008],
                           "answered_as_expected": 20, "other": 0}}},
        "server_stopped": "sessions=0 sent=+88000", "result": {
            "connected": 1000, "window_s": 20.0, "window_start_s": 2.0, "window_end_s": 22.0,
            "churn_rate": 200.0, "reconnects": 4400, "churned_handshake": 2200,
            "churned_reset": 2200, "published": 44044, "broadcasts": 44, "received": 87900,
            "delivered_per_s": 4000.0, "lost": 0, "reordered": 0, "duplicates": 0,
            "unconfirmed_tail": 20, "latency_p50_us": 3000.0, "latency_p99_us": 40000.0,
            "latency_max_us": 100000.0, "server_cpu_percent": 16.0,
            "server_cpu_us_per_delivery": 40.0, "steal_percent": 0.0, "passed": True,
            "problems": [], "samples": samples(rss)}}


class SoakReportTest(unittest.TestCase):
    def judge(self, soak):
        with tempfile.TemporaryDirectory() as out:
            path = os.path.join(out, "soak.json")
            with open(path, "w") as f:
                json.dump(soak, f)
            run = subprocess.run([sys.executable, REPORT, path, out], capture_output=True,
                                 text=True)
            with open(os.path.join(out, "soak.md")) as f:
                table = f.read()
            png = os.path.join(out, "soak_rss.png")
            plotted = os.path.exists(png) and os.path.getsize(png) > 0
        return run.returncode, table, run.stderr, plotted

    def test_PassesACleanSoakAndWritesItsTableAndPlot(self):
        status, table, _, plotted = self.judge(clean())
        self.assertEqual(status, 0, table)
        self.assertIn("Result: **PASS**", table)
        self.assertIn("| lost / reordered / duplicated | 0 / 0 / 0 | all 0 | yes |", table)
        self.assertIn("`bench/soak.sh 20`", table)
        self.assertIn("| sessions | 5,400 attached, 5,400 removed", table)
        self.assertIn("| waiting for a CPU | 0.2 s in all", table)
        self.assertTrue(plotted)

    def test_FailsWhenRssGrowsOverTheSecondHalf(self):
        soak = clean()
        # 10.5 MiB through the first half, then 13.5 MiB: 1.29 times the first half's peak.
        soak["result"]["samples"] = samples([8.0] + [10.5] * 12 + [13.5] * 11)
        status, table, err, _ = self.judge(soak)
        self.assertEqual(status, 1)
        self.assertIn("RSS, second half against first", err)
        self.assertIn("**NO**", table)

    def test_ToleratesRssGrowthWithinTheBound(self):
        soak = clean()
        soak["result"]["samples"] = samples([8.0] + [10.5] * 12 + [12.5] * 11)
        self.assertEqual(self.judge(soak)[0], 0)

    def test_LeavesTheWarmUpOutOfTheRssCheck(self):
        soak = clean()
        # Growth before the window opens at 2 s is the working set being reached.
        soak["result"]["samples"] = samples([1.0, 5.0] + [10.5] * 22)
        self.assertEqual(self.judge(soak)[0], 0)

    def test_FailsWhenDescriptorsDoNotComeBack(self):
        soak = clean()
        soak["descriptors_after"] = 18
        soak["descriptor_kinds_after"] = {"socket": 2, "anon_inode:[eventpoll]": 3}
        status, table, err, _ = self.judge(soak)
        self.assertEqual(status, 1)
        self.assertIn("descriptors", err)
        self.assertIn("changed: socket +1", table)

    def test_ReportsEachHostileKindAndItsOtherOutcomes(self):
        status, table, _, _ = self.judge(clean())
        self.assertEqual(status, 0, table)
        self.assertIn("garbage 90/90; stalled 9/10 (other: 1 unanswered); ping_flood 20/20",
                      table)

    def test_FailsWhenAHostileKindGetsTheWrongAnswer(self):
        soak = clean()
        # A ping flood answered with a normal close: the limit did not act.
        soak["hostile"]["kinds"]["ping_flood"] = {
            "outcomes": {"1000": 20}, "expected": [1008], "answered_as_expected": 0, "other": 20}
        status, table, err, _ = self.judge(soak)
        self.assertEqual(status, 1)
        self.assertIn("hostile clients", err)
        self.assertIn("ping_flood 0/20 (other: 20 1000)", table)

    def test_FailsWhenFewHostileConnectionsAreAnswered(self):
        soak = clean()
        # Answered once, but most waited out their deadline: above 10 % unanswered.
        soak["hostile"]["kinds"]["stalled"] = {
            "outcomes": {"4002": 1, "unanswered": 3}, "expected": [0, 4002],
            "answered_as_expected": 1, "other": 3}
        self.assertEqual(self.judge(soak)[0], 1)

    def test_FailsWithoutTheHostileClientsSummary(self):
        soak = clean()
        soak["hostile"] = None
        soak["hostile_status"] = 1
        status, table, _, _ = self.judge(soak)
        self.assertEqual(status, 1)
        self.assertIn("| hostile clients | no summary (exit status 1)", table)

    def test_FailsWhenASessionOutlivesItsClient(self):
        for key, value in (("shardcast_sessions", 1), ("shardcast_sessions_cleaned_total", 5399),
                           ("shardcast_shard_outbound_bytes", 64)):
            soak = copy.deepcopy(clean())
            soak["metrics_after_clients"][key] = value
            with self.subTest(key=key):
                status, _, err, _ = self.judge(soak)
                self.assertEqual(status, 1)
                self.assertIn("sessions", err)

    def test_FailsWhenTheServerCountsCannotBeRead(self):
        soak = clean()
        soak["metrics_after_clients"] = {}
        self.assertEqual(self.judge(soak)[0], 1)

    def test_FailsOnEachKindOfWrongMessage(self):
        for key in ("lost", "reordered", "duplicates"):
            soak = copy.deepcopy(clean())
            soak["result"][key] = 1
            with self.subTest(key=key):
                status, _, err, _ = self.judge(soak)
                self.assertEqual(status, 1)
                self.assertIn("lost / reordered / duplicated", err)

    def test_FailsWhenLoadgenFailed(self):
        soak = clean()
        soak["result"]["passed"] = False
        soak["result"]["problems"] = ["3 messages not delivered by the end of the drain"]
        status, table, _, _ = self.judge(soak)
        self.assertEqual(status, 1)
        self.assertIn("3 messages not delivered", table)

    def test_FailsWhenTheChurnFellShort(self):
        soak = clean()
        soak["result"]["churned_handshake"] = soak["result"]["churned_reset"] = 1000
        self.assertEqual(self.judge(soak)[0], 1)

    def test_FailsWithoutAResult(self):
        soak = clean()
        soak["result"] = None
        soak["loadgen_status"] = 1
        status, table, _, plotted = self.judge(soak)
        self.assertEqual(status, 1)
        self.assertIn("no result", table)
        self.assertFalse(plotted)


class HostileClientsTest(unittest.TestCase):
    """How bench/hostile_clients.py reads the server's answer and builds its frames."""

    def test_FindsTheCloseCodeAfterOtherFrames(self):
        pong = bytes([0x8A, 0])
        text = bytes([0x81, 126]) + (300).to_bytes(2, "big") + b"x" * 300
        close = bytes([0x88, 2]) + (1008).to_bytes(2, "big")
        self.assertEqual(hostile_clients.close_code(pong + text + close), 1008)

    def test_ReadsACloseWithoutACodeOrNoCloseAsZero(self):
        self.assertEqual(hostile_clients.close_code(bytes([0x88, 0])), 0)
        self.assertEqual(hostile_clients.close_code(bytes([0x8A, 0])), 0)

    def test_DeclaresTheOversizedLengthItDoesNotSend(self):
        frame = hostile_clients.client_frame(0x1, b"abc", length=1 << 20)
        self.assertEqual(frame[:2], bytes([0x81, 0x80 | 127]))
        self.assertEqual(int.from_bytes(frame[2:10], "big"), 1 << 20)
        mask = frame[10:14]
        self.assertEqual(bytes(b ^ mask[i % 4] for i, b in enumerate(frame[14:])), b"abc")


if __name__ == "__main__":
    unittest.main()
