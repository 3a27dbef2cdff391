"""The real binaries the Prometheus integration test runs besides the shared nats-server:
shardcast instances and one Prometheus server. Each is a harness Process, so it logs to a
file and is stopped with SIGTERM, then SIGKILL after a bound. Called from the test's main
thread.
"""
import json
import os
import re
import urllib.error
import urllib.request

from harness.processes import Process, free_port
from harness.waiting import TestFailure, wait_until


# Shards per shardcast instance. A broadcast is kept in history once per shard.
SHARDS = 2


def start_shardcast(binary, workdir, name, settings):
    """Starts `binary` on 127.0.0.1:0 with SHARDS shards and the given dotted settings; returns
    the process and the port it reports on stderr once it listens."""
    # Open: this test's clients name their ids and its requests carry no key.
    argv = [binary, "--listen", "127.0.0.1:0", "--shards", str(SHARDS),
            "-s", "log.summary_interval=0",
            "-s", "auth.anonymous_clients=true", "-s", "auth.insecure_api=true"]
    for setting in settings:
        argv += ["-s", setting]
    process = Process(name, argv, os.path.join(workdir, f"{name}.log"))
    listening = re.compile(rf"listening on 127\.0\.0\.1:(\d+) with {SHARDS} shards")

    def port():
        match = listening.search(process.log())
        if match:
            return int(match.group(1))
        if not process.running():
            raise TestFailure(f"{name} exited before listening:\n{process.log_tail()}")
        return None

    try:
        return process, wait_until(port, 20, f"{name} to log its port")
    except BaseException:
        process.stop()
        raise


class Prometheus:
    """A Prometheus server on a free port of 127.0.0.1 with its TSDB in `workdir`."""

    def __init__(self, binary, workdir, config_path):
        # The port is free when chosen but may be taken before Prometheus binds it: retry.
        for attempt in range(3):
            self.port = free_port()
            self.process = Process("prometheus", [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={os.path.join(workdir, f'tsdb{attempt}')}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ], os.path.join(workdir, f"prometheus{attempt}.log"))
            try:
                wait_until(self._ready, 30, "Prometheus to answer /-/ready", interval=0.2)
                return
            except TestFailure:
                log = self.process.log()
                self.process.stop()
                if "address already in use" not in log:
                    raise TestFailure(f"Prometheus did not start:\n{self.process.log_tail()}")
        raise TestFailure("Prometheus found no free port in 3 attempts")

    def _ready(self):
        if not self.process.running():
            raise TestFailure(f"Prometheus exited:\n{self.process.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self):
        return self.process.stop()


def write_prometheus_config(path, targets, rule_file):
    """A config scraping `targets` every second as job "shardcast" and loading `rule_file`
    (if not None) evaluated every second. JSON is valid YAML, so no YAML writer is needed."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "shardcast",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": targets}],
        }],
    }
    if rule_file:
        config["rule_files"] = [rule_file]
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
