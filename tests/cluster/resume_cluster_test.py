#!/usr/bin/python3
"""Cluster history end to end: three shardcast nodes store what their HTTP APIs accept in a
NATS JetStream stream (store, then notify the other nodes), and shardcast.v1 clients resume
on any node from the offset and epoch of the last data frame they processed. Real processes
over real sockets: a nats-server with JetStream (-js -sd <dir>), three nodes behind a real
nginx configured from deploy/nginx/shardcast.conf, clients with connect tokens (PyJWT) and
publishers with an API key, as in cluster_test.py. One process, phases in order, each with
exact counts:

  1. start      every node's /api/v1/stats says cluster.history.available, all with one
                epoch; a JetStream stream holds the history subjects
  2. node kill  30 v1 clients on node a; 4 producers send numbered messages to them
                through b and c (never a: see phase_kill), plus broadcasts; a is SIGKILLed
                mid-traffic, its clients stay away while more is sent, then resume on b or
                c (alternately) with since/epoch while the producers go on: each client gets
                every accepted message exactly once, in order per producer, no gap notice,
                offsets increasing; every broadcast reaches every client once
  3. JetStream gone
                nats-server restarts on its port without -js: the nodes reconnect and say
                history.available false; live sends still arrive, without offset or epoch,
                nothing is stored (unstored counts each); 4 clients resume on the other node
                and get {"gap":{...,"reason":"unavailable"}} first, and
                shardcast_resume_gaps_total{reason="unavailable"} grows by exactly 4
  4. JetStream back
                nats-server restarts with -js and the same store: the nodes say available
                again, with a new epoch. A resume with the phase 2 epoch gets a gap notice
                (epoch or unavailable). A client with frames of the new epoch leaves, is sent
                messages and a broadcast while away, and resumes on the other node: all of
                them once, in order, no gap; another resumes through nginx while messages
                are being sent to it, with the same result

A final check repeats every phase's check, so nothing arrived late or twice.

Usage: resume_cluster_test.py --shardcast <binary> --source <repository root>
Exits 0 when all of it holds; gives up after --timeout seconds.
"""
import argparse
import collections
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

# The helpers below are imported from the source tree, which must not collect __pycache__.
sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, os.pardir, "support")]
from harness.processes import NatsServer  # noqa: E402
from harness.runner import find_program, run_scenario  # noqa: E402
from harness.waiting import TestFailure, log, wait_until  # noqa: E402
from credentials import Credentials  # noqa: E402
from nginx import Nginx  # noqa: E402
from node import Node, write_config  # noqa: E402
from resume_clients import ResumeClient, offset_problems, require_connected  # noqa: E402
from ws_clients import ClientLoop  # noqa: E402

PREFIX = "rctest"
STREAM_SUBJECTS = {f"{PREFIX}.history.client.>", f"{PREFIX}.history.broadcast",
                   f"{PREFIX}.history.epoch"}
NODE_NAMES = ["n1", "n2", "n3"]
HEARTBEAT = {"heartbeat_interval": "1s", "heartbeat_timeout": "5s"}
CLIENTS = 30
PRODUCERS = 4
# Phase 2: targeted sends accepted before the kill, sends while a's clients are away (at
# least), and sends per producer once every client has resumed.
BEFORE_KILL = 240
WHILE_AWAY = 120
AFTER_RESUME = 60
# Phase 3: clients that resume while JetStream is gone.
GAP_RESUMES = 4
# Phase 4: sends via each of b and c while a client is away, and sends during a resume.
AWAY = 10
DURING = 20
# How long the nodes may take to notice JetStream going or coming back ("a few seconds").
NOTICE_TIMEOUT = 20


def message(phase, source, target, seq):
    """One message: the phase tag first, then who sent it (a producer, or bcast-<node>), to
    whom (* for a broadcast), and its number from that source."""
    return f"{phase}:{source}:{target}:{seq}"


def source_of(text):
    return text.split(":", 2)[1]


def limited(problems, limit=12):
    more = len(problems) - limit
    return "\n".join(f"  {p}" for p in problems[:limit]) + (f"\n  ... and {more} more"
                                                             if more > 0 else "")


def accepted_total(producers):
    """What the producers' 202s accepted so far; raises the first producer's failure."""
    failed = [p for p in producers if p.error]
    if failed:
        raise TestFailure(f"producer {failed[0].tag} failed: {failed[0].error}")
    return sum(p.count for p in producers)


class Producer(threading.Thread):
    """Sends to the clients in turn through one node's API on an HTTP connection of its own,
    so what it sends one client arrives in the order sent; records what each 202 accepted
    (a 429 is not accepted and not expected). The main thread may hold it at the top of its
    loop (gate cleared; `idle` says it is there), mark what it sends from some point on, and
    give it a number of sends after which it stops."""

    def __init__(self, tag, node, client_ids, phase, interval=0.003, limit=20000):
        super().__init__(daemon=True)
        self.tag = tag
        self.node = node.name
        self.api = node.new_api()
        self.client_ids = client_ids
        self.phase = phase
        self.interval = interval
        self.limit = limit
        self.accepted = collections.defaultdict(list)  # client id -> texts, in order
        self.count = 0  # accepted
        self.refused = 0  # answered 429
        self.marking = False
        self.marked = collections.Counter()  # client id -> accepted while marking
        self.stop_at = None  # stop once `count` reaches it
        self.gate = threading.Event()
        self.gate.set()
        self.idle = threading.Event()
        self.halt = threading.Event()
        self.error = None

    def run(self):
        try:
            for seq in range(self.limit):
                while not self.gate.is_set() and not self.halt.is_set():
                    self.idle.set()
                    self.gate.wait(0.2)
                self.idle.clear()
                if self.halt.is_set() or (self.stop_at is not None
                                          and self.count >= self.stop_at):
                    break
                to = self.client_ids[seq % len(self.client_ids)]
                marking = self.marking
                text = message(self.phase, self.tag, to, seq)
                status, body = self.api.request("POST", "/api/v1/send",
                                                json.dumps({"to": to, "data": text}))
                if status == 202:
                    self.accepted[to].append(text)
                    self.count += 1
                    if marking:
                        self.marked[to] += 1
                elif status == 429:
                    self.refused += 1
                else:
                    raise TestFailure(f"{self.tag}: {self.node} answered a send of {text} with "
                                      f"{status}: {body[:200]!r}")
                self.halt.wait(self.interval)
        except Exception as e:  # reported by finish()
            self.error = e
        finally:
            self.idle.set()
            self.api.close()

    def finish(self, timeout=30):
        self.join(timeout)
        if self.is_alive():
            self.halt.set()
            raise TestFailure(f"producer {self.tag} did not stop within {timeout}s "
                              f"({self.count} accepted)")
        if self.error:
            raise TestFailure(f"producer {self.tag} failed: {self.error}")


class Scenario:
    """The whole test: start, phases, stop. Runs on the main thread."""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.store_dir = os.path.join(workdir, "jetstream")
        self.credentials = Credentials(workdir)
        self.nats = None
        self.nodes = []
        self.nginx = None
        self.loop = ClientLoop()
        self.clients = []
        self.extra = []  # started outside phase 2 (stopped with the rest)
        # client id -> phase -> texts expected, each source's in the order sent
        self.expected = collections.defaultdict(lambda: collections.defaultdict(list))
        # (client id, phase) -> the last connection whose frames count for that phase
        self.upto = {}
        self.phase_epochs = {}  # phase -> the epoch its frames carry (None: no offsets)
        self.gaps_expected = collections.Counter()  # client id -> gap notices it should have
        self.checked = []  # phases verified, for the final check
        self.epochs = []  # the epoch of each JetStream era
        self.stream = None  # the history stream's name, as nats-server lists it
        self.gate = None  # phase 2: opened when the clients of the killed node may resume
        self.current = "setup"

    # --- small helpers -------------------------------------------------------------------

    @property
    def a(self):
        return self.nodes[0]

    @property
    def b(self):
        return self.nodes[1]

    @property
    def c(self):
        return self.nodes[2]

    def alive(self):
        return [n for n in self.nodes if not n.killed]

    def history(self, node):
        stats = node.api.get_json("/api/v1/stats")
        history = (stats.get("cluster") or {}).get("history")
        if not isinstance(history, dict):
            raise TestFailure(f"{node.name}: /api/v1/stats has no cluster.history object: "
                              f"cluster={json.dumps(stats.get('cluster'))[:400]}")
        return history

    def histories(self, nodes):
        return {n.name: self.history(n) for n in nodes}

    def total(self, nodes, name, **labels):
        return sum(n.metric(name, **labels) for n in nodes)

    def jsz_stream(self):
        """The entry in nats-server's /jsz of the stream holding the history subjects, or
        None while there is none (or no JetStream). Found by its subjects, not its name: the
        name follows from the prefix (cluster.history.stream)."""
        url = f"http://127.0.0.1:{self.nats.monitor_port}/jsz?streams=true&config=true"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                jsz = json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return None
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                subjects = (stream.get("config") or {}).get("subjects") or []
                if f"{PREFIX}.history.client.>" in subjects:
                    return stream
        return None

    def wait_history(self, nodes, available, what):
        """Waits until each node's bus is connected and its stats say history.available is
        `available`, and (when available) all say one epoch, which is returned; each node's
        shardcast_bus_history_available gauge must agree. Logs how long it took."""
        started = time.monotonic()
        seen = {}

        def settled():
            for n in nodes:
                seen[n.name] = (n.metric("shardcast_bus_connected"), self.history(n))
            if any(bus != 1 or h.get("available") is not available
                   for bus, h in seen.values()):
                return False
            epochs = {h.get("epoch") for _, h in seen.values()}
            return not available or (len(epochs) == 1 and None not in epochs)
        wait_until(settled, NOTICE_TIMEOUT, lambda: f"{what}: every node's bus connected and "
                   f"cluster.history.available {str(available).lower()}, one epoch; seen " +
                   "; ".join(f"{name}: bus_connected {bus:g}, history {h}"
                             for name, (bus, h) in seen.items()), interval=0.2)
        gauges = {n.name: n.metric("shardcast_bus_history_available") for n in nodes}
        if any(v != (1 if available else 0) for v in gauges.values()):
            raise TestFailure(f"{what}: shardcast_bus_history_available is {gauges}, expected "
                              f"{1 if available else 0} on each node")
        epoch = next(iter(seen.values()))[1].get("epoch") if available else None
        return epoch, time.monotonic() - started

    def wait_routes(self, nodes_count, client_ids, what):
        """nats-server holds a subscription for each client id and the broadcasts of every
        node: sends made from now on reach the sessions live."""
        missing = []

        def routed():
            missing[:] = [i for i in client_ids
                          if not self.nats.interest(f"{PREFIX}.client.{i}")]
            return not missing and self.nats.interest(f"{PREFIX}.broadcast") >= nodes_count
        wait_until(routed, 20, lambda: f"{what}: NATS subscriptions for every client id "
                   f"(lacking {missing[:5]}) and {nodes_count} for {PREFIX}.broadcast "
                   f"(has {self.nats.interest(f'{PREFIX}.broadcast')})", interval=0.1)

    def where(self, client_id, nodes):
        return [n.name for n in nodes if n.api.online(client_id)]

    def wait_online(self, placement, what):
        """placement: {client id: node}; waits until each is online there and nowhere else
        of the live nodes."""
        wrong = {}

        def placed():
            wrong.clear()
            for cid, n in placement.items():
                on = self.where(cid, self.alive())
                if on != [n.name]:
                    wrong[cid] = on
            return not wrong
        wait_until(placed, 15, lambda: f"{what}: clients online on their node only; "
                   "not so: " + ", ".join(f"{cid} on {on} (expected "
                                          f"{placement[cid].name})"
                                          for cid, on in list(wrong.items())[:6]))

    def wait_offline(self, client_id, node):
        wait_until(lambda: not node.api.online(client_id), 10,
                   f"{client_id} to be offline on {node.name}")

    def send(self, node, phase, client_id, seq, api=None):
        text = message(phase, f"main-{node.name}", client_id, seq)
        (api or node.api).send(client_id, text)
        self.expected[client_id][phase].append(text)
        return text

    def broadcast(self, node, phase, seq, clients):
        text = message(phase, f"bcast-{node.name}", "*", seq)
        node.api.broadcast(text)
        for c in clients:
            self.expected[c.id][phase].append(text)
        return text

    def phase_frames(self, c, phase):
        upto = self.upto.get((c.id, phase))
        return [f for f in c.data() if isinstance(f.data, str)
                and f.data.startswith(phase + ":")
                and (upto is None or f.connection <= upto)]

    def wait_delivered(self, phase, clients, timeout=30):
        def short():
            return [c for c in clients
                    if len(self.phase_frames(c, phase)) < len(self.expected[c.id][phase])]

        def describe():
            return (f"{phase}: clients to receive all their messages; short: " + ", ".join(
                f"{c.id} has {len(self.phase_frames(c, phase))}/"
                f"{len(self.expected[c.id][phase])} (connection {len(c.connections)} on "
                f"{c.connections[-1].node if c.connections else None}, open {c.open}, "
                f"gave up: {c.failure})" for c in short()[:6]))
        wait_until(lambda: not short(), timeout, describe, interval=0.1)

    def verify(self, phase, clients):
        """Each client received exactly the messages expected for `phase`: none missing, none
        twice, none unexpected, each source's in the order sent; each frame with an offset
        and the phase's epoch, or (epoch None) with neither."""
        epoch = self.phase_epochs[phase]
        problems = []
        for c in clients:
            frames = self.phase_frames(c, phase)
            got = [f.data for f in frames]
            want = self.expected[c.id][phase]
            counts = collections.Counter(got)
            want_set = set(want)
            dupes = [t for t, n in counts.items() if n > 1]
            missing = [t for t in want if t not in counts]
            extra = [t for t in counts if t not in want_set]
            if missing:
                problems.append(f"{c.id}: missing {len(missing)} of {len(want)}: "
                                f"{missing[:6]}")
            if dupes:
                problems.append(f"{c.id}: received {len(dupes)} message(s) more than once: " +
                                ", ".join(f"{t} x{counts[t]} as " + " and ".join(
                                    f"{f.raw} (connection {f.connection})"
                                    for f in frames if f.data == t) for t in dupes[:3]))
            if extra:
                problems.append(f"{c.id}: received {len(extra)} unexpected: {extra[:6]}")
            first_seen = list(dict.fromkeys(got))
            for source in dict.fromkeys(source_of(t) for t in want):
                got_order = [t for t in first_seen if source_of(t) == source]
                want_order = [t for t in want if source_of(t) == source and t in counts]
                if got_order != want_order:
                    i = next(k for k, (g, w) in enumerate(zip(got_order, want_order))
                             if g != w)
                    problems.append(f"{c.id}: messages from {source} out of order at "
                                    f"position {i}: received {got_order[i:i + 4]}, sent "
                                    f"{want_order[i:i + 4]}")
            if epoch is None:
                marked = [f.raw for f in frames if f.offset is not None or f.epoch is not None]
                if marked:
                    problems.append(f"{c.id}: {len(marked)} frame(s) carry an offset or epoch "
                                    f"while JetStream is gone, e.g. {marked[:2]}")
            else:
                wrong = [f.raw for f in frames if f.offset is None or f.epoch != epoch]
                if wrong:
                    problems.append(f"{c.id}: {len(wrong)} frame(s) without an offset or "
                                    f"with another epoch than {epoch}, e.g. {wrong[:2]}")
        if problems:
            raise TestFailure(f"{phase}: {len(problems)} problem(s) with what the clients "
                              f"received:\n{limited(problems)}")
        if phase not in self.checked:
            self.checked.append(phase)

    def check_gaps_and_offsets(self, what):
        """Each client has exactly the gap notices expected so far, and its offsets increase
        within each epoch."""
        problems = []
        for c in self.clients:
            gaps = c.gaps()
            if len(gaps) != self.gaps_expected[c.id]:
                problems.append(f"{c.id}: {len(gaps)} gap notice(s), expected "
                                f"{self.gaps_expected[c.id]}: {[g.raw for g in gaps][:3]}")
            problems += offset_problems(c, c.frames)
            others = [f.raw for f in c.frames if f.kind == "other"]
            if others:
                problems.append(f"{c.id}: frames that are neither data nor gap: {others[:3]}")
        if problems:
            raise TestFailure(f"{what}:\n{limited(problems)}")

    def counters(self, nodes):
        """What the stats and metrics say about history and resumes, summed over `nodes`,
        and the stats per node."""
        per_node = self.histories(nodes)
        summed = {k: sum(h.get(k, 0) or 0 for h in per_node.values())
                  for k in ("stored", "unstored", "fetches", "fetch_errors")}
        summed["resumes"] = self.total(nodes, "shardcast_resumes_total")
        summed["replayed"] = self.total(nodes, "shardcast_resume_replayed_total")
        summed["gaps"] = self.total(nodes, "shardcast_resume_gaps_total")
        for reason in ("evicted", "expired", "epoch", "unavailable"):
            summed[f"gaps_{reason}"] = self.total(nodes, "shardcast_resume_gaps_total",
                                                  reason=reason)
        return summed, per_node

    def check_storage(self, what, before, after, accepted, stored):
        """Each node's stats grew by `accepted[node]` in stored (stored=True) or unstored,
        and not at all in the other, and its metrics say the same as its stats."""
        problems = []
        for name, h in after.items():
            for key in ("stored", "unstored"):
                want = accepted.get(name, 0) if (key == "stored") == stored else 0
                grew = (h.get(key) or 0) - (before[name].get(key) or 0)
                if grew != want:
                    problems.append(f"{name}: cluster.history.{key} grew by {grew}, expected "
                                    f"{want} (the messages its API accepted)")
        for n in self.alive():
            if n.name not in after:
                continue
            for key in ("stored", "unstored"):
                metric = n.metric(f"shardcast_bus_history_{key}_total")
                if metric != after[n.name].get(key):
                    problems.append(f"{n.name}: shardcast_bus_history_{key}_total is "
                                    f"{metric:g}, /api/v1/stats says {after[n.name].get(key)}")
            # Copies the reorder window could not put back in order: every client's offsets
            # increase here, so there must be none, and the stats and metrics agree.
            for outcome in ("overtaken", "late"):
                metric = n.metric("shardcast_bus_history_out_of_order_total", outcome=outcome)
                if metric != after[n.name].get(outcome):
                    problems.append(f"{n.name}: out_of_order_total{{outcome={outcome}}} is "
                                    f"{metric:g}, /api/v1/stats says "
                                    f"{after[n.name].get(outcome)}")
            if after[n.name].get("late"):
                problems.append(f"{n.name}: {after[n.name]['late']} stored copies arrived late")
        if problems:
            raise TestFailure(f"{what}:\n{limited(problems)}")

    def expect_gap(self, c, connection, reasons, since, epoch):
        """The first frame of c's connection `connection` is a gap notice with one of
        `reasons`, naming the offset and epoch c asked to resume from."""
        wait_until(lambda: c.on_connection(connection), 10,
                   f"{c.id}: a first frame on its resumed connection to "
                   f"{c.connections[-1].node}")
        first = c.on_connection(connection)[0]
        gap = first.gap or {}
        if first.kind != "gap" or gap.get("reason") not in reasons or \
                gap.get("since") != since or gap.get("epoch") != epoch:
            raise TestFailure(f"{c.id} resumed on {c.connections[-1].node} with since={since} "
                              f"epoch={epoch}; its first frame is {first.raw!r}, expected "
                              f'{{"gap":{{"since":{since},"epoch":"{epoch}","reason":'
                              f"<{' or '.join(reasons)}>}}}}")
        self.gaps_expected[c.id] += 1
        return gap["reason"]

    # --- processes -----------------------------------------------------------------------

    def start(self):
        os.makedirs(self.store_dir)
        self.nats = NatsServer(self.workdir, self.args.nats_server,
                               extra_args=["-js", "-sd", self.store_dir])
        self.nats.start()
        log(f"phase 1 (start): nats-server with JetStream on 127.0.0.1:{self.nats.port}, "
            f"store {self.store_dir}")
        config = os.path.join(self.workdir, "cluster.yaml")
        write_config(config, {
            "shards": 2,
            "log": {"summary_interval": 0},
            "session": HEARTBEAT,
            "shutdown": {"drain_timeout": "2s"},
            "auth": self.credentials.auth_config(),
            "cluster": {
                "nats": {"url": self.nats.url, "reconnect_wait": "100ms",
                         "reconnect_wait_max": "1s"},
                "subject_prefix": PREFIX,
            },
        })
        for name in NODE_NAMES:
            self.nodes.append(Node(self.args.shardcast, self.workdir, name, config,
                                   [f"cluster.node={name}"], self.credentials.api_key))
        log("phase 1 (start): nodes " +
            ", ".join(f"{n.name} on {n.address}" for n in self.nodes))
        epoch, took = self.wait_history(self.nodes, True, "after start")
        self.epochs.append(epoch)
        stream = wait_until(self.jsz_stream, 10, "nats-server's /jsz to list a stream on "
                            f"{PREFIX}.history.client.>")
        subjects = set((stream.get("config") or {}).get("subjects") or [])
        if subjects != STREAM_SUBJECTS:
            raise TestFailure(f"stream {stream.get('name')} has subjects {sorted(subjects)}, "
                              f"expected {sorted(STREAM_SUBJECTS)}")
        self.stream = stream.get("name")
        log(f"phase 1 (start): every node says history available, epoch {epoch} ({took:.1f}s);"
            f" stream {self.stream} on subjects {sorted(subjects)}")
        self.nginx = Nginx(self.workdir, self.args.nginx_snippet,
                           [n.address for n in self.nodes], self.args.nginx)
        log(f"phase 1 (start): nginx on 127.0.0.1:{self.nginx.port}")

    def stop(self, passed):
        """Stops everything the test started. When the test passed so far, every node still
        alive must also stop cleanly (exit 0 on SIGTERM)."""
        problems = []

        def attempt(what, action):
            try:
                return action()
            except Exception as e:  # one failed stop must not leave the others running
                problems.append(f"stopping {what} failed: {e!r}")
        for c in self.clients + self.extra:
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
                print(f"--- nginx log (tail) ---\n{self.nginx.log()[-2000:]}")
            if self.nats and self.nats.process:
                print(f"--- nats-server log (tail) ---\n{self.nats.process.log_tail(20)}")
        return problems

    def restart_nats(self, jetstream):
        self.nats.stop()
        self.nats.extra_args = ["-js", "-sd", self.store_dir] if jetstream else []
        self.nats.start()

    # --- phases --------------------------------------------------------------------------

    # --- phase 2: node kill --------------------------------------------------------------

    def phase_kill(self):
        """Targeted traffic goes through b and c only. A 202 means queued, not stored: a
        message a accepted just before its SIGKILL may never have reached the stream, and no
        resume could bring it back. Which of a's last 202s were stored is not knowable from
        outside, so a takes no publishes here; what this proves is that nothing stored is
        lost when the node holding the clients dies."""
        phase = "r2"
        b, c = self.b, self.c
        self.connect_clients(self.a)
        self.phase_epochs[phase] = self.epochs[0]
        before, before_nodes = self.counters([b, c])
        accepted = collections.Counter()  # node name -> publishes its API accepted

        # One broadcast first, so that every client has an offset to resume from.
        self.broadcast(b, phase, 0, self.clients)
        accepted[b.name] += 1
        wait_until(lambda: all(cl.position for cl in self.clients), 15,
                   lambda: "every client to get a data frame with an offset; without: " +
                   str([cl.id for cl in self.clients if not cl.position][:8]))
        ids = [cl.id for cl in self.clients]
        producers = [Producer(f"p{k}", (b, c)[k % 2], ids, phase) for k in range(PRODUCERS)]
        for p in producers:
            p.start()
        self.wait_accepted(producers, BEFORE_KILL // 2, "before the kill")
        self.broadcast(c, phase, 0, self.clients)
        accepted[c.name] += 1
        self.wait_accepted(producers, BEFORE_KILL, "before the kill")
        at_kill = accepted_total(producers)
        away = self.kill_and_keep_away(producers, accepted, before_nodes)
        log(f"phase 2 (node kill): {self.a.name} SIGKILLed after {at_kill} targeted sends "
            f"accepted via {b.name} and {c.name}; {away - len(self.clients)} more and a "
            "broadcast accepted and stored while its clients were away")

        self.resume_all(producers)
        self.broadcast(c, phase, 1, self.clients)
        accepted[c.name] += 1
        for p in producers:
            p.stop_at = p.count + AFTER_RESUME
        for p in producers:
            p.finish()
            accepted[p.node] += p.count
            for cid, texts in p.accepted.items():
                self.expected[cid][phase].extend(texts)
        self.wait_delivered(phase, self.clients)
        self.verify(phase, self.clients)
        self.check_gaps_and_offsets("phase 2 (node kill)")
        grew = self.check_kill_counters(before, before_nodes, accepted, away)
        landed = collections.Counter(cl.connections[1].node for cl in self.clients)
        counts = [len(self.expected[cl.id][phase]) for cl in self.clients]
        log(f"phase 2 (node kill): {sum(p.count for p in producers)} targeted sends accepted "
            f"({sum(p.refused for p in producers)} answered 429) and 4 broadcasts; each of "
            f"the {len(self.clients)} clients got every one of its {min(counts)}-{max(counts)} "
            "messages exactly once, in order per producer, offsets increasing, no gap "
            "notice; resumed on " + ", ".join(f"{k} {v}" for k, v in sorted(landed.items())) +
            f"; resumes {grew['resumes']:g}, replayed {grew['replayed']:g} (at least {away}), "
            f"stored {grew['stored']}, fetches {grew['fetches']}")

    def connect_clients(self, node):
        """CLIENTS shardcast.v1 clients on `node`, each with its subject routed on NATS."""
        ids = [f"r{i:02d}" for i in range(CLIENTS)]
        self.clients = [ResumeClient(self.loop, i, self.credentials.token(i),
                                     (node.name, node.port)) for i in ids]
        for cl in self.clients:
            cl.start(resume=False)
        require_connected(self.clients, 1, 30)
        self.wait_online({i: node for i in ids}, "phase 2 start")
        self.wait_routes(len(self.nodes), ids, "phase 2 start")

    def wait_accepted(self, producers, count, what):
        wait_until(lambda: accepted_total(producers) >= count, 30,
                   lambda: f"{what}: {count} sends accepted (have "
                   f"{accepted_total(producers)})")

    def kill_and_keep_away(self, producers, accepted, before_nodes):
        """SIGKILLs a mid-traffic, its clients set to resume on b or c alternately but kept
        away until WHILE_AWAY more sends and a broadcast are accepted and stored; leaves the
        producers paused and the clients waiting. Returns how many messages were sent to the
        clients while no session of theirs existed anywhere: each can reach its client only
        through a resume."""
        b, c = self.b, self.c
        self.gate = threading.Event()
        for i, cl in enumerate(self.clients):
            cl.target = (b.name, b.port) if i % 2 == 0 else (c.name, c.port)
            cl.gate = self.gate
            cl.reconnect = True
        self.a.kill()
        wait_until(lambda: all(cl.close_codes for cl in self.clients), 15,
                   lambda: f"{self.a.name}'s clients to see their connections end ("
                   f"{sum(1 for cl in self.clients if cl.close_codes)} did)")
        for p in producers:
            p.marking = True
        self.wait_accepted(producers, accepted_total(producers) + WHILE_AWAY,
                           "while the clients are away")
        for p in producers:
            p.gate.clear()
        wait_until(lambda: all(p.idle.is_set() for p in producers), 10,
                   "the producers to pause")
        for p in producers:
            p.marking = False
        self.broadcast(b, "r2", 1, self.clients)
        accepted[b.name] += 1
        so_far = accepted.copy()
        for p in producers:
            so_far[p.node] += p.count
        stored = {}

        def all_stored():
            stored.update({name: (h.get("stored") or 0) - (before_nodes[name].get("stored") or 0)
                           for name, h in self.histories([b, c]).items()})
            return all(stored[n.name] >= so_far[n.name] for n in (b, c))
        wait_until(all_stored, 15, lambda: f"{b.name} and {c.name} to store what they accepted "
                   f"({dict(so_far)}); cluster.history.stored grew by {stored}")
        return sum(sum(p.marked.values()) for p in producers) + len(self.clients)

    def resume_all(self, producers):
        """The producers go on and the clients come back at once: the resumes race live
        traffic. Each must have asked to resume from the first epoch."""
        for p in producers:
            p.gate.set()
        self.gate.set()
        require_connected(self.clients, 2, 30)
        nodes = {n.name: n for n in self.nodes}
        self.wait_online({cl.id: nodes[cl.target[0]] for cl in self.clients},
                         "phase 2 resumes")
        not_resumed = [(cl.id, cl.connections[1]) for cl in self.clients
                       if cl.connections[1].since is None
                       or cl.connections[1].epoch != self.epochs[0]]
        if not_resumed:
            raise TestFailure(f"clients reconnected without since and epoch {self.epochs[0]}: "
                              f"{not_resumed[:5]}")

    def check_kill_counters(self, before, before_nodes, accepted, away):
        b, c = self.b, self.c
        after, after_nodes = self.counters([b, c])
        self.check_storage("phase 2 (node kill)", before_nodes, after_nodes, accepted, True)
        grew = {k: after[k] - before[k] for k in after}
        problems = []
        if grew["resumes"] != len(self.clients):
            problems.append(f"shardcast_resumes_total grew by {grew['resumes']:g}, expected "
                            f"{len(self.clients)}")
        if grew["gaps"] != 0:
            problems.append(f"shardcast_resume_gaps_total grew by {grew['gaps']:g}, expected 0")
        if grew["replayed"] < away:
            problems.append(f"shardcast_resume_replayed_total grew by {grew['replayed']:g}, "
                            f"expected at least {away} (sent while no session existed)")
        if grew["fetch_errors"] != 0:
            problems.append(f"cluster.history.fetch_errors grew by {grew['fetch_errors']}")
        if problems:
            raise TestFailure(f"phase 2 (node kill), over {b.name} and {c.name}: " +
                              "; ".join(problems))
        return grew

    # --- phase 3: JetStream gone ---------------------------------------------------------

    def phase_jetstream_gone(self):
        phase = "r3"
        b, c = self.b, self.c
        self.restart_nats(jetstream=False)
        _, took = self.wait_history([b, c], False, "nats-server restarted without -js")
        self.wait_routes(2, [cl.id for cl in self.clients], "JetStream gone")
        log(f"phase 3 (JetStream gone): nats-server restarted without -js; {b.name} and "
            f"{c.name} reconnected and say history unavailable ({took:.1f}s)")
        self.phase_epochs[phase] = None
        before, before_nodes = self.counters([b, c])
        accepted = collections.Counter()
        for k, cl in enumerate(self.clients):
            for n in (b, c):
                self.send(n, phase, cl.id, k)
                accepted[n.name] += 1
        self.broadcast(b, phase, 0, self.clients)
        accepted[b.name] += 1
        self.wait_delivered(phase, self.clients)
        self.verify(phase, self.clients)
        log(f"phase 3 (JetStream gone): {sum(accepted.values()) - 1} live sends and a "
            f"broadcast reached all {len(self.clients)} clients, without offset or epoch")

        movers = self.move_with_gaps()
        for k, cl in enumerate(movers):
            self.send(b, phase, cl.id, 100 + k)
            accepted[b.name] += 1
        self.wait_delivered(phase, self.clients)
        self.verify(phase, self.clients)
        self.check_gaps_and_offsets("phase 3 (JetStream gone)")
        after, after_nodes = self.counters([b, c])
        self.check_storage("phase 3 (JetStream gone)", before_nodes, after_nodes, accepted,
                           False)
        grew = {k: after[k] - before[k] for k in after}
        if grew["resumes"] != len(movers) or grew["gaps_unavailable"] != len(movers) \
                or grew["gaps"] != len(movers):
            raise TestFailure(f"phase 3 (JetStream gone): over {b.name} and {c.name}, "
                              f"shardcast_resumes_total grew by {grew['resumes']:g}, "
                              f'shardcast_resume_gaps_total{{reason="unavailable"}} by '
                              f"{grew['gaps_unavailable']:g} and over every reason by "
                              f"{grew['gaps']:g}; expected {len(movers)} each")
        log(f"phase 3 (JetStream gone): {len(movers)} clients resumed on the other node and "
            f'got a gap notice "unavailable" first, then live sends; '
            f'shardcast_resume_gaps_total{{reason="unavailable"}} grew by '
            f"{grew['gaps_unavailable']:g}; unstored grew by {grew['unstored']} "
            f"({dict(accepted)}), stored by {grew['stored']}")

    def move_with_gaps(self):
        """GAP_RESUMES clients, half from b and half from c, leave and resume on the other
        node: each must get a gap notice "unavailable" first. Returns them."""
        b, c = self.b, self.c
        nodes = {b.name: b, c.name: c}
        movers = []
        for n in (b, c):
            movers += [cl for cl in self.clients
                       if cl.connections[-1].node == n.name][:GAP_RESUMES // 2]
        for cl in movers:
            here = nodes[cl.connections[-1].node]
            there = c if here is b else b
            since, epoch = cl.position
            cl.close()
            self.wait_offline(cl.id, here)
            cl.target = (there.name, there.port)
            connected = len(cl.connections) + 1
            cl.start()
            require_connected([cl], connected, 15)
            self.expect_gap(cl, len(cl.connections), ("unavailable",), since, epoch)
        self.wait_online({cl.id: nodes[cl.target[0]] for cl in movers}, "phase 3 resumes")
        return movers

    # --- phase 4: JetStream back ---------------------------------------------------------

    def phase_jetstream_back(self):
        phase = "r4"
        b, c = self.b, self.c
        self.restart_nats(jetstream=True)
        epoch, took = self.wait_history([b, c], True, "nats-server restarted with -js")
        if epoch in self.epochs:
            raise TestFailure(f"the nodes say epoch {epoch} once JetStream is back, the epoch "
                              f"of before the outage: it must change")
        self.epochs.append(epoch)
        self.phase_epochs[phase] = epoch
        self.wait_routes(2, [cl.id for cl in self.clients], "JetStream back")
        log(f"phase 4 (JetStream back): nats-server restarted with -js on the same store; "
            f"the nodes say history available with the new epoch {epoch} ({took:.1f}s)")
        before, before_nodes = self.counters([b, c])
        accepted = collections.Counter()
        stale, reason = self.resume_from_old_epoch(accepted)

        # A round to every client: each now has an offset of the new epoch. Number 0: the
        # sends of resume_after_away count from 1.
        for cl in self.clients:
            if cl is not stale:
                self.send(c, phase, cl.id, 0)
                accepted[c.name] += 1
        self.wait_delivered(phase, self.clients)
        self.verify(phase, self.clients)

        self.resume_after_away(stale, accepted)
        self.wait_delivered(phase, self.clients)
        self.verify(phase, self.clients)
        self.check_gaps_and_offsets("phase 4 (JetStream back)")
        after, after_nodes = self.counters([b, c])
        self.check_storage("phase 4 (JetStream back)", before_nodes, after_nodes, accepted,
                           True)
        grew = {k: after[k] - before[k] for k in after}
        if grew["resumes"] != 3 or grew["gaps"] != 1 or grew[f"gaps_{reason}"] != 1 \
                or grew["fetch_errors"] != 0:
            raise TestFailure(f"phase 4 (JetStream back): over {b.name} and {c.name}, "
                              f"shardcast_resumes_total grew by {grew['resumes']:g} (expected "
                              f"3), shardcast_resume_gaps_total by {grew['gaps']:g} and "
                              f'{{reason="{reason}"}} by {grew[f"gaps_{reason}"]:g} (expected '
                              f"1), fetch_errors by {grew['fetch_errors']} (expected 0)")
        log(f"phase 4 (JetStream back): counters over {b.name} and {c.name}: resumes "
            f"{grew['resumes']:g}, gaps {grew['gaps']:g} ({reason}), stored {grew['stored']} "
            f"({dict(accepted)}), unstored {grew['unstored']}, fetches {grew['fetches']}")

    def resume_from_old_epoch(self, accepted):
        """A client resumes on the other node from its last offset, of the first epoch: it
        must get a gap notice (epoch or unavailable) first, then live sends. Returns it and
        the notice's reason."""
        phase = "r4"
        b, c = self.b, self.c
        nodes = {b.name: b, c.name: c}
        stale = next(cl for cl in self.clients if self.gaps_expected[cl.id] == 0)
        here = nodes[stale.connections[-1].node]
        there = c if here is b else b
        since, old_epoch = stale.position
        if old_epoch != self.epochs[0]:
            raise TestFailure(f"{stale.id}'s last offset is of epoch {old_epoch}, expected the "
                              f"first one, {self.epochs[0]}")
        stale.close()
        self.wait_offline(stale.id, here)
        # What a resume from another epoch sends again is not theirs to count.
        for ph in ("r2", "r3"):
            self.upto[(stale.id, ph)] = len(stale.connections)
        stale.target = (there.name, there.port)
        connected = len(stale.connections) + 1
        stale.start()
        require_connected([stale], connected, 15)
        reason = self.expect_gap(stale, len(stale.connections), ("epoch", "unavailable"),
                                 since, old_epoch)
        self.wait_online({stale.id: there}, "phase 4 resume from the old epoch")
        self.send(here, phase, stale.id, 0)
        accepted[here.name] += 1
        self.wait_delivered(phase, [stale])
        again = [f for f in stale.data(stale.on_connection(len(stale.connections)))
                 if not str(f.data).startswith(phase + ":")]
        log(f"phase 4 (JetStream back): {stale.id} resumed on {there.name} from epoch "
            f'{old_epoch} (since {since}): gap notice "{reason}" first, then {len(again)} '
            "message(s) held from before, then a live send of the new epoch")
        return stale, reason

    def resume_after_away(self, stale, accepted):
        """Two clients with frames of the new epoch leave; AWAY sends via each of b and c to
        each and a broadcast follow. One resumes on the other node, with nothing sent
        meanwhile: it must get all of them, and the replay count grow by exactly that many.
        The other resumes through nginx while a producer sends it DURING more."""
        phase = "r4"
        b, c = self.b, self.c
        nodes = {b.name: b, c.name: c}
        others = [cl for cl in self.clients
                  if cl is not stale and self.gaps_expected[cl.id] == 0]
        direct = next(cl for cl in others if cl.connections[-1].node == b.name)
        proxied = next(cl for cl in others if cl.connections[-1].node == c.name)
        for cl in (direct, proxied):
            here = nodes[cl.connections[-1].node]
            cl.close()
            self.wait_offline(cl.id, here)
        for k in range(AWAY):
            for cl in (direct, proxied):
                for n in (b, c):
                    self.send(n, phase, cl.id, 1 + k)
                    accepted[n.name] += 1
        self.broadcast(b, phase, 0, self.clients)
        accepted[b.name] += 1
        away = 2 * AWAY + 1
        self.wait_delivered(phase, [cl for cl in self.clients if cl not in (direct, proxied)])

        replayed_before = self.total([b, c], "shardcast_resume_replayed_total")
        direct.target = (c.name, c.port)
        connected = len(direct.connections) + 1
        direct.start()
        require_connected([direct], connected, 15)
        self.wait_delivered(phase, [direct])
        replayed = [0]

        def counted():
            replayed[0] = self.total([b, c], "shardcast_resume_replayed_total") - replayed_before
            return replayed[0] >= away
        wait_until(counted, 10, lambda: f"shardcast_resume_replayed_total to grow by {away} "
                   f"for {direct.id}'s resume (grew by {replayed[0]:g})")
        if replayed[0] != away:
            raise TestFailure(f"shardcast_resume_replayed_total grew by {replayed[0]:g} for "
                              f"{direct.id}'s resume, expected {away}")

        producer = Producer("p-live", b, [proxied.id], phase, interval=0.01, limit=DURING)
        producer.start()
        wait_until(lambda: producer.count or producer.error or not producer.is_alive(), 10,
                   "the producer for the nginx resume to start")
        proxied.target = ("nginx", self.nginx.port)
        connected = len(proxied.connections) + 1
        proxied.start()
        require_connected([proxied], connected, 15)
        producer.finish()
        if producer.count != DURING:
            raise TestFailure(f"only {producer.count} of {DURING} sends to {proxied.id} were "
                              f"accepted ({producer.refused} answered 429)")
        accepted[b.name] += producer.count
        self.expected[proxied.id][phase].extend(producer.accepted[proxied.id])
        proxied_on = wait_until(lambda: self.where(proxied.id, [b, c]), 10,
                                f"{proxied.id} to be online on {b.name} or {c.name}")
        self.wait_delivered(phase, [direct, proxied])
        self.verify(phase, [direct, proxied])
        log(f"phase 4 (JetStream back): {direct.id} left {b.name}, was sent {2 * AWAY} "
            f"messages via {b.name} and {c.name} and a broadcast, resumed on {c.name} and got "
            f"all {away} exactly once, in order, no gap (replayed {replayed[0]:g}); "
            f"{proxied.id} resumed through nginx (on {proxied_on}) while {DURING} more were "
            f"sent: all {len(self.expected[proxied.id][phase])} of the phase once, in order")

    def final_check(self):
        """Nothing arrived late or twice: every phase still holds exactly what it did."""
        for phase in self.checked:
            self.verify(phase, self.clients)
        self.check_gaps_and_offsets("final check")
        stream = self.jsz_stream()
        state = (stream or {}).get("state") or {}
        log(f"final: no late or repeated message in {', '.join(self.checked)}; stream "
            f"{self.stream} holds {state.get('messages')} messages (sequences "
            f"{state.get('first_seq')}-{state.get('last_seq')})")

    def run(self):
        for self.current, step in [
            ("phase 1 (start)", self.start),
            ("phase 2 (node kill)", self.phase_kill),
            ("phase 3 (JetStream gone)", self.phase_jetstream_gone),
            ("phase 4 (JetStream back)", self.phase_jetstream_back),
            ("final check", self.final_check),
        ]:
            step()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shardcast", required=True, help="the shardcast binary")
    parser.add_argument("--source", required=True, help="the repository root")
    parser.add_argument("--nats-server", default="nats-server", help="the nats-server binary")
    parser.add_argument("--nginx", default="nginx", help="the nginx binary")
    parser.add_argument("--timeout", type=int, default=90, help="seconds before giving up")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    args.source = os.path.abspath(args.source)
    args.shardcast = os.path.abspath(args.shardcast)
    args.nginx_snippet = os.path.join(args.source, "deploy", "nginx", "shardcast.conf")
    return args


def main():
    args = parse_args()
    for binary, package in ((args.nats_server, "nats-server"), (args.nginx, "nginx")):
        if not find_program(binary):
            print(f"FAIL: {binary} not found (Debian: apt-get install {package})")
            return 1
    args.nats_server = find_program(args.nats_server)
    args.nginx = find_program(args.nginx)
    return run_scenario(lambda workdir: Scenario(args, workdir), timeout=args.timeout,
                        keep=args.keep, workdir_prefix="shardcast-resume-test-",
                        summary=lambda _: f"3 nodes, {CLIENTS} resuming clients, 4 phases")


if __name__ == "__main__":
    sys.exit(main())
