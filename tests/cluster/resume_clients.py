"""shardcast.v1 clients that resume, for the cluster resume test: each offers the subprotocol,
parses every frame it receives (data frames with their offset and epoch, gap notices,
anything else) and remembers the offset and epoch of the last data frame that carried them,
which the next connection asks to resume from (?since=&epoch=), as a real client would.

The clients run on a ClientLoop (ws_clients.py), so they answer pings while the main thread
blocks. Their fields are written on the loop thread and read from the main thread, a whole
list or value at a time, which the GIL keeps consistent; `target` is set by the main thread
and read by the loop thread when it opens the next connection.
"""
import asyncio
import collections
import json
import urllib.parse

import websockets

from harness.waiting import TestFailure, wait_until

SUBPROTOCOL = "shardcast.v1"
# Consecutive failed attempts before a client gives up, and the most connections one client
# may make in the whole test: both bound the reconnect loop.
MAX_ATTEMPTS = 40
MAX_CONNECTIONS = 10
# A gated reconnect waits at most this many polls of 25 ms.
GATE_POLLS = 800

# One frame as received. connection: 1 for the client's first connection, and so on; node:
# the target name that connection went to. kind: "data" (data, offset and epoch set, the
# last two None when the frame has none), "gap" (gap: the notice's object) or "other".
Frame = collections.namedtuple("Frame", "connection node kind data offset epoch gap raw")

# One connection: where it went and the resume position it asked for (None: no resume).
Connection = collections.namedtuple("Connection", "node since epoch")


def parse_frame(connection, node, text):
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict) and set(value) <= {"data", "offset", "epoch"} \
                and "data" in value:
            return Frame(connection, node, "data", value["data"], value.get("offset"),
                         value.get("epoch"), None, text)
        if isinstance(value, dict) and set(value) == {"gap"}:
            return Frame(connection, node, "gap", None, None, None, value["gap"], text)
    return Frame(connection, node, "other", None, None, None, None, text)


class ResumeClient:
    """A client id with a connect token; `target` is (name, port) of where its next
    connection goes. With `reconnect` set, a connection the server side ends is followed by
    a resume at `target` (bounded attempts); close() ends it from our side."""

    def __init__(self, client_loop, client_id, token, target):
        self.id = client_id
        self.target = target
        self.reconnect = False
        # When set to a threading.Event, a reconnect waits (bounded) until it is set: the
        # test decides how long a client stays away.
        self.gate = None
        self.frames = []  # every Frame, in arrival order
        self.connections = []  # one Connection per successful open
        self.position = None  # (offset, epoch) of the last data frame that carried them
        self.close_codes = []  # one per connection that ended
        self.failure = None  # why the connect loop gave up, if it did
        self._token = token
        self._loop = client_loop
        self._ws = None
        self._task = None
        self._stopping = False
        self._resume = True

    @property
    def open(self):
        return self._ws is not None

    def start(self, resume=True):
        """Schedules the connect loop; resume=False makes its first connection without
        since/epoch. The caller waits for `connections` to grow."""
        self._stopping = False
        self._resume = resume
        self._loop.loop.call_soon_threadsafe(self._schedule)

    def _schedule(self):
        self._task = asyncio.ensure_future(self._run())

    def _url(self):
        name, port = self.target
        query = {"token": self._token}
        since = epoch = None
        if self._resume and self.position is not None:
            since, epoch = self.position
            query["since"] = str(since)
            query["epoch"] = epoch
        path = f"/ws/{urllib.parse.quote(self.id, safe='')}"
        return name, since, epoch, (f"ws://127.0.0.1:{port}{path}?"
                                    f"{urllib.parse.urlencode(query)}")

    async def _run(self):
        attempts = 0
        while not self._stopping and len(self.connections) < MAX_CONNECTIONS:
            name, since, epoch, url = self._url()
            try:
                ws = await websockets.connect(url, subprotocols=[SUBPROTOCOL],
                                              ping_interval=None, max_size=None,
                                              open_timeout=5, close_timeout=2)
            except websockets.InvalidStatusCode as e:
                # A refusal is an answer, not an outage: retrying would hide it.
                self.failure = (f"{name} refused the upgrade (since={since}, epoch={epoch}) "
                                f"with {e.status_code}")
                return
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
                attempts += 1
                if attempts >= MAX_ATTEMPTS:
                    self.failure = f"{attempts} attempts to connect to {name} failed: {e!r}"
                    return
                await asyncio.sleep(min(0.05 * attempts, 0.5))
                continue
            attempts = 0
            if ws.subprotocol != SUBPROTOCOL:
                self.failure = f"{name} selected subprotocol {ws.subprotocol!r}"
                await ws.close()
                return
            self.connections.append(Connection(name, since, epoch))
            self._resume = True  # start(resume=False) is for the first connection only
            self._ws = ws
            try:
                async for text in ws:
                    self._record(name, text)
            except websockets.ConnectionClosed:
                pass
            self._ws = None
            self.close_codes.append(ws.close_code)
            if not self.reconnect or self._stopping:
                return
            await asyncio.sleep(0.05)
            for _ in range(GATE_POLLS):
                if self.gate is None or self.gate.is_set() or self._stopping:
                    break
                await asyncio.sleep(0.025)
        if len(self.connections) >= MAX_CONNECTIONS and not self._stopping:
            self.failure = f"connected {MAX_CONNECTIONS} times"

    def _record(self, node, text):
        frame = parse_frame(len(self.connections), node, text)
        self.frames.append(frame)
        if frame.kind == "data" and frame.offset is not None and frame.epoch is not None:
            self.position = (frame.offset, frame.epoch)

    def close(self):
        """A clean close from our side, with no reconnect."""
        self._stopping = True
        self._loop.run(self._close())

    async def _close(self):
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)
        # A reconnect that was under way when the close began opens a connection the loop
        # then never leaves: close that one too, and end the loop.
        if self._ws is not None and self._ws is not ws:
            await self._ws.close()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5)
            self._ws = None

    # --- what was received, read from the main thread -------------------------------------

    def data(self, frames=None):
        return [f for f in (self.frames if frames is None else frames) if f.kind == "data"]

    def gaps(self):
        return [f for f in self.frames if f.kind == "gap"]

    def on_connection(self, number):
        return [f for f in self.frames if f.connection == number]


def offset_problems(client, frames, limit=3):
    """Where offsets fail to increase along `frames` of `client`: within one epoch, each data
    frame's offset above the one before; a gap notice starts afresh (what follows it may be
    a whole new stream). Offsets must be integers."""
    problems = []
    last = None  # (epoch, offset, text) of the last data frame with an offset
    for f in frames:
        if f.kind == "gap":
            last = None
        if f.kind != "data" or f.offset is None:
            continue
        if not isinstance(f.offset, int) or isinstance(f.offset, bool) or f.offset < 0 \
                or not isinstance(f.epoch, str):
            problems.append(f"{client.id}: frame {f.raw[:120]!r} has offset {f.offset!r} and "
                            f"epoch {f.epoch!r}, not a whole number and a string")
        elif last is not None and last[0] == f.epoch and f.offset <= last[1]:
            problems.append(f"{client.id}: offset {f.offset} ({f.data!r}, connection "
                            f"{f.connection} on {f.node}) after offset {last[1]} ({last[2]!r})"
                            f" in epoch {f.epoch}")
        if isinstance(f.offset, int):
            last = (f.epoch, f.offset, f.data)
        if len(problems) >= limit:
            break
    return problems


def require_connected(clients, count, timeout):
    """Waits until each client has made `count` connections and has one open. Count them
    before start(): the client's loop may connect before the caller reads `connections`."""
    def done():
        failed = [c for c in clients if c.failure]
        if failed:
            raise TestFailure(f"{len(failed)} client(s) gave up connecting, e.g. "
                              f"{failed[0].id}: {failed[0].failure}")
        return all(len(c.connections) >= count and c.open for c in clients)
    wait_until(done, timeout, lambda: f"{len(clients)} clients to make connection {count}: " +
               ", ".join(f"{c.id} has {len(c.connections)} (open {c.open}, connections "
                         f"{c.connections}, close codes {c.close_codes})"
                         for c in clients if len(c.connections) < count or not c.open)[:600])
