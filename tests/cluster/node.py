"""One shardcast node of the test cluster, and a client of its HTTP API.

A Node is started and stopped from the main thread. An Api holds one keep-alive HTTP
connection, so it belongs to one thread: the publishes made through it arrive at each
client in the order they were made (the README's ordering guarantee). Every request of an
Api carries its API key, as a publisher's would.
"""
import http.client
import json
import os
import re

from harness.processes import Process
from harness.waiting import TestFailure, wait_until

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Api:
    """The HTTP API of one node over one keep-alive connection (reopened if it breaks),
    presenting `api_key` as `Authorization: Bearer` on every request (none when None)."""

    def __init__(self, node_name, port, api_key):
        self.node = node_name
        self.port = port
        self.api_key = api_key
        self._conn = None

    def request(self, method, path, body=None):
        """(status, body bytes). One retry on a fresh connection if the kept one broke."""
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                if self.api_key is not None:
                    headers["Authorization"] = f"Bearer {self.api_key}"
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError) as e:
                self._conn.close()
                self._conn = None
                if attempt == 1:
                    raise TestFailure(f"{self.node}: {method} {path} failed: {e!r}") from None

    def _publish(self, path, body):
        status, answer = self.request("POST", path, json.dumps(body))
        if status != 202:
            raise TestFailure(f"{self.node}: POST {path} {body} answered {status}, expected "
                              f"202: {answer[:200]!r}")

    def send(self, to, data):
        """`data` as the message: a string is text, any other JSON value is sent as JSON."""
        self._publish("/api/v1/send", {"to": to, "data": data})

    def broadcast(self, text, except_id=None):
        body = {"data": text}
        if except_id:
            body["except"] = except_id
        self._publish("/api/v1/broadcast", body)

    def get_json(self, path):
        status, body = self.request("GET", path)
        if status != 200:
            raise TestFailure(f"{self.node}: GET {path} answered {status}: {body[:200]!r}")
        return json.loads(body)

    def online(self, client_id):
        return bool(self.get_json(f"/api/v1/clients/{client_id}")["online"])

    def metrics(self):
        """[(name, {label: value}, value)] of every sample on /metrics."""
        status, body = self.request("GET", "/metrics")
        if status != 200:
            raise TestFailure(f"{self.node}: GET /metrics answered {status}")
        samples = []
        for line in body.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            match = _METRIC_LINE.match(line)
            if match:
                labels = dict(_LABEL.findall(match.group(3) or ""))
                samples.append((match.group(1), labels, float(match.group(4))))
        return samples

    def metric(self, name, **labels):
        """The sum of every series of `name` whose labels include `labels` (so a `shard`
        label, present or not, is summed over). None if no series matches."""
        values = [v for n, l, v in self.metrics()
                  if n == name and all(l.get(k) == str(w) for k, w in labels.items())]
        return sum(values) if values else None

    def close(self):
        if self._conn:
            self._conn.close()
            self._conn = None


class Node:
    """A shardcast process started with a YAML file (`-c`) and dotted overrides (`-s`),
    listening on a port of 127.0.0.1 it picks itself and reports in its log. `api_key` is
    one its configuration accepts."""

    def __init__(self, binary, workdir, name, config_path, settings, api_key):
        self.name = name
        self.api_key = api_key
        argv = [binary, "-c", config_path, "-s", "listen=127.0.0.1:0"]
        for setting in settings:
            argv += ["-s", setting]
        self.process = Process(name, argv, os.path.join(workdir, f"{name}.log"))
        self.killed = False
        listening = re.compile(r"listening on 127\.0\.0\.1:(\d+) with \d+ shards")

        def port():
            match = listening.search(self.process.log())
            if match:
                return int(match.group(1))
            if not self.process.running():
                raise TestFailure(f"{name} exited before listening:\n{self.process.log_tail()}")
            return None

        try:
            self.port = wait_until(port, 30, f"{name} to log its port")
        except BaseException:
            self.process.stop()
            raise
        self.address = f"127.0.0.1:{self.port}"
        self.api = self.new_api()  # for the main thread only

    def new_api(self, api_key=True):
        """An Api of its own for another thread; api_key=True: the node's key."""
        return Api(self.name, self.port, self.api_key if api_key is True else api_key)

    def metric(self, name, **labels):
        value = self.api.metric(name, **labels)
        return 0.0 if value is None else value

    def kill(self):
        self.api.close()
        self.process.kill()
        self.killed = True

    def stop(self):
        """SIGTERM; the exit code (None if it had to be killed)."""
        self.api.close()
        return self.process.stop(timeout=15)


def write_config(path, settings):
    """Nested settings as YAML (JSON is YAML, so no YAML writer is needed)."""
    with open(path, "w") as f:
        json.dump(settings, f, indent=2)
