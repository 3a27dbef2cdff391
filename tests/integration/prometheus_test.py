#!/usr/bin/python3
"""The Grafana dashboard and the Prometheus rules, evaluated by a real Prometheus.

Starts two single shardcast instances, a (keeping history, the default) and b (history off),
two more, c and d, in cluster mode joined by a nats-server, and a Prometheus (the Debian
package) that scrapes all four every second and loads deploy/prometheus/rules.yml. Drives
traffic whose every count is known. On a and b: deliveries, sends to offline ids (held for
their resume on a, failed as no_session on b), broadcasts, a batch with a bad line, bad
requests, clean closes, a replaced session, a client that never answers pings, one that stops
reading; on a, a shardcast.v1 client that leaves, is sent to while away and resumes from its
last offset. On the cluster: clients on d, sends through c to them over the bus, a broadcast
through c and sends through c to ids that no node holds. Then, through Prometheus's HTTP API:

  - the scraped counters must be exactly what the test did;
  - every query of every dashboard panel (template variables substituted) must evaluate
    without error and return at least one series, and so must every variable's query; the
    panels that show what the traffic made (held, resumes, history) must have drawn
    something above zero for each of their queries;
  - every rule must be healthy and every recording rule must return series.

Usage: prometheus_test.py --shardcast <binary> --source <repository root> [--nats-server <binary>]
Exits 0 when all of it holds; gives up after --timeout seconds.
"""
import argparse
import asyncio
import collections
import http.client
import json
import os
import socket
import sys
import threading
import time

import websockets

# The helpers below are imported from the source tree, which must not collect __pycache__.
sys.dont_write_bytecode = True
# The harness this test shares with the other end-to-end tests; its own helpers are in
# prometheus_test_support beside it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                "support"))
from harness.processes import NatsServer  # noqa: E402
from harness.raw_websocket import OP_PING, OP_TEXT, RawWebSocket  # noqa: E402
from harness.runner import find_program, run_scenario  # noqa: E402
from harness.waiting import TestFailure, log, wait_until  # noqa: E402
from prometheus_test_support import dashboard  # noqa: E402
from prometheus_test_support.processes import (  # noqa: E402
    SHARDS, Prometheus, start_shardcast, write_prometheus_config)
from prometheus_test_support.prometheus_api import PrometheusApi, QueryError  # noqa: E402

# Heartbeats short enough that a silent client is removed within the test, long enough that
# a loaded machine does not drop the clients that do answer.
HEARTBEAT = ["session.heartbeat_interval=500ms", "session.heartbeat_timeout=3s"]
# Instance b drops the oldest queued messages of a client that stops reading.
SLOW_BUFFER_LIMIT = 64 * 1024
SLOW_MESSAGE_SIZE = 32 * 1024
# Publishing is paced over a few scrape intervals, so rates see it as traffic over time.
ROUNDS = 6
BROADCASTS = 3
PACE = 0.5
# The cluster: clients on d, and c publishes to them, so every message crosses the bus.
CLUSTER_CLIENTS = 3
CLUSTER_ROUNDS = 3
UNHELD_SENDS = 2
SUBJECT_PREFIX = "shardcast"
# Sends to the resuming client while it is away.
AWAY_SENDS = 3
GAP_REASONS = ("evicted", "expired", "epoch", "unavailable")
# Panels whose every query must have been above zero at some point of the run: what the
# traffic made. (Evictions and resume gaps it never makes.)
PANELS_WITH_TRAFFIC = ("Delivered, held and failed", "Held for resume (held/s)",
                       "History bytes", "History messages", "Resumes", "Replayed messages")


def slow_message_count():
    """Enough messages to overflow the slow client's buffer whatever the kernel buffers:
    twice the largest TCP send buffer autotuning may reach, and 1 MiB more."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            send_buffer_max = int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        send_buffer_max = 4 << 20
    return (2 * send_buffer_max + (1 << 20)) // SLOW_MESSAGE_SIZE + 1


class ClientLoop:
    """Runs the WebSocket library clients on their own thread, so they keep answering the
    server's pings while the test's main thread blocks on HTTP or Prometheus."""

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine, timeout=15):
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, timeout),
                                                  self._loop)
        try:
            return future.result(timeout + 5)
        except (asyncio.TimeoutError, TimeoutError):
            raise TestFailure(f"a client operation took over {timeout}s") from None

    def stop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class WsClient:
    """A well-behaved client (python3-websockets): answers pings, records every message. With
    `v1` it offers the shardcast.v1 subprotocol: `received` holds the data of each data frame,
    `offsets` its offset and epoch, and `gaps` the gap notices; `query` (such as
    "?since=17&epoch=...") is appended to its URL."""

    def __init__(self, loop, port, client_id, v1=False, query=""):
        self.id = client_id
        self.expected = []  # what the test published to it, in publish order
        self.received = []  # appended on the loop thread
        self.offsets = []  # (offset, epoch) of each data frame, with v1
        self.gaps = []  # the {"gap":...} notices, with v1
        self.close_code = None
        self.open = False
        self._loop = loop
        self._url = f"ws://127.0.0.1:{port}/ws/{client_id}{query}"
        self._v1 = v1
        self._ws = None
        self._reader = None

    def connect(self):
        self._loop.run(self._connect())
        self.open = True

    async def _connect(self):
        self._ws = await websockets.connect(
            self._url, ping_interval=None, max_size=None, open_timeout=10, close_timeout=5,
            subprotocols=["shardcast.v1"] if self._v1 else None)
        if self._v1 and self._ws.subprotocol != "shardcast.v1":
            raise TestFailure(f"{self.id}: the server selected {self._ws.subprotocol!r}, not "
                              "shardcast.v1")
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for message in self._ws:
                if self._v1:
                    self._read_v1(message)
                else:
                    self.received.append(message)
        except websockets.ConnectionClosed:
            pass
        self.close_code = self._ws.close_code

    def _read_v1(self, message):
        # Anything unexpected is kept as received, so the comparison with expected shows it.
        try:
            frame = json.loads(message)
        except (TypeError, ValueError):
            self.received.append(message)
            return
        if isinstance(frame, dict) and "gap" in frame:
            self.gaps.append(frame["gap"])
        elif isinstance(frame, dict) and {"data", "offset", "epoch"} <= frame.keys():
            self.offsets.append((frame["offset"], frame["epoch"]))
            self.received.append(frame["data"])
        else:
            self.received.append(message)

    def send_frame(self, text):
        self._loop.run(self._ws.send(text))

    def close(self):
        """Clean close from our side; returns the close code the server answered with."""
        self._loop.run(self._close())
        self.open = False
        return self.close_code

    async def _close(self):
        await self._ws.close()
        await self._reader

    def closed_by_server(self):
        return self._reader is not None and self._reader.done()


class Instance:
    """One shardcast server and the exact count of everything the test did to it."""

    def __init__(self, name, process, port, clients, offline_per_round, history=False):
        self.name = name
        self.process = process
        self.port = port
        self.label = f"127.0.0.1:{port}"
        self.client_count = clients
        self.offline_per_round = offline_per_round
        # Whether the instance keeps history: a send to an id with no session is then held for
        # its resume rather than failed as no_session.
        self.history = history
        self.expect = collections.Counter()
        self.clients = []  # every WsClient ever opened here
        self.raw_online = set()  # ids of the hand-written clients that are connected
        self.slow_received = 0
        # Publishes go one after another over one keep-alive connection, so each client
        # receives them in publish order (the README's ordering guarantee).
        self._http = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    # --- HTTP -------------------------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, fresh=False):
        """(status, body). `fresh` uses a connection of its own, for requests the server may
        answer by closing it."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10) if fresh \
            else self._http
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            if fresh:
                conn.close()

    def _publish(self, path, body):
        status, answer = self.request("POST", path, body,
                                      {"Content-Type": "application/json"})
        if status != 202:
            raise TestFailure(f"{self.name}: POST {path} answered {status}: {answer[:200]!r}")
        return json.loads(answer)

    def send(self, to, data):
        self._publish("/api/v1/send", json.dumps({"to": to, "data": data}))
        self.expect["send"] += 1
        self._kept(1)
        target = [c for c in self.open_clients() if c.id == to]
        if target:
            target[0].expected.append(data)
        elif to not in self.raw_online:
            self._away()

    def _kept(self, entries):
        """History keeps every send once, and every broadcast once per shard."""
        if self.history:
            self.expect["history"] += entries

    def _away(self):
        """A send for an id with no session here: held for its resume, or failed."""
        self.expect["held" if self.history else "no_session"] += 1

    def broadcast(self, data, except_id=None):
        body = {"data": data}
        if except_id:
            body["except"] = except_id
        self._publish("/api/v1/broadcast", json.dumps(body))
        self.expect["broadcast"] += 1
        self._kept(SHARDS)
        for c in self.open_clients():
            if c.id != except_id:
                c.expected.append(data)

    def batch(self, lines, bad_lines):
        """Publishes `lines` ((to, data) pairs) and `bad_lines` (raw text) as one batch."""
        body = "\n".join([json.dumps({"to": to, "data": data}) for to, data in lines]
                         + bad_lines) + "\n"
        answer = self._publish("/api/v1/batch", body)
        if answer.get("accepted") != len(lines) or answer.get("rejected") != len(bad_lines):
            raise TestFailure(f"{self.name}: batch answered {answer}")
        self.expect["batch"] += len(lines)
        self.expect["batch_rejected"] += len(bad_lines)
        for to, data in lines:
            if to == "*":
                self._kept(SHARDS)
                for c in self.open_clients():
                    c.expected.append(data)
                continue
            self._kept(1)
            target = [c for c in self.open_clients() if c.id == to]
            if target:
                target[0].expected.append(data)
            else:
                self._away()

    def metric(self, name, **labels):
        """The sum of this server's own /metrics samples of `name` that carry `labels`: for
        waits inside the traffic, before Prometheus has scraped."""
        status, body = self.request("GET", "/metrics", fresh=True)
        if status != 200:
            raise TestFailure(f"{self.name}: GET /metrics answered {status}")
        wanted = {f'{k}="{v}"' for k, v in labels.items()}
        total = 0.0
        for line in body.decode().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, value = line.rsplit(" ", 1)
            if wanted <= set(series[len(name):].strip("{}").split(",")):
                total += float(value)
        return total

    def online(self, client_id):
        status, body = self.request("GET", f"/api/v1/clients/{client_id}", fresh=True)
        if status != 200:
            raise TestFailure(f"{self.name}: GET /api/v1/clients/{client_id} answered {status}")
        return json.loads(body)["online"]

    # --- clients ----------------------------------------------------------------------------

    def open_clients(self):
        return [c for c in self.clients if c.open]

    def delivered(self):
        return sum(len(c.received) for c in self.clients) + self.slow_received


def exact_count(checks, name, label):
    """check(what, metric, labels, expected) for the instance scraped as label: adds the check
    that sum(metric{labels}) of that instance equals expected to checks."""
    on = f'job="shardcast",instance="{label}"'

    def check(what, metric, labels, expected):
        selector = f"{metric}{{{on}{',' + labels if labels else ''}}}"
        checks.append((f"{name}: {what}", f"sum({selector})", expected))
    return check


class Scenario:
    """The whole test: start, traffic, checks, stop. Runs on the main thread."""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.instances = []  # a and b, single nodes
        self.cluster = []  # c and d, in cluster mode
        self.nats = None
        self.prometheus = None
        self.api = None
        self.loop = ClientLoop()
        self.raw_sockets = []
        self.rules_loaded = False
        self.panel_queries = 0
        self.prometheus_started = None

    # --- processes --------------------------------------------------------------------------

    def start(self):
        # a keeps history (the default); b keeps none, so its sends to offline ids fail.
        specs = [("a", 4, 2, True, []),
                 ("b", 3, 3, False, [f"session.buffer_limit={SLOW_BUFFER_LIMIT}",
                                     "session.overflow=drop_oldest", "history.enabled=false"])]
        for name, clients, offline, history, settings in specs:
            process, port = start_shardcast(self.args.shardcast, self.workdir,
                                            f"shardcast-{name}", HEARTBEAT + settings)
            self.instances.append(Instance(name, process, port, clients, offline, history))
            log(f"shardcast {name} on 127.0.0.1:{port}, history "
                f"{'kept' if history else 'off'}")

        self.nats = NatsServer(self.workdir, self.args.nats_server)
        self.nats.start()
        log(f"nats-server on 127.0.0.1:{self.nats.port}")
        for name in ("c", "d"):
            process, port = start_shardcast(
                self.args.shardcast, self.workdir, f"shardcast-{name}",
                [f"cluster.nats.url={self.nats.url}", f"cluster.node={name}",
                 f"cluster.subject_prefix={SUBJECT_PREFIX}"])
            self.cluster.append(Instance(name, process, port, 0, 0))
            log(f"shardcast {name} on 127.0.0.1:{port}, in cluster mode")
        scraped = self.instances + self.cluster

        rule_file = os.path.join(self.args.source, "deploy", "prometheus", "rules.yml")
        self.rules_loaded = os.path.exists(rule_file)
        config = os.path.join(self.workdir, "prometheus.yml")
        write_prometheus_config(config, [i.label for i in scraped],
                                rule_file if self.rules_loaded else None)
        self.prometheus = Prometheus(self.args.prometheus, self.workdir, config)
        self.prometheus_started = time.time()
        self.api = PrometheusApi(self.prometheus.port)
        log(f"prometheus on 127.0.0.1:{self.prometheus.port}, rules "
            f"{'from ' + rule_file if self.rules_loaded else 'absent'}")

        # The first scrape comes ~5s after start, whatever the interval (target discovery
        # is throttled).
        def all_up():
            up = self.api.vector('up{job="shardcast"}')
            return len(up) == len(scraped) and all(v == 1 for v in up.values())
        try:
            wait_until(all_up, 30, f"all {len(scraped)} shardcast targets to be up",
                       interval=0.25)
        except TestFailure as e:
            targets = "\n".join(f"  {t['scrapeUrl']}: {t['health']} {t['lastError']}"
                                 for t in self.api.targets())
            raise TestFailure(f"{e}:\n{targets}") from None
        log(f"all {len(scraped)} targets up")

    def stop(self, passed):
        """Stops everything the test started. When the test passed so far, the servers must
        also stop cleanly (exit 0 on SIGTERM)."""
        problems = []
        for raw in self.raw_sockets:
            raw.abort()
        if self.prometheus:
            self.prometheus.stop()
        # The cluster nodes leave NATS as they stop, so NATS stops after them.
        for instance in self.instances + self.cluster:
            code = instance.process.stop()
            if code != 0:
                problems.append(f"shardcast {instance.name} exited {code} on SIGTERM:\n"
                                f"{instance.process.log_tail()}")
        if self.nats:
            self.nats.stop()
        self.loop.stop()
        if not passed:
            for instance in self.instances + self.cluster:
                print(f"--- shardcast {instance.name} log (tail) ---\n"
                      f"{instance.process.log_tail()}")
            if self.nats and self.nats.process:
                print(f"--- nats-server log (tail) ---\n{self.nats.process.log_tail()}")
            if self.prometheus:
                print(f"--- prometheus log (tail) ---\n{self.prometheus.process.log_tail()}")
        return problems

    # --- traffic ----------------------------------------------------------------------------

    def drive_traffic(self):
        for inst in self.instances:
            # Completes the upgrade by hand, then never reads or writes: no pong ever comes
            # back, so the heartbeat removes it.
            self.raw_sockets.append(RawWebSocket(inst.port, f"{inst.name}-silent"))
            inst.expect["connections"] += 1
            inst.expect["heartbeat_timeout"] += 1

            # A second session for one id replaces the first, which is closed with 4001.
            first = WsClient(self.loop, inst.port, f"{inst.name}-dup")
            first.connect()
            inst.clients.append(first)
            inst.expect["connections"] += 1
            # The client sees the 101 a moment before the server's shard marks the session
            # open; a replacement in that moment cuts the socket instead of closing with
            # 4001. A delivered message proves the session is open.
            inst.send(first.id, f"{inst.name} hello to the first {first.id}")
            wait_until(lambda: first.received, 10, f"{first.id} to receive its first message")
            second = WsClient(self.loop, inst.port, f"{inst.name}-dup")
            second.connect()
            wait_until(first.closed_by_server, 10, f"{inst.name}-dup's first session to close")
            first.open = False
            if first.close_code != 4001:
                raise TestFailure(f"replaced session closed with {first.close_code}, not 4001")
            inst.clients.append(second)
            inst.expect["connections"] += 1
            inst.expect["replaced"] += 1

            for n in range(inst.client_count):
                client = WsClient(self.loop, inst.port, f"{inst.name}-client-{n}")
                client.connect()
                inst.clients.append(client)
                inst.expect["connections"] += 1

            self.bad_requests(inst)
        log("clients connected, bad requests made")

        for r in range(ROUNDS):
            for inst in self.instances:
                for c in inst.open_clients():
                    inst.send(c.id, f"{inst.name} send {r} to {c.id}")
                for k in range(inst.offline_per_round):
                    inst.send(f"{inst.name}-offline-{r}-{k}", f"{inst.name} lost {r}/{k}")
                for c in inst.open_clients():
                    c.send_frame(f"frame {r} from {c.id}")
                    inst.expect["frames"] += 1
            time.sleep(PACE)
        log(f"{ROUNDS} rounds of sends")

        self.away_and_back(self.instances[0])

        # Broadcasts would reach the silent clients too: wait until the heartbeat has
        # removed them, so every delivery is one a recording client counts.
        for inst in self.instances:
            wait_until(lambda: not inst.online(f"{inst.name}-silent"), 15,
                       f"the heartbeat to remove {inst.name}-silent")
        log("silent clients removed by the heartbeat")

        for r in range(BROADCASTS):
            for inst in self.instances:
                except_id = inst.open_clients()[0].id if r == 1 else None
                inst.broadcast(f"{inst.name} broadcast {r}", except_id)
            time.sleep(PACE)

        for inst in self.instances:
            lines = [(c.id, f"{inst.name} batch to {c.id}") for c in inst.open_clients()]
            lines += [(f"{inst.name}-offline-batch-{k}", f"{inst.name} batch lost {k}")
                      for k in range(2)]
            lines.append(("*", f"{inst.name} batch to all"))
            inst.batch(lines, ['{"to":"x"}'])
        log(f"{BROADCASTS} broadcasts and a batch per instance")

        self.check_deliveries()

        for inst in self.instances:
            for c in inst.open_clients()[:2]:
                code = c.close()
                if code != 1000:
                    raise TestFailure(f"{c.id}: the server answered our close with {code}")
                inst.expect["peer_closed"] += 1
        log("two clients per instance closed cleanly")

        self.slow_reader(self.instances[1])

        for inst in self.instances:
            inst.expect["online"] = len(inst.open_clients())

    def bad_requests(self, inst):
        """One of each: malformed JSON, an unknown route, a plain GET of /ws/{id} and an
        upgrade with an invalid id."""
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
        for method, path, body, headers, status in [
            ("POST", "/api/v1/send", "{", {"Content-Type": "application/json"}, 400),
            ("GET", "/api/v1/nowhere", None, None, 404),
            ("GET", f"/ws/{inst.name}-plain", None, None, 426),
            ("GET", "/ws/bad!id", None, upgrade, 400),
        ]:
            got, answer = inst.request(method, path, body, headers, fresh=True)
            if got != status:
                raise TestFailure(f"{inst.name}: {method} {path} answered {got}, expected "
                                  f"{status}: {answer[:200]!r}")

    def check_deliveries(self):
        """Every client receives exactly what was published to it, in publish order."""
        for inst in self.instances:
            for c in inst.clients:
                wait_until(lambda: len(c.received) >= len(c.expected), 15,
                           f"{c.id} to receive {len(c.expected)} messages "
                           f"(has {len(c.received)})")
        # A message beyond the expected ones would also show as sent > delivered later.
        for inst in self.instances:
            for c in inst.clients:
                if c.received != c.expected:
                    raise TestFailure(f"{c.id} received {c.received}, expected {c.expected}")
        log("every client received exactly what was published to it, in order")

    def away_and_back(self, inst):
        """A shardcast.v1 client receives a message, closes, is sent AWAY_SENDS messages while
        it has no session, and reconnects with ?since=<offset>&epoch=<epoch> of the last data
        frame it had: inst keeps history, so it held them and replays them, without a gap. The
        client stays connected afterwards, so later broadcasts reach it too."""
        client_id = f"{inst.name}-away"
        first = WsClient(self.loop, inst.port, client_id, v1=True)
        first.connect()
        inst.clients.append(first)
        inst.expect["connections"] += 1
        inst.send(client_id, f"{inst.name} before leaving")
        wait_until(lambda: first.received, 10, f"{client_id} to receive its first message")
        offset, epoch = first.offsets[-1]
        code = first.close()
        if code != 1000:
            raise TestFailure(f"{client_id}: the server answered our close with {code}")
        inst.expect["peer_closed"] += 1
        wait_until(lambda: not inst.online(client_id), 10, f"{client_id} to be offline")

        away = [f"{inst.name} while {client_id} is away {k}" for k in range(AWAY_SENDS)]
        for data in away:
            inst.send(client_id, data)

        back = WsClient(self.loop, inst.port, client_id, v1=True,
                        query=f"?since={offset}&epoch={epoch}")
        back.connect()
        inst.clients.append(back)
        inst.expect["connections"] += 1
        inst.expect["resumes"] += 1
        inst.expect["replayed"] += AWAY_SENDS
        back.expected = list(away)
        wait_until(lambda: len(back.received) >= AWAY_SENDS, 10,
                   f"{client_id} to receive the {AWAY_SENDS} messages held for it")
        offsets = [o for o, _ in back.offsets]
        if back.received != away or back.gaps or offsets != sorted(offsets) or \
                offsets[0] <= offset or {e for _, e in back.offsets} != {epoch}:
            raise TestFailure(f"{client_id} resumed from {offset} ({epoch}) and got "
                              f"{back.received} at {back.offsets}, gaps {back.gaps}; "
                              f"expected {away} after {offset}, in order, without a gap")
        log(f"{inst.name}: {client_id} resumed, {AWAY_SENDS} held messages replayed")

    def slow_reader(self, inst):
        """A client that keeps talking (so the heartbeat keeps it) but stops reading while
        more is sent to it than the socket buffers hold: its buffer overflows and drop_oldest
        drops messages. Then it reads everything left. Received + dropped must be exactly
        what was sent, and what it received must be in publish order."""
        client_id = f"{inst.name}-slow"
        slow = RawWebSocket(inst.port, client_id, receive_buffer=4096)
        self.raw_sockets.append(slow)
        inst.raw_online.add(client_id)
        inst.expect["connections"] += 1

        def dropped():
            return int(inst.metric("shardcast_messages_failed_total", reason="overflow_dropped"))

        count = slow_message_count()

        stop = threading.Event()
        ticks = [0]

        def talk():
            # Text frames are proof of life that needs no reply; a ping would need a pong,
            # which the server could only write after the stuck write.
            while not stop.wait(0.25):
                slow.send_text("tick")
                ticks[0] += 1
        talker = threading.Thread(target=talk, daemon=True)
        talker.start()
        received = []
        try:
            filler = "x" * SLOW_MESSAGE_SIZE
            for i in range(count):
                inst.send(client_id, f"{i:06d} {filler}")
            # Read until every message is accounted for. The drop count is final once the
            # shard has handled every publish, so re-read it whenever the socket goes quiet.
            deadline = time.monotonic() + 30
            dropped_now = 0
            while len(received) + dropped_now < count:
                if time.monotonic() > deadline:
                    raise TestFailure(f"{client_id}: {len(received)} received and "
                                      f"{dropped_now} dropped of {count} sent")
                try:
                    opcode, payload = slow.read_message(timeout=0.3)
                except socket.timeout:
                    dropped_now = dropped()
                    continue
                if opcode == OP_TEXT:
                    received.append(int(payload[:6]))
                elif opcode != OP_PING:
                    raise TestFailure(f"{client_id}: unexpected frame, opcode {opcode}")
        finally:
            stop.set()
            talker.join(5)

        dropped_now = dropped()
        if dropped_now == 0:
            raise TestFailure(f"{client_id} received all {count} messages: the socket "
                              "buffers absorbed them and its buffer never overflowed")
        if len(received) + dropped_now != count:
            raise TestFailure(f"{client_id}: {len(received)} received + {dropped_now} dropped "
                              f"!= {count} sent")
        if received != sorted(received):
            raise TestFailure(f"{client_id} received messages out of order: {received}")
        inst.slow_received = len(received)
        inst.expect["overflow_dropped"] += dropped_now
        inst.expect["frames"] += ticks[0]

        code = slow.close()
        self.raw_sockets.remove(slow)
        inst.raw_online.discard(client_id)
        if code != 1000:
            raise TestFailure(f"{client_id}: the server answered our close with {code}")
        inst.expect["peer_closed"] += 1
        log(f"{client_id}: {len(received)} received, {dropped_now} dropped by drop_oldest")

    def drive_cluster_traffic(self):
        """Clients on d; through c, sends to them, a broadcast and sends to ids held nowhere.
        c holds no id, so each of its sends goes out on the bus; d receives those for its
        clients, and NATS drops the rest."""
        c, d = self.cluster
        for n in range(CLUSTER_CLIENTS):
            client = WsClient(self.loop, d.port, f"d-client-{n}")
            client.connect()
            d.clients.append(client)

        # A message c publishes reaches d only if NATS already holds d's subscription to its
        # subject; subscribing is asynchronous on d, so ask NATS itself.
        for client in d.clients:
            subject = f"{SUBJECT_PREFIX}.client.{client.id}"
            wait_until(lambda: self.nats.interest(subject) == 1, 10,
                       f"NATS to hold d's subscription to {subject}")
        broadcast_subject = f"{SUBJECT_PREFIX}.broadcast"
        wait_until(lambda: self.nats.interest(broadcast_subject) == 2, 10,
                   f"NATS to hold c's and d's subscriptions to {broadcast_subject}")

        for r in range(CLUSTER_ROUNDS):
            for client in d.open_clients():
                data = f"c send {r} to {client.id}"
                c._publish("/api/v1/send", json.dumps({"to": client.id, "data": data}))
                client.expected.append(data)
            time.sleep(PACE)
        for k in range(UNHELD_SENDS):
            c._publish("/api/v1/send", json.dumps({"to": f"nowhere-{k}", "data": f"lost {k}"}))

        # A send and a broadcast from one node travel on different subjects, so their order
        # is not kept: broadcast once the sends have arrived.
        self.check_cluster_deliveries()
        data = "c broadcast"
        c._publish("/api/v1/broadcast", json.dumps({"data": data}))
        for client in d.open_clients():
            client.expected.append(data)
        self.check_cluster_deliveries()

        # c's sends all leave on the bus, as does its broadcast; d receives the sends for its
        # clients, and the broadcast once, and delivers them; each session d attached (in
        # replace mode) claimed its id on the bus.
        remote = CLUSTER_ROUNDS * CLUSTER_CLIENTS
        c.expect.update({"send": remote + UNHELD_SENDS, "out send": remote + UNHELD_SENDS,
                         "broadcast": 1, "out broadcast": 1})
        d.expect.update({"in send": remote, "in broadcast": 1, "out claim": CLUSTER_CLIENTS,
                         "sent": remote + CLUSTER_CLIENTS, "connections": CLUSTER_CLIENTS,
                         "online": CLUSTER_CLIENTS})
        log(f"cluster: {remote} sends through c to d's clients, {UNHELD_SENDS} to ids held "
            "nowhere and a broadcast; every client received exactly its messages, in order")

    def check_cluster_deliveries(self):
        """Every client on d receives exactly what c published to it, in publish order."""
        for client in self.cluster[1].clients:
            wait_until(lambda: len(client.received) >= len(client.expected), 15,
                       f"{client.id} to receive {len(client.expected)} messages over the bus "
                       f"(has {len(client.received)})")
            if client.received != client.expected:
                raise TestFailure(f"{client.id} received {client.received}, expected "
                                  f"{client.expected}")

    # --- what Prometheus scraped ------------------------------------------------------------

    def counter_checks(self):
        """(what, query, expected value) for every count the test knows exactly."""
        checks = []
        for inst in self.instances:
            e = inst.expect
            check = exact_count(checks, inst.name, inst.label)

            delivered = inst.delivered()
            check("messages sent", "shardcast_messages_sent_total", "", delivered)
            check("latency observations", "shardcast_delivery_latency_seconds_count", "",
                  delivered)
            check("messages held", "shardcast_messages_held_total", "", e["held"])
            check("no_session failures", "shardcast_messages_failed_total",
                  'reason="no_session"', e["no_session"])
            check("overflow_dropped failures", "shardcast_messages_failed_total",
                  'reason="overflow_dropped"', e["overflow_dropped"])
            check("other failures", "shardcast_messages_failed_total",
                  'reason!~"no_session|overflow_dropped"', 0)
            for kind in ("send", "broadcast", "batch"):
                check(f"published {kind}", "shardcast_messages_published_total",
                      f'kind="{kind}"', e[kind])
            check("batch lines rejected", "shardcast_batch_lines_rejected_total", "",
                  e["batch_rejected"])
            for reason in ("peer_closed", "heartbeat_timeout", "replaced"):
                check(f"{reason} cleanups", "shardcast_sessions_cleaned_total",
                      f'reason="{reason}"', e[reason])
            check("other cleanups", "shardcast_sessions_cleaned_total",
                  'reason!~"peer_closed|heartbeat_timeout|replaced"', 0)
            check("sessions swept", "shardcast_sessions_swept_total", "", 0)
            check("sessions attached", "shardcast_connections_total", "", e["connections"])
            check("sessions online", "shardcast_sessions", "", e["online"])
            check("outbound bytes", "shardcast_shard_outbound_bytes", "", 0)
            check("client frames received", "shardcast_frames_received_total", "", e["frames"])
            check("resumes", "shardcast_resumes_total", "", e["resumes"])
            check("messages replayed", "shardcast_resume_replayed_total", "", e["replayed"])
            for reason in GAP_REASONS:
                check(f"{reason} gaps", "shardcast_resume_gaps_total", f'reason="{reason}"',
                      e[f"gap {reason}"])
            # Nothing is old enough to expire, and no id or shard gets near a bound.
            check("history messages", "shardcast_history_messages", "", e["history"])
            check("history evictions", "shardcast_history_evicted_total", "", 0)
            history_bytes = f'shardcast_history_bytes{{job="shardcast",instance="{inst.label}"}}'
            checks.append((f"{inst.name}: history bytes above 0 (1: yes, none: no)",
                           f"count({history_bytes} > 0)", 1 if e["history"] else None))
            for reason in ("invalid_client_id", "not_upgrade"):
                check(f"{reason} handshake failures", "shardcast_handshake_failures_total",
                      f'reason="{reason}"', 1)
            for route, code, expected in [("send", "202", e["send"]),
                                          ("broadcast", "202", e["broadcast"]),
                                          ("batch", "202", 1),
                                          ("send", "400", 1),
                                          ("unknown", "404", 1)]:
                check(f"{code} answers on route {route}", "shardcast_http_requests_total",
                      f'route="{route}",code="{code}"', expected)
        return checks

    def cluster_checks(self):
        """(what, query, expected value) for every count of the cluster nodes."""
        checks = []
        for node in self.cluster:
            e = node.expect
            check = exact_count(checks, node.name, node.label)

            check("node name", "shardcast_node_info", f'node="{node.name}"', 1)
            check("bus connected", "shardcast_bus_connected", "", 1)
            check("bus reconnects", "shardcast_bus_reconnects_total", "", 0)
            # Client subjects of the ids held here, plus broadcast.
            check("bus subscriptions", "shardcast_bus_subscriptions", "",
                  len(node.open_clients()) + 1)
            for direction in ("out", "in"):
                for kind in ("send", "broadcast", "claim", "disconnect", "upstream"):
                    check(f"bus {direction} {kind}", "shardcast_bus_messages_total",
                          f'direction="{direction}",kind="{kind}"', e[f"{direction} {kind}"])
            check("bus refused", "shardcast_bus_refused_total", "", 0)
            check("bus publish errors", "shardcast_bus_publish_errors_total", "", 0)
            check("bus receive errors", "shardcast_bus_receive_errors_total", "", 0)
            for kind in ("send", "broadcast", "batch"):
                check(f"published {kind}", "shardcast_messages_published_total",
                      f'kind="{kind}"', e[kind])
            # What arrived from the bus: the sends for d's clients and the broadcast.
            check("published bus", "shardcast_messages_published_total", 'kind="bus"',
                  e["in send"] + e["in broadcast"])
            check("messages sent", "shardcast_messages_sent_total", "", e["sent"])
            # A cluster node keeps no history: what is not here goes to the bus, never held.
            check("messages held", "shardcast_messages_held_total", "", 0)
            check("history messages", "shardcast_history_messages", "", 0)
            check("bus_unavailable failures", "shardcast_messages_failed_total",
                  'reason="bus_unavailable"', 0)
            check("sessions attached", "shardcast_connections_total", "", e["connections"])
            check("sessions online", "shardcast_sessions", "", e["online"])
        # Nothing that reached d failed there. (c routes its sends for ids held nowhere to the
        # bus, where NATS drops them: c counts them as bus out send only.)
        d = self.cluster[1]
        d_failed = f'shardcast_messages_failed_total{{job="shardcast",instance="{d.label}"}}'
        checks.append(("d: failures", f"sum({d_failed})", 0))
        return checks

    def check_counters(self):
        """Waits for a scrape after the traffic, then compares every count exactly."""
        checks = self.counter_checks() + self.cluster_checks()
        results = {}

        def all_match():
            for what, query, expected in checks:
                results[what] = self.api.scalar(query)
            return all(results[what] == expected for what, _, expected in checks)
        try:
            wait_until(all_match, 20, "Prometheus to scrape the final counts", interval=0.5)
        except TestFailure:
            wrong = [f"  {what}: {query} = {results[what]}, expected {expected}"
                     for what, query, expected in checks if results[what] != expected]
            raise TestFailure("counters differ from what the test did:\n" + "\n".join(wrong))
        log(f"{len(checks)} counts match what the test did")

    # --- the dashboard and the rules --------------------------------------------------------

    def check_dashboard(self):
        default = os.path.join(self.args.source, "deploy", "grafana", "shardcast.json")
        path = self.args.dashboard or default
        if not os.path.exists(path):
            raise TestFailure(f"no dashboard at {path}")
        board = dashboard.load(path)
        # check_dashboard.py reads the repository's dashboard, so it only applies to that one.
        queries, note = dashboard.merged_exprs(
            board, self.args.source if os.path.abspath(path) == default else None)
        if not queries:
            raise TestFailure(f"{path} has no PromQL queries")
        log(f"dashboard: {note}")

        # Rate windows of 1m need two samples in them; make sure a few scrapes exist.
        wait_until(lambda: (self.api.scalar('min(count_over_time(up{job="shardcast"}[1m]))')
                            or 0) >= 5, 20, "five scrapes of each target")

        problems = {}

        def evaluate_all():
            problems.clear()
            for title, expr in queries:
                try:
                    kind, result = self.api.query(expr)
                except QueryError as e:
                    problems[(title, expr)] = f"error: {e}"
                    continue
                if kind in ("vector", "matrix") and not result:
                    problems[(title, expr)] = "no series"
                unresolved = dashboard.unresolved(expr)
                if unresolved:
                    problems[(title, expr)] = f"unknown template variables {unresolved}"
            # A syntax error will not go away; an empty result might, after a rule's next
            # evaluation.
            return not any(p == "no series" for p in problems.values())
        try:
            wait_until(evaluate_all, 10, "every dashboard query to return series", interval=1)
        except TestFailure:
            pass
        self.panel_queries = len(queries)

        # What the traffic made must show. Over the whole run, as Grafana draws it: a rate over
        # 1m of something the test did a minute ago is 0 now.
        titles = {title for title, _ in queries}
        if os.path.abspath(path) == default:
            for title in set(PANELS_WITH_TRAFFIC) - titles:
                problems[(title, "-")] = "no such panel in the dashboard"
        seconds = int(time.time() - self.prometheus_started) + 1
        for title, expr in queries:
            if title not in PANELS_WITH_TRAFFIC or (title, expr) in problems:
                continue
            try:
                drawn = self.api.range_values(expr, seconds)
            except QueryError as e:
                problems[(title, expr)] = f"error in a range query: {e}"
                continue
            if not any(v > 0 for values in drawn.values() for v in values):
                problems[(title, expr)] = f"never above 0 in the last {seconds}s"

        variables = dashboard.variable_queries(board)
        for name, kind, *arguments in variables:
            try:
                if kind == "label_values":
                    selector, label = arguments
                    values = self.api.label_values(label, selector)
                else:
                    values = self.api.query(arguments[0])[1]
            except QueryError as e:
                problems[(f"variable ${name}", f"{kind}{tuple(arguments)}")] = f"error: {e}"
                continue
            if not values:
                problems[(f"variable ${name}", f"{kind}{tuple(arguments)}")] = "no values"

        if problems:
            raise TestFailure("dashboard queries that fail:\n" + "\n".join(
                f"  [{title}] {expr}\n      -> {problem}"
                for (title, expr), problem in problems.items()))
        log(f"all {len(queries)} dashboard queries return series, those of "
            f"{len(PANELS_WITH_TRAFFIC)} panels values above 0, and all {len(variables)} "
            "variable queries return values")

    def check_rules(self):
        if not self.rules_loaded:
            log("no deploy/prometheus/rules.yml: rule checks skipped")
            return
        rules = []

        def all_healthy():
            rules[:] = self.api.rules()
            return rules and all(r.get("health") == "ok" for r in rules)
        try:
            wait_until(all_healthy, 15, "every rule to be evaluated", interval=0.5)
        except TestFailure:
            bad = [f"  {r['group']}/{r['name']}: health {r.get('health')} {r.get('lastError', '')}"
                   for r in rules if r.get("health") != "ok"]
            raise TestFailure("rules not healthy:\n" + "\n".join(bad or ["  no rules loaded"]))

        records = [r["name"] for r in rules if r["type"] == "recording"]
        values = {}

        def all_recorded():
            for name in records:
                values[name] = self.api.vector(name)
            return all(values[name] for name in records)
        try:
            wait_until(all_recorded, 15, "every recording rule to have series", interval=0.5)
        except TestFailure:
            raise TestFailure("recording rules without series: " +
                              ", ".join(n for n in records if not values[n]))
        for name in records:
            if "ratio" in name:
                outside = [v for v in values[name].values() if not 0 <= v <= 1]
                if outside:
                    raise TestFailure(f"{name} has values outside [0, 1]: {outside}")
        log(f"{len(rules)} rules healthy, {len(records)} recording rules with series")

    def run(self):
        self.start()
        self.drive_traffic()
        self.drive_cluster_traffic()
        self.check_counters()
        self.check_dashboard()
        self.check_rules()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shardcast", required=True, help="the shardcast binary")
    parser.add_argument("--source", required=True, help="the repository root")
    parser.add_argument("--prometheus", default="prometheus", help="the Prometheus binary")
    parser.add_argument("--nats-server", default="nats-server", help="the nats-server binary")
    parser.add_argument("--dashboard",
                        help="a dashboard JSON to check instead of deploy/grafana/shardcast.json")
    parser.add_argument("--timeout", type=int, default=120, help="seconds before giving up")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    # Prometheus resolves rule_files relative to its config file, which is in a temp dir.
    args.source = os.path.abspath(args.source)
    args.shardcast = os.path.abspath(args.shardcast)
    return args


def main():
    args = parse_args()
    if not find_program(args.prometheus):
        print(f"FAIL: {args.prometheus} not found (Debian: apt-get install prometheus)")
        return 1
    nats_server = find_program(args.nats_server)
    if not nats_server:
        print(f"FAIL: {args.nats_server} not found (Debian: apt-get install nats-server)")
        return 1
    args.nats_server = nats_server

    return run_scenario(
        lambda workdir: Scenario(args, workdir), timeout=args.timeout, keep=args.keep,
        workdir_prefix="shardcast-prometheus-test-",
        summary=lambda scenario: f"{scenario.panel_queries} dashboard queries returned series; "
                                 "counters match")


if __name__ == "__main__":
    sys.exit(main())
