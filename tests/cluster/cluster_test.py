#!/usr/bin/python3
"""Cluster mode end to end: three shardcast nodes joined by a real NATS server, behind a
real nginx configured from deploy/nginx/shardcast.conf, with 300 clients connected through
nginx. The nodes run the secure way: every client proves its id with a connect token (JWT,
HS256, signed with a random secret the nodes read from a file) and every API call carries an
API key (from a file too). One process, phases in order, each with exact counts:

  1. start      every client lands on some node, every node holds some; each node
                subscribes on NATS to <prefix>.client.<id> for exactly the ids it holds
  2. targeted   POST /api/v1/send on each node to every client (every publishing node x
                receiving node pair), and PUB/HPUB straight onto <prefix>.client.<id>:
                each client gets exactly its messages, in order per publisher
  3. broadcast  a broadcast via each node and one straight onto <prefix>.broadcast reach
                every client exactly once
  4. replace    a second session for an id on another node closes the first with 4001;
                sends via the first node then reach the second session; a disconnect via
                the first node closes it
  5. upstream   text frames clients send arrive on <prefix>.upstream.<id>, byte for byte
  6. node kill  SIGKILL one node mid-traffic: its clients reconnect through nginx, no other
                client loses a message, and a fresh round reaches every client exactly once
  7. NATS down  nats-server stopped and restarted on its port: local deliveries never stop,
                remote sends are counted as failed with reason bus_unavailable, the nodes
                reconnect by themselves and restore their subscriptions
  8. upstream identity
                a client's frames go out on <prefix>.upstream.<the token's sub>; one whose
                token has an info claim adds it as header Shardcast-Info, compact JSON; one
                without adds no such header
  9. refused upgrades
                upgrades for an id held on another node that the server refuses (forged
                token, another id's token, no Sec-WebSocket-Key) put no claim on NATS and
                leave the session alone; a valid one claims the id and replaces it (4001)
 10. shardcast.v1
                a client that offered shardcast.v1 gets {"data":<the data as JSON>} for
                sends via another node (a JSON value crosses NATS with Shardcast-Data: json)
                and for a backend's messages on NATS; a plain client gets the bare data; a
                JSON-marked message that is not JSON is dropped as bad_header
 11. node stop  SIGTERM a node whose drain a stalled client keeps busy: a send routed to
                another of its clients over NATS during the drain still arrives, before
                the 1001, and the node exits 0

The nodes run with cluster.subject_prefix=sctest, so the prefix setting is exercised.

Usage: cluster_test.py --shardcast <binary> --source <repository root>
Exits 0 when all of it holds; gives up after --timeout seconds.
"""
import argparse
import collections
import json
import os
import secrets
import sys
import threading
import time

# The helpers below are imported from the source tree, which must not collect __pycache__.
sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
# This test's own modules, and the harness it shares with the other end-to-end tests.
sys.path[:0] = [HERE, os.path.join(HERE, os.pardir, "support")]
from harness.processes import NatsServer  # noqa: E402
from harness.raw_websocket import RawWebSocket, upgrade_answer  # noqa: E402
from harness.runner import find_program, run_scenario  # noqa: E402
from harness.waiting import TestFailure, log, wait_until  # noqa: E402
from credentials import Credentials  # noqa: E402
from nats_client import NatsClient  # noqa: E402
from nginx import Nginx  # noqa: E402
from node import Node, write_config  # noqa: E402
from ws_clients import ClientLoop, Client, start_clients  # noqa: E402

PREFIX = "sctest"
NODE_NAMES = ["n1", "n2", "n3"]
# Short enough that a dead peer is noticed within the test, long enough that a loaded
# machine (or a sanitizer build) does not drop the clients that answer.
HEARTBEAT = {"heartbeat_interval": "1s", "heartbeat_timeout": "5s"}
# The name our own NATS connections give, so the subscription checks can skip them.
TEST_CONNECTION = "shardcast-cluster-test"
# Messages sent via the disconnected node during the NATS outage.
OUTAGE_REMOTE_SENDS = 20


def message(phase, source, target, seq):
    """The text of one message: the phase tag first (clients group by it), then who
    published it, to whom, and its sequence number per (source, target)."""
    return f"{phase}:{source}:{target}:{seq}"


def source_of(text):
    return text.split(":", 2)[1]


def info_header_matches(header, claim):
    """Whether a Shardcast-Info header is the info claim as compact JSON: the same object, with
    no whitespace (the server may order the keys its own way). None matches only None."""
    if header is None or claim is None:
        return header is None and claim is None
    try:
        value = json.loads(header)
    except ValueError:
        return False
    return value == claim and header == json.dumps(value, separators=(",", ":"),
                                                   ensure_ascii=False)


def limited(problems, limit=12):
    more = len(problems) - limit
    return "\n".join(f"  {p}" for p in problems[:limit]) + (f"\n  ... and {more} more"
                                                             if more > 0 else "")


class Publisher(threading.Thread):
    """Sends to every client in turn through the given nodes at a modest rate, on HTTP
    connections of its own, until stopped; records what each 202 accepted."""

    def __init__(self, nodes, client_ids, phase, interval=0.004, limit=20000):
        super().__init__(daemon=True)
        self.apis = [n.new_api() for n in nodes]
        self.client_ids = client_ids
        self.phase = phase
        self.interval = interval
        self.limit = limit
        self.sent = 0
        self.expected = collections.defaultdict(list)  # client id -> messages, in order
        self.error = None
        self.halt = threading.Event()

    def run(self):
        seq = collections.Counter()
        try:
            while not self.halt.is_set() and self.sent < self.limit:
                i = self.sent
                to = self.client_ids[i % len(self.client_ids)]
                api = self.apis[(i + i // len(self.client_ids)) % len(self.apis)]
                text = message(self.phase, api.node, to, seq[(api.node, to)])
                api.send(to, text)
                seq[(api.node, to)] += 1
                self.expected[to].append(text)
                self.sent += 1
                self.halt.wait(self.interval)
        except Exception as e:  # reported by finish()
            self.error = e
        finally:
            for api in self.apis:
                api.close()

    def wait_sent(self, count, what):
        wait_until(lambda: self.sent >= count or self.error or not self.is_alive(), 30,
                   lambda: f"{what} (sent {self.sent} of {count})")
        if self.sent < count and not self.error:
            raise TestFailure(f"publisher {self.phase} stopped after {self.sent} sends, "
                              f"before {count}")
        if self.error:
            raise TestFailure(f"publisher {self.phase} failed: {self.error}")

    def finish(self):
        self.halt.set()
        self.join(20)
        if self.is_alive():
            raise TestFailure(f"publisher {self.phase} did not stop")
        if self.error:
            raise TestFailure(f"publisher {self.phase} failed: {self.error}")


class Scenario:
    """The whole test: start, phases, stop. Runs on the main thread."""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.credentials = Credentials(workdir)
        self.nats = None
        self.nodes = []
        self.nginx = None
        self.loop = ClientLoop()
        self.clients = []  # the clients behind nginx
        self.direct = []  # clients connected to a node's own port
        self.where = {}  # client id -> name of the node holding it
        # client id -> phase -> messages expected, in publish order per source
        self.expected = collections.defaultdict(lambda: collections.defaultdict(list))
        self.lossy = {}  # phase -> ids that may miss messages (subsequence check)
        self.checked_phases = []
        # phase -> the clients the final check verifies it for, when not self.clients
        self.checked_clients = {}
        # client -> every frame it must have received, in order: the clients of the phases
        # whose frames carry no phase tag (JSON), compared whole
        self.whole = {}
        self.current = "setup"  # the step running, named in a failure

    # --- small helpers -------------------------------------------------------------------

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def alive(self):
        return [n for n in self.nodes if not n.killed]

    def total(self, nodes, name, **labels):
        return sum(n.metric(name, **labels) for n in nodes)

    def bus_messages(self, kind):
        """(out, in) of shardcast_bus_messages_total for one kind, by node name."""
        return tuple(self.by_node("shardcast_bus_messages_total", direction=d, kind=kind)
                     for d in ("out", "in"))

    def check_bus_growth(self, kind, before, want_out, out_why, want_in, in_why):
        """Each node's bus messages of kind grew by exactly want_out(node) out and want_in(node)
        in since before (from bus_messages)."""
        after = self.bus_messages(kind)
        problems = []
        for n in self.nodes:
            for direction, got_before, got_after, want, why in (
                    ("out", before[0], after[0], want_out(n), out_why),
                    ("in", before[1], after[1], want_in(n), in_why(n))):
                grew = got_after[n.name] - got_before[n.name]
                if grew != want:
                    problems.append(f'{n.name}: bus messages {direction} (kind="{kind}") grew '
                                    f"by {grew:g}, expected {want} ({why})")
        if problems:
            raise TestFailure("bus counters:\n" + limited(problems))

    def by_node(self, name, **labels):
        return {n.name: n.metric(name, **labels) for n in self.alive()}

    def publish(self, api, phase, to, seq):
        text = message(phase, api.node, to, seq)
        api.send(to, text)
        self.expected[to][phase].append(text)
        return text

    def expect_all(self, phase, text, clients=None):
        for c in clients if clients is not None else self.clients:
            self.expected[c.id][phase].append(text)

    def wait_sent_total(self, nodes, before, delta, what):
        """shardcast_messages_sent_total over `nodes` reaches before + delta and stays
        there: the frames written are exactly the messages expected, none twice."""
        now = [0.0]

        def reached():
            now[0] = self.total(nodes, "shardcast_messages_sent_total")
            return now[0] >= before + delta
        wait_until(reached, 20, lambda: f"{what}: shardcast_messages_sent_total to grow by "
                   f"{delta} (grew by {now[0] - before:g})")
        time.sleep(0.3)
        after = self.total(nodes, "shardcast_messages_sent_total")
        if after != before + delta:
            raise TestFailure(f"{what}: shardcast_messages_sent_total grew by {after - before:g}"
                              f", expected exactly {delta} (a message written twice?)")

    def wait_delivered(self, phase, clients, timeout=30):
        def short():
            return [c for c in clients
                    if len(c.by_phase.get(phase, ())) < len(self.expected[c.id][phase])]

        def describe():
            missing = short()
            return (f"{len(missing)} client(s) to receive all their {phase} messages: " +
                    ", ".join(f"{c.id} has {len(c.messages(phase))}/"
                              f"{len(self.expected[c.id][phase])} (node "
                              f"{self.where.get(c.id)}, open {c.open})" for c in missing[:8]))
        wait_until(lambda: not short(), timeout, describe, interval=0.1)

    def verify(self, phase, clients, lossy=()):
        """Each client received exactly the messages expected for `phase` (for ids in
        `lossy`, a subset), no message twice, and in publish order per source."""
        problems = []
        for c in clients:
            got = c.messages(phase)
            want = self.expected[c.id][phase]
            dupes = [t for t, n in collections.Counter(got).items() if n > 1]
            if dupes:
                problems.append(f"{c.id}: received twice: {dupes[:3]}")
                continue
            got_set, want_set = set(got), set(want)
            extra = [t for t in got if t not in want_set]
            missing = [t for t in want if t not in got_set]
            if extra:
                problems.append(f"{c.id}: received unexpected {extra[:3]}")
            if missing and c.id not in lossy:
                problems.append(f"{c.id}: missing {len(missing)} of {len(want)}, e.g. "
                                f"{missing[:3]} (node {self.where.get(c.id)})")
            if extra or (missing and c.id not in lossy):
                continue
            for source in {source_of(t) for t in got}:
                got_order = [t for t in got if source_of(t) == source]
                want_order = [t for t in want if source_of(t) == source and t in got_set]
                if got_order != want_order:
                    problems.append(f"{c.id}: messages from {source} out of order: got "
                                    f"{got_order[:6]}, published {want_order[:6]}")
        if problems:
            raise TestFailure(f"{phase}: {len(problems)} client(s) did not receive "
                              f"exactly what was published:\n{limited(problems)}")
        if phase not in self.checked_phases:
            self.checked_phases.append(phase)
            self.lossy[phase] = set(lossy)

    def locate(self, timeout=20):
        """Finds the node holding each client (GET /api/v1/clients/{id} on every live node):
        exactly one must say online."""
        seen = {}

        def all_located():
            seen.clear()
            for c in self.clients:
                on = [n.name for n in self.alive() if n.api.online(c.id)]
                if len(on) != 1:
                    seen[c.id] = on
                    return False
                self.where[c.id] = on[0]
            return True
        wait_until(all_located, timeout, lambda: "every client to be online on exactly one "
                   f"node: {dict(list(seen.items())[:5])}", interval=0.2)
        counts = collections.Counter(self.where.values())
        for n in self.alive():
            sessions = n.metric("shardcast_sessions")
            if sessions != counts[n.name]:
                raise TestFailure(f"{n.name}: shardcast_sessions is {sessions:g}, but "
                                  f"{counts[n.name]} clients are online there")
        return counts

    def clients_on(self, name):
        return [c for c in self.clients if self.where[c.id] == name]

    def wait_subscriptions(self, what):
        """Every live node has one NATS connection subscribed to <prefix>.broadcast and to
        <prefix>.client.<id> for each id it holds."""
        want = {n.name: {f"{PREFIX}.broadcast"} for n in self.alive()}
        for cid, name in self.where.items():
            want[name].add(f"{PREFIX}.client.{cid}")
        lacking = {}

        def subscribed():
            lacking.clear()
            connections = [subs for name, subs in self.nats.connections().values()
                           if name != TEST_CONNECTION]
            for name, subjects in want.items():
                best = min((subjects - subs for subs in connections), key=len,
                           default=subjects)
                if best:
                    lacking[name] = sorted(best)
            return not lacking
        wait_until(subscribed, 20, lambda: f"{what}: NATS subscriptions of each node for "
                   "its clients; lacking (closest connection): " +
                   "; ".join(f"{n}: {len(s)} e.g. {s[:3]}" for n, s in lacking.items()),
                   interval=0.2)
        gauges = {}

        def gauges_match():
            gauges.update(self.by_node("shardcast_bus_subscriptions"))
            return all(gauges[name] == len(subjects) for name, subjects in want.items())
        wait_until(gauges_match, 10, lambda: f"{what}: shardcast_bus_subscriptions to be one "
                   "per client held plus broadcast: " + ", ".join(
                       f"{name} {gauges.get(name)} (expected {len(subjects)})"
                       for name, subjects in want.items()))

    def nats_client(self):
        return NatsClient(self.nats.port, TEST_CONNECTION)

    # --- processes -----------------------------------------------------------------------

    def start(self):
        self.nats = NatsServer(self.workdir, self.args.nats_server)
        self.nats.start()
        log(f"phase 1 (start): nats-server on 127.0.0.1:{self.nats.port} "
            f"(monitoring {self.nats.monitor_port})")
        config = os.path.join(self.workdir, "cluster.yaml")
        write_config(config, {
            "shards": 2,
            "log": {"summary_interval": 0},
            # A fixed send buffer, so the stalled client of phase 8 keeps its session busy
            # with a few hundred KiB instead of the megabytes autotuning lets the kernel take.
            "session": {**HEARTBEAT, "socket_send_buffer": "64KiB"},
            "shutdown": {"drain_timeout": "2s"},
            # The bus without history: a send crosses NATS only to reach another node (the
            # counts below say so). With history every send is stored first:
            # resume_cluster_test.py.
            "history": {"enabled": False},
            "auth": self.credentials.auth_config(),
            "cluster": {
                "nats": {"url": self.nats.url, "reconnect_wait": "100ms",
                         "reconnect_wait_max": "1s"},
                "subject_prefix": PREFIX,
                "upstream": True,
            },
        })
        for name in NODE_NAMES:
            self.nodes.append(Node(self.args.shardcast, self.workdir, name, config,
                                   [f"cluster.node={name}"], self.credentials.api_key))
        log("phase 1 (start): nodes " +
            ", ".join(f"{n.name} on {n.address}" for n in self.nodes))
        for n in self.nodes:
            wait_until(lambda: n.metric("shardcast_bus_connected") == 1, 20,
                       f"{n.name}: shardcast_bus_connected to be 1")
            stats = n.api.get_json("/api/v1/stats")
            cluster = stats.get("cluster")
            if stats.get("node") != n.name or not isinstance(cluster, dict) \
                    or cluster.get("bus_connected") is not True:
                raise TestFailure(f"{n.name}: /api/v1/stats has node={stats.get('node')!r} "
                                  f"cluster={cluster!r}, expected node={n.name!r} and "
                                  "cluster.bus_connected true")
            info = n.api.metric("shardcast_node_info", node=n.name)
            if info != 1:
                raise TestFailure(f'{n.name}: shardcast_node_info{{node="{n.name}"}} is '
                                  f"{info}, expected 1")
            # The keys are in force: no key, no API; no token, no session.
            keyless = n.new_api(api_key=None)
            try:
                status, body = keyless.request("GET", "/api/v1/stats")
            finally:
                keyless.close()
            if status != 401:
                raise TestFailure(f"{n.name}: GET /api/v1/stats without an API key answered "
                                  f"{status}, expected 401: {body[:200]!r}")
            status, head = upgrade_answer(n.port, "/ws/c000", {})
            if status != 401:
                raise TestFailure(f"{n.name}: an upgrade without a token answered {status}, "
                                  f"expected 401: {head[:200]!r}")
        log("phase 1 (start): the nodes refuse API calls without the key (401) and clients "
            "without a token (401)")

        self.nginx = Nginx(self.workdir, self.args.nginx_snippet,
                           [n.address for n in self.nodes], self.args.nginx)
        log(f"phase 1 (start): nginx on 127.0.0.1:{self.nginx.port} from "
            f"{self.args.nginx_snippet} ({self.nginx.original_servers} server lines replaced)")

    def stop(self, passed):
        """Stops everything the test started. When the test passed so far, every node still
        alive must also stop cleanly (exit 0 on SIGTERM)."""
        problems = []

        def attempt(what, action):
            try:
                return action()
            except Exception as e:  # one failed stop must not leave the others running
                problems.append(f"stopping {what} failed: {e!r}")
        for c in self.clients + self.direct:
            c.reconnect = False
        attempt("the clients", self.loop.stop)
        for n in self.nodes:
            if n.killed:
                attempt(n.name, n.process.stop)
                continue
            code = attempt(n.name, n.stop)
            if code != 0:
                problems.append(f"{n.name} exited {code} on SIGTERM:\n{n.process.log_tail()}")
        if self.nginx:
            attempt("nginx", self.nginx.stop)
        if self.nats:
            attempt("nats-server", self.nats.stop)
        if not passed:
            for n in self.nodes:
                print(f"--- {n.name} log (tail) ---\n{n.process.log_tail(40)}")
            if self.nginx:
                print(f"--- nginx log (tail) ---\n{self.nginx.log()[-3000:]}")
            if self.nats and self.nats.process:
                print(f"--- nats-server log (tail) ---\n{self.nats.process.log_tail(20)}")
        return problems

    # --- phases --------------------------------------------------------------------------

    def phase_start(self):
        ids = [f"c{i:03d}" for i in range(self.args.clients)]
        self.clients = start_clients(self.loop, self.nginx.port, ids, reconnect=True,
                                     token_for=self.credentials.token)

        def connected():
            failed = [c for c in self.clients if c.failure]
            if failed:
                raise TestFailure(f"{len(failed)} client(s) could not connect through nginx, "
                                  f"e.g. {failed[0].id}: {failed[0].failure}")
            return all(c.connections for c in self.clients)
        wait_until(connected, 60, lambda: f"{len(self.clients)} clients to connect through "
                   f"nginx ({sum(1 for c in self.clients if c.connections)} did)")
        counts = self.locate()
        log(f"phase 1 (start): {len(self.clients)} clients connected through nginx: " +
            ", ".join(f"{n.name} holds {counts[n.name]}" for n in self.nodes))
        empty = [n.name for n in self.nodes if counts[n.name] == 0]
        if empty:
            raise TestFailure(f"nginx placed no client on {empty}: {dict(counts)}")
        self.wait_subscriptions("after connecting")
        log("phase 1 (start): each node is subscribed on NATS to its clients' subjects")

    def phase_targeted(self):
        phase = "p2"
        sent_before = self.total(self.nodes, "shardcast_messages_sent_total")
        bus_before = self.bus_messages("send")
        rounds = 2
        for seq in range(rounds):
            for n in self.nodes:
                for c in self.clients:
                    self.publish(n.api, phase, c.id, seq)
        nats = self.nats_client()
        try:
            for c in self.clients:
                text = message(phase, "nats", c.id, 0)
                nats.publish(f"{PREFIX}.client.{c.id}", text)
                self.expected[c.id][phase].append(text)
                # A backend's own headers (no Shardcast-Op) make it no less a plain message.
                text = message(phase, "nats", c.id, 1)
                nats.publish(f"{PREFIX}.client.{c.id}", text, headers={"X-Trace-Id": c.id})
                self.expected[c.id][phase].append(text)
            nats.flush()
        finally:
            nats.close()
        per_client = rounds * len(self.nodes) + 2
        log(f"phase 2 (targeted): sent {per_client} messages to each client: {rounds} via "
            "each node's API, 2 straight onto NATS (PUB, HPUB)")
        self.wait_delivered(phase, self.clients)
        self.verify(phase, self.clients)
        self.wait_sent_total(self.nodes, sent_before, per_client * len(self.clients),
                             "the targeted sends")
        pairs = collections.Counter()
        for c in self.clients:
            for text in c.messages(phase):
                pairs[(source_of(text), self.where[c.id])] += 1
        log("phase 2 (targeted): every client got exactly its messages, in order; per "
            "(publisher -> holder): " + ", ".join(f"{p}->{h} {k}"
                                                   for (p, h), k in sorted(pairs.items())))
        counts = collections.Counter(self.where.values())
        self.check_bus_growth(
            "send", bus_before,
            want_out=lambda n: rounds * (len(self.clients) - counts[n.name]),
            out_why=f"{rounds} per client held elsewhere",
            want_in=lambda n: (rounds * (len(self.nodes) - 1) + 2) * counts[n.name],
            in_why=lambda n: f"from the other nodes and NATS, for its {counts[n.name]} clients")
        log("phase 2 (targeted): shardcast_messages_sent_total and the bus in/out counters "
            "match exactly")

    def phase_broadcast(self):
        phase = "p3"
        sent_before = self.total(self.nodes, "shardcast_messages_sent_total")
        bus_before = self.bus_messages("broadcast")
        published = collections.Counter()
        for n in self.nodes:
            text = message(phase, n.name, "*", 0)
            n.api.broadcast(text)
            self.expect_all(phase, text)
            published[n.name] += 1
        # The exception is held on another node than the one publishing: it crosses the bus.
        via, excluded = self.nodes[1], self.clients_on(self.nodes[2].name)[0]
        text = message(phase, via.name, "*", 1)
        via.api.broadcast(text, except_id=excluded.id)
        self.expect_all(phase, text, [c for c in self.clients if c is not excluded])
        published[via.name] += 1
        nats = self.nats_client()
        try:
            text = message(phase, "nats", "*", 0)
            nats.publish(f"{PREFIX}.broadcast", text)
            nats.flush()
            self.expect_all(phase, text)
        finally:
            nats.close()
        self.wait_delivered(phase, self.clients)
        self.verify(phase, self.clients)
        self.wait_sent_total(self.nodes, sent_before,
                             (len(self.nodes) + 2) * len(self.clients) - 1, "the broadcasts")
        self.check_bus_growth(
            "broadcast", bus_before,
            want_out=lambda n: published[n.name], out_why="its own broadcasts",
            want_in=lambda n: sum(published.values()) - published[n.name] + 1,
            in_why=lambda n: "the other nodes' and the one via NATS; never its own back")
        log(f"phase 3 (broadcast): {len(self.nodes)} broadcasts via the nodes, one more with "
            f"an exception held on {self.nodes[2].name}, and 1 via NATS: each reached every "
            "client exactly once; bus in/out counters match exactly")

    def phase_replace(self):
        phase = "p4"
        a, b = self.nodes[0], self.nodes[1]
        cid = "xreplace"
        subject = f"{PREFIX}.client.{cid}"
        watcher = self.nats_client()
        try:
            sid = watcher.subscribe(subject)
            watcher.flush()
            claims_before = b.metric("shardcast_bus_messages_total", direction="out",
                                     kind="claim")
            first = Client(self.loop, a.port, cid, reconnect=False,
                           token=self.credentials.token(cid))
            self.direct.append(first)
            first.start()
            wait_until(lambda: first.connections or first.failure, 10,
                       f"{cid} to connect to {a.name}")
            if first.failure:
                raise TestFailure(f"{cid} could not connect to {a.name}: {first.failure}")
            wait_until(lambda: a.api.online(cid), 10, f"{cid} to be online on {a.name}")

            def holders():
                return {cid_: name for cid_, (name, subs) in self.nats.connections().items()
                        if subject in subs and name != TEST_CONNECTION}
            a_connections = wait_until(holders, 10, f"{a.name} to subscribe to {subject}")
            # A delivered message proves the session is open, not mid-upgrade.
            self.publish(a.api, phase, cid, 0)
            self.wait_delivered(phase, [first])

            second = Client(self.loop, b.port, cid, reconnect=False,
                            token=self.credentials.token(cid))
            self.direct.append(second)
            self.checked_clients[phase] = [second]
            second.start()
            wait_until(lambda: first.close_codes, 10,
                       f"{cid}'s session on {a.name} to close once a session on {b.name} opens")
            if first.close_codes != [4001]:
                raise TestFailure(f"{cid}'s session on {a.name} closed with "
                                  f"{first.close_codes}, expected [4001] (replaced)")
            wait_until(lambda: second.connections or second.failure, 10,
                       f"{cid} to connect to {b.name}")
            if second.failure or not second.open:
                raise TestFailure(f"{cid}'s session on {b.name} is not open: "
                                  f"{second.failure} {second.close_codes}")
            wait_until(lambda: b.api.online(cid) and not a.api.online(cid), 10,
                       f"{cid} to be online on {b.name} only")
            wait_until(lambda: set(holders()) - set(a_connections), 10,
                       f"{b.name} to subscribe to {subject}")
            wait_until(lambda: any(m.headers.get("Shardcast-Op") == "claim"
                                   for m in watcher.messages(sid)), 10,
                       f"a claim (header Shardcast-Op: claim) on {subject}")
            claims = b.metric("shardcast_bus_messages_total", direction="out",
                              kind="claim") - claims_before
            if claims != 1:
                raise TestFailure(f'{b.name}: bus messages out (kind="claim") grew by '
                                  f"{claims:g}, expected 1 (the one session it opened)")
            log(f"phase 4 (replace): {cid} on {a.name} closed with 4001 when it connected "
                f"to {b.name}; the claim was seen on NATS")

            remote = [self.publish(a.api, phase, cid, k) for k in range(1, 6)]
            self.publish(b.api, phase, cid, 0)
            self.expected[cid][phase] = self.expected[cid][phase][1:]  # for the second
            self.wait_delivered(phase, [second])
            self.verify(phase, [second])
            if first.messages(phase) != [message(phase, a.name, cid, 0)]:
                raise TestFailure(f"the replaced session got {first.messages(phase)}")

            def plain():
                return [m.payload.decode() for m in watcher.messages(sid)
                        if "Shardcast-Op" not in m.headers]
            # The watcher has its own NATS connection: it may get the messages after b did.
            wait_until(lambda: [t for t in plain() if t in remote] == remote, 10,
                       lambda: f"NATS to carry {remote} on {subject} as plain messages, in "
                       f"order; it carried {plain()}")
            log(f"phase 4 (replace): sends via {a.name} reached the new session on {b.name} "
                "as plain NATS messages")

            status, body = a.api.request("POST", "/api/v1/disconnect",
                                         f'{{"to":"{cid}","code":4005,"reason":"cluster"}}')
            if status != 202:
                raise TestFailure(f"{a.name}: POST /api/v1/disconnect answered "
                                  f"{status}: {body[:200]!r}")
            wait_until(lambda: second.close_codes, 10,
                       f"a disconnect via {a.name} to close {cid}'s session on {b.name}")
            if second.close_codes != [4005]:
                raise TestFailure(f"disconnect via {a.name} closed {cid} on {b.name}"
                                  f" with {second.close_codes}, expected [4005]")
            wait_until(lambda: any(m.headers.get("Shardcast-Op") == "disconnect"
                                   for m in watcher.messages(sid)), 10,
                       f"a disconnect (header Shardcast-Op: disconnect) on {subject}")
            wait_until(lambda: not b.api.online(cid), 10, f"{cid} to go offline on {b.name}")
        finally:
            watcher.close()
        log(f"phase 4 (replace): a disconnect via {a.name} closed the session on {b.name} "
            "with the code given")

    def phase_upstream(self):
        watcher = self.nats_client()
        try:
            sid = watcher.subscribe(f"{PREFIX}.upstream.>")
            watcher.flush()
            out_before = self.by_node("shardcast_bus_messages_total", direction="out",
                                      kind="upstream")
            senders = [self.clients_on(n.name)[0] for n in self.nodes]
            want = []
            for c in senders:
                for k in range(3):
                    text = f'frame {k} from {c.id} \u2713 {{"k":{k}}}'
                    c.send_frame(text)
                    want.append((f"{PREFIX}.upstream.{c.id}", text.encode()))
            wait_until(lambda: len(watcher.messages(sid)) >= len(want), 15,
                       lambda: f"{len(want)} frames on {PREFIX}.upstream.> (got "
                       f"{len(watcher.messages(sid))})")
            time.sleep(0.3)
            got = [(m.subject, m.payload) for m in watcher.messages(sid)]
        finally:
            watcher.close()
        for c in senders:
            subject = f"{PREFIX}.upstream.{c.id}"
            mine = [p for s, p in got if s == subject]
            expected = [p for s, p in want if s == subject]
            if mine != expected:
                raise TestFailure(f"on {subject} NATS carried {mine}, expected "
                                  f"{expected}")
        if len(got) != len(want):
            raise TestFailure(f"{len(got)} upstream messages, expected {len(want)}: "
                              f"{got}")
        out_after = self.by_node("shardcast_bus_messages_total", direction="out",
                                 kind="upstream")
        for n in self.nodes:
            if out_after[n.name] - out_before[n.name] != 3:
                raise TestFailure(f'{n.name}: bus messages out (kind="upstream") '
                                  f"grew by {out_after[n.name] - out_before[n.name]:g}, "
                                  "expected 3")
        log(f"phase 5 (upstream): {len(want)} client frames (one client per node) arrived "
            f"on {PREFIX}.upstream.<id> byte for byte")

    def phase_node_kill(self):
        victim = self.nodes[-1]
        survivors = self.nodes[:-1]
        moved = self.clients_on(victim.name)
        stayed = [c for c in self.clients if self.where[c.id] != victim.name]
        reconnects_before = {c.id: c.connections for c in self.clients}
        publisher = Publisher(survivors, [c.id for c in self.clients], "p6t")
        publisher.start()
        publisher.wait_sent(150, "the publisher to get going")
        victim.kill()
        log(f"phase 6 (node kill): SIGKILLed {victim.name} after {publisher.sent} sends; "
            f"its {len(moved)} clients must reconnect through nginx")
        failed = []

        def reconnected():
            failed[:] = [c for c in moved if c.failure]
            return not failed and all(c.connections > reconnects_before[c.id] for c in moved)
        wait_until(reconnected, 45, lambda: f"the {len(moved)} clients of {victim.name} to "
                   f"reconnect ({sum(1 for c in moved if c.connections > 1)} did; "
                   f"failed: {[(c.id, c.failure) for c in failed[:3]]})")
        counts = self.locate()
        self.wait_subscriptions("after the reconnects")
        log("phase 6 (node kill): every client is connected again: " +
            ", ".join(f"{n.name} holds {counts[n.name]}" for n in survivors))
        dropped = [c.id for c in stayed if c.connections != reconnects_before[c.id]]
        if dropped:
            raise TestFailure(f"clients of the surviving nodes lost their connection:"
                              f" {dropped[:10]}")
        publisher.wait_sent(publisher.sent + 150, "the publisher to go on after the reconnect")
        publisher.finish()
        for c in self.clients:
            self.expected[c.id]["p6t"] = publisher.expected[c.id]
        self.wait_delivered("p6t", stayed)
        self.verify("p6t", self.clients, lossy={c.id for c in moved})
        log(f"phase 6 (node kill): {publisher.sent} sends mid-kill: the survivors' clients "
            "got every one, in order; the moved clients none twice")

        # One more message from each survivor to every client: each client hears from both
        # again, and once they are in, nothing sent earlier is still on its way (ordering per
        # publisher), so the count below starts from a quiet moment.
        for n in survivors:
            for c in self.clients:
                self.publish(n.api, "p6f", c.id, 0)
        self.wait_delivered("p6f", self.clients)
        self.verify("p6f", self.clients)

        # A quiet moment first, so the round's frames are the only ones counted.
        last = [None]

        def quiet():
            now = self.total(survivors, "shardcast_messages_sent_total")
            steady, last[0] = now == last[0], now
            return steady
        wait_until(quiet, 15, "shardcast_messages_sent_total to stop changing", interval=0.5)
        sent_before = last[0]
        for i, c in enumerate(self.clients):
            self.publish(survivors[i % len(survivors)].api, "p6r", c.id, 0)
        self.wait_delivered("p6r", self.clients)
        self.verify("p6r", self.clients)
        self.wait_sent_total(survivors, sent_before, len(self.clients), "the fresh round")
        log(f"phase 6 (node kill): a fresh round via the survivors reached all "
            f"{len(self.clients)} clients exactly once; sent_total grew by exactly that")

    def phase_nats_restart(self):
        a, b = self.alive()[:2]
        target = self.clients_on(a.name)[0]
        reconnects_before = self.by_node("shardcast_bus_reconnects_total")
        failed_before = self.by_node("shardcast_messages_failed_total", reason="bus_unavailable")
        ticker = Publisher([a], [target.id], "p7l", interval=0.02, limit=3000)
        ticker.start()
        ticker.wait_sent(10, f"local sends to {target.id} via {a.name} to start")

        self.nats.stop()
        for n in (a, b):
            wait_until(lambda: n.metric("shardcast_bus_connected") == 0, 15,
                       f"{n.name}: shardcast_bus_connected to become 0 once NATS stopped")
        outage_start = ticker.sent
        log(f"phase 7 (NATS down): nats-server stopped; both nodes report "
            f"shardcast_bus_connected 0 ({outage_start} local sends so far)")
        status = b.api.get_json("/api/v1/stats").get("cluster", {}).get("bus_connected")
        if status is not False:
            raise TestFailure(f"{b.name}: /api/v1/stats cluster.bus_connected is "
                              f"{status!r} while NATS is down, expected false")
        for k in range(OUTAGE_REMOTE_SENDS):
            b.api.send(target.id, message("p7r", b.name, target.id, k))
        local_during = self.clients_on(a.name)
        text = message("p7b", a.name, "*", 0)
        a.api.broadcast(text)
        self.expect_all("p7b", text, local_during)
        failed = [0.0]

        def counted():
            failed[0] = b.metric("shardcast_messages_failed_total",
                                 reason="bus_unavailable") - failed_before[b.name]
            return failed[0] >= OUTAGE_REMOTE_SENDS
        wait_until(counted, 10, lambda: f'{b.name}: shardcast_messages_failed_total'
                   f'{{reason="bus_unavailable"}} to grow by {OUTAGE_REMOTE_SENDS} '
                   f"(grew by {failed[0]:g})")
        ticker.wait_sent(outage_start + 40, "local sends during the outage")
        self.wait_delivered("p7b", local_during)
        self.verify("p7b", local_during)
        log(f"phase 7 (NATS down): {OUTAGE_REMOTE_SENDS} remote sends via {b.name} counted as "
            f"bus_unavailable; a broadcast via {a.name} reached its {len(local_during)} "
            f"clients; {ticker.sent - outage_start} local sends during the outage")

        self.nats.start()
        log(f"phase 7 (NATS down): nats-server restarted on 127.0.0.1:{self.nats.port}")
        for n in (a, b):
            wait_until(lambda: n.metric("shardcast_bus_connected") == 1, 20,
                       f"{n.name}: shardcast_bus_connected to return to 1 by itself")
            grew = n.metric("shardcast_bus_reconnects_total") - reconnects_before[n.name]
            if grew < 1:
                raise TestFailure(f"{n.name}: shardcast_bus_reconnects_total grew by "
                                  f"{grew:g}, expected at least 1")
        self.wait_subscriptions("after the NATS restart")
        ticker.wait_sent(ticker.sent + 10, "local sends after the restart")
        ticker.finish()
        self.expected[target.id]["p7l"] = ticker.expected[target.id]
        self.wait_delivered("p7l", [target])
        self.verify("p7l", [target])
        for n in (a, b):
            failed_now = n.metric("shardcast_messages_failed_total",
                                  reason="bus_unavailable") - failed_before[n.name]
            # b: its remote sends. a: its broadcast, whose remote half could not go out; its
            # local sends are not failures.
            want, why = ((OUTAGE_REMOTE_SENDS, f"the {OUTAGE_REMOTE_SENDS} remote sends")
                         if n is b else (1, "the broadcast's remote half, and no local send"))
            if failed_now != want:
                raise TestFailure(f'{n.name}: shardcast_messages_failed_total'
                                  f'{{reason="bus_unavailable"}} grew by {failed_now:g}, '
                                  f"expected exactly {want} ({why})")
        log(f"phase 7 (NATS down): all {ticker.sent} local sends to {target.id} arrived in "
            "order; both nodes reconnected and resubscribed by themselves")

        sent_before = self.total(self.alive(), "shardcast_messages_sent_total")
        for c in self.clients:
            other = b if self.where[c.id] == a.name else a
            self.publish(other.api, "p7f", c.id, 0)
        text = message("p7z", b.name, "*", 0)
        b.api.broadcast(text)
        self.expect_all("p7z", text)
        self.wait_delivered("p7f", self.clients)
        self.wait_delivered("p7z", self.clients)
        self.verify("p7f", self.clients)
        self.verify("p7z", self.clients)
        self.wait_sent_total(self.alive(), sent_before, 2 * len(self.clients),
                             "the round after the restart")
        if target.messages("p7r"):
            raise TestFailure(f"{target.id} received {target.messages('p7r')}, sent "
                              f"via {b.name} while NATS was down and counted as failed")
        log(f"phase 7 (NATS down): afterwards a send to every client via the node not "
            f"holding it and a broadcast via {b.name} each reached every client exactly once")

    # --- what a token proves, across the cluster ------------------------------------------

    def direct_client(self, node, cid, token=None, named=True, subprotocols=None):
        """A client connected straight to `node` (no nginx, no reconnect) with a token for
        `cid` (or `token`), once it is online there and `node` has subscribed on NATS for it."""
        client = Client(self.loop, node.port, cid, reconnect=False,
                        token=token or self.credentials.token(cid), named=named,
                        subprotocols=subprotocols)
        self.direct.append(client)
        client.start()
        wait_until(lambda: client.connections or client.failure, 15,
                   f"{cid} to connect to {node.name}")
        if client.failure:
            raise TestFailure(f"{cid} could not connect to {node.name}: {client.failure}")
        wait_until(lambda: node.api.online(cid), 15, f"{cid} to be online on {node.name}")
        subject = f"{PREFIX}.client.{cid}"
        wait_until(lambda: any(subject in subs for name, subs in self.nats.connections().values()
                               if name == node.name), 15,
                   f"{node.name} to subscribe to {subject}")
        return client

    def expect_frames(self, client, frames, timeout=15):
        """Waits for `client` to have received exactly `frames`, in order, over all its
        connections so far; the final check compares them again."""
        self.whole[client] = list(frames)
        wait_until(lambda: len(client.received) >= len(frames), timeout,
                   lambda: f"{client.id} to receive {frames[len(client.received):]} "
                   f"(it has {client.received}, closed with {client.close_codes})")
        if client.received != frames:
            raise TestFailure(f"{client.id} received {client.received}, expected exactly "
                              f"{frames}")

    def phase_upstream_identity(self):
        a, b = self.alive()[:2]
        info = {"role": "admin", "n": 1}
        watcher = self.nats_client()
        try:
            sid = watcher.subscribe(f"{PREFIX}.upstream.>")
            watcher.flush()
            out_before = self.by_node("shardcast_bus_messages_total", direction="out",
                                      kind="upstream")
            # GET /ws: the id is the token's sub and nothing else. The claims are written
            # indented, so a compact header is the server's own serialisation.
            with_info = self.direct_client(
                a, "xinfo", named=False,
                token=self.credentials.token("xinfo", info=info, indented=True))
            without = self.direct_client(b, "xplain")
            want = []
            for c in (with_info, without):
                for k in range(2):
                    text = f"p8 frame {k} from {c.id}"
                    c.send_frame(text)
                    want.append((f"{PREFIX}.upstream.{c.id}", text.encode()))
            wait_until(lambda: len(watcher.messages(sid)) >= len(want), 15,
                       lambda: f"{len(want)} frames on {PREFIX}.upstream.> (got "
                       f"{len(watcher.messages(sid))})")
            time.sleep(0.3)
            got = watcher.messages(sid)
        finally:
            watcher.close()
        if len(got) != len(want):
            raise TestFailure(f"{len(got)} upstream messages, expected {len(want)}: "
                              f"{[(m.subject, m.payload) for m in got]}")
        for c, claim in ((with_info, info), (without, None)):
            subject = f"{PREFIX}.upstream.{c.id}"
            mine = [m for m in got if m.subject == subject]
            expected = [p for s, p in want if s == subject]
            if [m.payload for m in mine] != expected:
                raise TestFailure(f"on {subject} NATS carried "
                                  f"{[m.payload for m in mine]}, expected {expected}")
            wrong = [m.headers for m in mine
                     if not info_header_matches(m.headers.get("Shardcast-Info"), claim)]
            if wrong:
                raise TestFailure(f"{c.id}'s frames on {subject} carried headers {wrong}; "
                                  "expected " + (f"Shardcast-Info: the compact JSON of {claim}"
                                                 if claim else "no Shardcast-Info"))
        headers = {m.headers["Shardcast-Info"] for m in got if m.subject.endswith(".xinfo")}
        out_after = self.by_node("shardcast_bus_messages_total", direction="out",
                                 kind="upstream")
        for n, sent in ((a, 2), (b, 2)):
            if out_after[n.name] - out_before[n.name] != sent:
                raise TestFailure(f'{n.name}: bus messages out (kind="upstream") grew '
                                  f"by {out_after[n.name] - out_before[n.name]:g}, expected "
                                  f"{sent}")
        for c in (with_info, without):
            self.expect_frames(c, [])
        log(f"phase 8 (upstream identity): {with_info.id} (GET /ws, token with info) on "
            f"{a.name} and {without.id} (no info) on {b.name}: their frames went out on "
            f"{PREFIX}.upstream.<sub>, with Shardcast-Info: {', '.join(headers)} for the "
            "first only")

    def phase_refused_upgrades(self):
        a, b = self.alive()[:2]
        cid = "alice"
        subject = f"{PREFIX}.client.{cid}"
        watcher = self.nats_client()
        try:
            sid = watcher.subscribe(subject)
            watcher.flush()
            claims_before = self.by_node("shardcast_bus_messages_total", direction="out",
                                         kind="claim")

            def claims():
                """The node of each claim for the id NATS carried, in order."""
                return [m.headers.get("Shardcast-Node") for m in watcher.messages(sid)
                        if m.headers.get("Shardcast-Op") == "claim"]
            first = self.direct_client(a, cid)
            wait_until(claims, 15, f"{a.name}'s claim for {cid} on {subject}")
            # A delivered message proves the session open, not mid-upgrade.
            sent = [message("p9", a.name, cid, 0)]
            a.api.send(cid, sent[0])
            self.expect_frames(first, sent)

            reasons = ("bad_signature", "sub_mismatch", "not_upgrade")
            refused_before = {r: b.metric("shardcast_handshake_failures_total", reason=r)
                              for r in reasons}
            attached_before = b.metric("shardcast_connections_total")
            forged = self.credentials.token(cid, secret=secrets.token_urlsafe(48))
            attempts = [
                ("a token signed with another secret", forged, {}, 401),
                ("a valid token for bob", self.credentials.token("bob"), {}, 403),
                ("a valid token but no Sec-WebSocket-Key", self.credentials.token(cid),
                 {"Sec-WebSocket-Key": None}, 400),
            ]
            for how, token, headers, want in attempts:
                status, head = upgrade_answer(b.port, f"/ws/{cid}?token={token}", headers)
                if status != want:
                    raise TestFailure(f"{b.name} answered an upgrade for /ws/{cid} with "
                                      f"{how} with {status}, expected {want}: {head[:300]!r}")

            # A send via b after the refusals: once it reached alice and the watcher, anything
            # b had put on NATS for alice before it would have arrived too.
            sent.append(message("p9", b.name, cid, 1))
            b.api.send(cid, sent[1])
            self.expect_frames(first, sent)
            wait_until(lambda: any(m.payload == sent[1].encode()
                                   for m in watcher.messages(sid)), 15,
                       f"the watcher to see the send via {b.name} on {subject}")
            if claims() != [a.name]:
                raise TestFailure(f"NATS carried claims for {cid} from {claims()}, "
                                  f"expected only {a.name}'s: an upgrade {b.name} refused "
                                  "claimed the id")
            if not first.open or first.close_codes or first.connections != 1 \
                    or not a.api.online(cid) or b.api.online(cid):
                raise TestFailure(f"{cid}'s session on {a.name} did not stay as it "
                                  f"was: open {first.open}, close codes {first.close_codes}, "
                                  f"online on {a.name} {a.api.online(cid)}, on {b.name} "
                                  f"{b.api.online(cid)}")
            problems = []
            for r in reasons:
                grew = b.metric("shardcast_handshake_failures_total", reason=r) - \
                    refused_before[r]
                if grew != 1:
                    problems.append(f'shardcast_handshake_failures_total{{reason="{r}"}} grew '
                                    f"by {grew:g}, expected 1")
            attached = b.metric("shardcast_connections_total") - attached_before
            if attached != 0:
                problems.append(f"shardcast_connections_total grew by {attached:g}, expected 0")
            if problems:
                raise TestFailure(f"{b.name}: " + "; ".join(problems))
            log(f"phase 9 (refused upgrades): {b.name} refused upgrades for {cid} (held on "
                f"{a.name}) with a forged token (401), bob's token (403) and no "
                "Sec-WebSocket-Key (400): no claim on NATS, no session, and a send via "
                f"{b.name} still reached {cid} on {a.name}")

            # The same watch sees a claim when there is one.
            second = self.direct_client(b, cid)
            wait_until(lambda: first.close_codes, 15,
                       f"{cid}'s session on {a.name} to close once one on {b.name} "
                       "opened")
            if first.close_codes != [4001]:
                raise TestFailure(f"{cid}'s session on {a.name} closed with "
                                  f"{first.close_codes}, expected [4001] (replaced)")
            wait_until(lambda: len(claims()) >= 2, 15,
                       lambda: f"{b.name}'s claim for {cid} on {subject} (claims so "
                       f"far from {claims()})")
            if claims() != [a.name, b.name]:
                raise TestFailure(f"NATS carried claims for {cid} from {claims()}, "
                                  f"expected [{a.name!r}, {b.name!r}]")
            wait_until(lambda: b.api.online(cid) and not a.api.online(cid), 15,
                       f"{cid} to be online on {b.name} only")
            if not second.open:
                raise TestFailure(f"{cid}'s session on {b.name} is not open: "
                                  f"{second.close_codes}")
        finally:
            watcher.close()
        claims_after = self.by_node("shardcast_bus_messages_total", direction="out",
                                    kind="claim")
        for n in (a, b):
            grew = claims_after[n.name] - claims_before[n.name]
            if grew != 1:
                raise TestFailure(f'{n.name}: bus messages out (kind="claim") grew by '
                                  f"{grew:g}, expected 1 (the one session it opened)")
        self.expect_frames(second, [])
        log(f"phase 9 (refused upgrades): a valid upgrade for {cid} on {b.name} put its claim "
            f"on NATS and replaced the session on {a.name} (4001)")

    def phase_v1(self):
        a, b = self.alive()[:2]
        v1 = self.direct_client(a, "xv1", subprotocols=["shardcast.v1"])
        text = self.direct_client(a, "xtext")
        if v1.subprotocol != "shardcast.v1" or text.subprotocol is not None:
            raise TestFailure(f"the server selected {v1.subprotocol!r} for {v1.id}, "
                              f"which offered shardcast.v1, and {text.subprotocol!r} for "
                              f"{text.id}, which offered none")
        subject = f"{PREFIX}.client.{v1.id}"
        watcher = self.nats_client()
        backend = self.nats_client()
        try:
            sid = watcher.subscribe(subject)
            watcher.flush()
            for c in (v1, text):
                b.api.send(c.id, {"k": [1, 2]})
                b.api.send(c.id, "hi")
            v1_frames = ['{"data":{"k":[1,2]}}', '{"data":"hi"}']
            text_frames = ['{"k":[1,2]}', "hi"]
            self.expect_frames(v1, v1_frames)
            self.expect_frames(text, text_frames)

            def carried():
                return [(m.payload, m.headers.get("Shardcast-Data"))
                        for m in watcher.messages(sid) if "Shardcast-Op" not in m.headers]
            want = [(b'{"k":[1,2]}', "json"), (b"hi", None)]
            wait_until(lambda: len(carried()) >= len(want), 15,
                       lambda: f"the sends via {b.name} on {subject} (got {carried()})")
            if carried() != want:
                raise TestFailure(f"NATS carried (payload, Shardcast-Data) {carried()} on "
                                  f"{subject}, expected {want}")
            log(f"phase 10 (shardcast.v1): sends via {b.name} reached {v1.id} (shardcast.v1) "
                f"on {a.name} as {v1_frames} and {text.id} as {text_frames}; the JSON value "
                "crossed NATS with Shardcast-Data: json")

            bad_before = self.by_node("shardcast_bus_receive_errors_total", reason="bad_header")
            plain = 'a "quoted" \\ text \u2713'
            # One connection, in order: once the last message for v1 is there, the bad one
            # before it has been handled.
            backend.publish(subject, '{"x":1}', headers={"Shardcast-Data": "json"})
            backend.publish(subject, "{bad", headers={"Shardcast-Data": "json"})
            backend.publish(f"{PREFIX}.client.{text.id}", '{"x":1}',
                            headers={"Shardcast-Data": "json"})
            backend.publish(subject, plain)
            backend.flush()
            v1_frames += ['{"data":{"x":1}}',
                          '{"data":' + json.dumps(plain, ensure_ascii=False) + "}"]
            text_frames += ['{"x":1}']
            self.expect_frames(v1, v1_frames)
            self.expect_frames(text, text_frames)
        finally:
            backend.close()
            watcher.close()
        bad_after = self.by_node("shardcast_bus_receive_errors_total", reason="bad_header")
        for n, want_bad in ((a, 1), (b, 0)):
            grew = bad_after[n.name] - bad_before[n.name]
            if grew != want_bad:
                raise TestFailure(f'{n.name}: shardcast_bus_receive_errors_total'
                                  f'{{reason="bad_header"}} grew by {grew:g}, expected '
                                  f"{want_bad}")
        log(f"phase 10 (shardcast.v1): a backend's messages on NATS reached {v1.id} as "
            f"{v1_frames[2:]}; the one marked JSON that is not was dropped and counted as "
            f"bad_header on {a.name}")

    def final_check(self):
        """Nothing arrived late: every phase still holds exactly what it did, for every
        client (one expecting nothing of a phase, such as a client of the other node for a
        broadcast made during the NATS outage, got nothing of it), and no client received
        a message of no phase."""
        time.sleep(0.5)
        for phase in self.checked_phases:
            clients = self.checked_clients.get(phase, self.clients)
            self.verify(phase, clients, lossy=self.lossy[phase])
        for c, frames in self.whole.items():
            if c.received != frames:
                raise TestFailure(f"{c.id} received {c.received}, expected exactly {frames}")
        known = set(self.checked_phases) | {"p7r"}  # p7r: checked to be empty
        strays = [(c.id, tag) for c in self.clients + self.direct if c not in self.whole
                  for tag in c.by_phase if tag not in known]
        if strays:
            raise TestFailure(f"messages of no phase arrived: {strays[:10]}")
        log(f"final: no late or repeated message in any phase ({', '.join(self.checked_phases)});"
            f" the {len(self.whole)} clients of phases 8-10 hold exactly their frames")

    def phase_node_stop(self):
        a, b = self.alive()[:2]
        phase = "p8"
        cid = "xdrain"
        client = Client(self.loop, b.port, cid, reconnect=False,
                        token=self.credentials.token(cid))
        self.direct.append(client)
        client.start()
        wait_until(lambda: client.connections or client.failure, 10, f"{cid} to connect")
        if client.failure:
            raise TestFailure(f"{cid} could not connect to {b.name}: {client.failure}")
        wait_until(lambda: b.api.online(cid), 10, f"{cid} to be online on {b.name}")
        subject = f"{PREFIX}.client.{cid}"
        wait_until(lambda: any(subject in subs for _, subs in self.nats.connections().values()),
                   10, f"{b.name} to subscribe to {subject}")
        # A client that never reads, with 640 KB queued for it: more than the kernel takes
        # with a 64 KiB send buffer, less than session.buffer_limit. Its session stays busy,
        # so the drain lasts its whole drain_timeout.
        stalled = RawWebSocket(b.port, "xstall", receive_buffer=4096,
                               token=self.credentials.token("xstall"))
        try:
            for _ in range(8):
                b.api.send("xstall", "x" * 80_000)
            stopped = []
            stopper = threading.Thread(target=lambda: stopped.append(b.stop()), daemon=True)
            stopper.start()
            wait_until(lambda: "draining for up to" in b.process.log(), 10,
                       f"{b.name} to start draining")
            text = self.publish(a.api, phase, cid, 0)
            wait_until(lambda: client.messages(phase), 10,
                       lambda: f"{cid} on the draining {b.name} to get the send via {a.name}; "
                       f"it closed with {client.close_codes}")
            wait_until(lambda: client.close_codes, 10, f"{cid} to be closed by {b.name}")
            stopper.join(20)
        finally:
            stalled.abort()
        if client.messages(phase) != [text] or client.close_codes != [1001]:
            raise TestFailure(f"{cid} got {client.messages(phase)} and closed with "
                              f"{client.close_codes}; expected [{text!r}], then 1001")
        if stopped != [0]:
            raise TestFailure(f"{b.name} exited {stopped} on SIGTERM, expected 0:\n"
                              f"{b.process.log_tail()}")
        log(f"phase 11 (node stop): a send via {a.name} reached {cid} on {b.name} over NATS "
            "during its drain, before the 1001; the node exited 0")

    def run(self):
        for self.current, step in [
            ("phase 1 (start)", self.start),
            ("phase 1 (start)", self.phase_start),
            ("phase 2 (targeted)", self.phase_targeted),
            ("phase 3 (broadcast)", self.phase_broadcast),
            ("phase 4 (replace)", self.phase_replace),
            ("phase 5 (upstream)", self.phase_upstream),
            ("phase 6 (node kill)", self.phase_node_kill),
            ("phase 7 (NATS down)", self.phase_nats_restart),
            ("phase 8 (upstream identity)", self.phase_upstream_identity),
            ("phase 9 (refused upgrades)", self.phase_refused_upgrades),
            ("phase 10 (shardcast.v1)", self.phase_v1),
            ("final check", self.final_check),
            ("phase 11 (node stop)", self.phase_node_stop),
        ]:
            step()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shardcast", required=True, help="the shardcast binary")
    parser.add_argument("--source", required=True, help="the repository root")
    parser.add_argument("--nginx-snippet",
                        help="an nginx snippet to use instead of deploy/nginx/shardcast.conf")
    parser.add_argument("--nats-server", default="nats-server", help="the nats-server binary")
    parser.add_argument("--nginx", default="nginx", help="the nginx binary")
    parser.add_argument("--clients", type=int, default=300, help="clients behind nginx")
    parser.add_argument("--timeout", type=int, default=240, help="seconds before giving up")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    args.source = os.path.abspath(args.source)
    args.shardcast = os.path.abspath(args.shardcast)
    args.nginx_snippet = os.path.abspath(
        args.nginx_snippet or os.path.join(args.source, "deploy", "nginx", "shardcast.conf"))
    return args


def main():
    args = parse_args()
    for binary, package in ((args.nats_server, "nats-server"), (args.nginx, "nginx")):
        if not find_program(binary):
            print(f"FAIL: {binary} not found (Debian: apt-get install {package})")
            return 1
    args.nats_server = find_program(args.nats_server)
    args.nginx = find_program(args.nginx)
    if not os.path.exists(args.nginx_snippet):
        print(f"FAIL: no nginx snippet at {args.nginx_snippet}")
        return 1

    return run_scenario(lambda workdir: Scenario(args, workdir), timeout=args.timeout,
                        keep=args.keep, workdir_prefix="shardcast-cluster-test-",
                        summary=lambda _: f"3 nodes, {args.clients} clients, 11 phases")


if __name__ == "__main__":
    sys.exit(main())
