"""WebSocket clients (python3-websockets) on an event loop of their own thread, so they keep
answering the servers' pings while the main thread blocks on HTTP calls.

A Client proves its id with a connect token in the query string (?token=), as a browser
would, and may offer subprotocols. It records every message it receives, grouped by the
message's phase tag (the text before the first ':'), across every connection it makes. One
that reconnects (the clients behind nginx) opens a new connection with a short backoff
whenever the server side goes away, with bounded attempts. Its fields are written on the
loop thread and read from the main thread; each read is of a whole list or int, which the
GIL keeps consistent.
"""
import asyncio
import collections
import threading
import urllib.parse

import websockets

from harness.waiting import TestFailure

# Consecutive failed attempts before a client gives up, and the most connections one
# client may make in the whole test: both bound the reconnect loop.
MAX_ATTEMPTS = 40
MAX_CONNECTIONS = 10


class ClientLoop:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine, timeout=30):
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, timeout),
                                                  self.loop)
        try:
            return future.result(timeout + 5)
        except (asyncio.TimeoutError, TimeoutError):
            raise TestFailure(f"a client operation took over {timeout}s") from None

    def stop(self):
        """Cancels every client task (their sockets are dropped), then ends the thread."""
        async def cancel_all():
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=10) if tasks else None
        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(15)
        except Exception:  # the thread goes away below in any case
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class Client:
    """`token` proves `client_id`; named=False connects to /ws instead of /ws/{id}, so the
    server takes the id from the token alone. `subprotocols` are offered on every connect."""

    def __init__(self, client_loop, port, client_id, reconnect, token, named=True,
                 subprotocols=None):
        self.id = client_id
        path = f"/ws/{client_id}" if named else "/ws"
        self.url = f"ws://127.0.0.1:{port}{path}?token={urllib.parse.quote(token, safe='')}"
        self.reconnect = reconnect
        self.subprotocols = subprotocols
        self.subprotocol = None  # the one the server selected on the last connection
        self.received = []
        self.by_phase = collections.defaultdict(list)
        self.connections = 0  # successful opens
        self.close_codes = []  # one per connection that ended
        self.failure = None  # why the reconnect loop gave up, if it did
        self._loop = client_loop
        self._ws = None
        self._task = None
        self._stopping = False

    @property
    def open(self):
        return self._ws is not None

    def start(self):
        """Schedules the connect loop; the caller waits for `connections` to grow."""
        self._loop.loop.call_soon_threadsafe(self._schedule)

    def _schedule(self):
        self._task = asyncio.ensure_future(self._run())

    async def _run(self):
        attempts = 0
        while not self._stopping and self.connections < MAX_CONNECTIONS:
            try:
                ws = await websockets.connect(self.url, ping_interval=None, max_size=None,
                                              open_timeout=5, close_timeout=2,
                                              subprotocols=self.subprotocols)
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
                attempts += 1
                if not self.reconnect or attempts >= MAX_ATTEMPTS:
                    self.failure = f"{attempts} attempt(s) to connect failed, last: {e!r}"
                    return
                await asyncio.sleep(min(0.05 * attempts, 0.5))
                continue
            attempts = 0
            self.subprotocol = ws.subprotocol
            self._ws = ws
            self.connections += 1
            try:
                async for message in ws:
                    self.received.append(message)
                    self.by_phase[message.split(":", 1)[0]].append(message)
            except websockets.ConnectionClosed:
                pass
            self._ws = None
            self.close_codes.append(ws.close_code)
            if not self.reconnect:
                return
            await asyncio.sleep(0.1)
        if self.connections >= MAX_CONNECTIONS and not self._stopping:
            self.failure = f"reconnected {MAX_CONNECTIONS} times"

    def send_frame(self, text):
        ws = self._ws
        if ws is None:
            raise TestFailure(f"{self.id} is not connected, cannot send a frame")
        self._loop.run(ws.send(text))

    def close(self):
        """A clean close from our side, with no reconnect; the close code the server answered
        with, or None if the client was not connected."""
        self._stopping = True
        self._loop.run(self._close())
        return self.close_codes[-1] if self.close_codes else None

    async def _close(self):
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=10)

    def messages(self, phase):
        return list(self.by_phase.get(phase, ()))


def start_clients(client_loop, port, ids, reconnect, token_for):
    """token_for(id) is the connect token of each."""
    clients = [Client(client_loop, port, i, reconnect, token_for(i)) for i in ids]
    for c in clients:
        c.start()
    return clients
