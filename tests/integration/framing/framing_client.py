#!/usr/bin/python3
"""The server's own WebSocket framing, checked by a client this project did not write
(Debian's python3-websockets, strict about RFC 6455).

Usage: framing_client.py PORT. Runs each check against the server on 127.0.0.1:PORT, which
must have session.max_message_size at 64 KiB (the default). Prints one line per check and
exits 0 when all passed, 1 at the first failure. Bounded: every wait has a timeout.
"""
import asyncio
import json
import sys
import urllib.request

import websockets

PORT = int(sys.argv[1])
BURST = 500


def post(path, body, ndjson=False):
    data = body.encode() if ndjson else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202, response.status


def frames_received():
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/v1/stats", timeout=10) as r:
        return json.load(r)["totals"]["frames_received"]


def outbound_bytes():
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/v1/stats", timeout=10) as r:
        return json.load(r)["totals"]["outbound_bytes"]


def connect(client_id, **options):
    return websockets.connect(f"ws://127.0.0.1:{PORT}/ws/{client_id}", max_size=None, **options)


async def burst_arrives_whole_and_in_order():
    # One batch request: the lines reach the session in one turn and leave in shared writes.
    async with connect("burst") as ws:
        lines = "\n".join(json.dumps({"to": "burst", "data": f"m{i:04d}-" + "x" * (i % 300)})
                          for i in range(BURST))
        await asyncio.to_thread(post, "/api/v1/batch", lines, True)
        for i in range(BURST):
            message = await asyncio.wait_for(ws.recv(), 10)
            expected = f"m{i:04d}-" + "x" * (i % 300)
            assert message == expected, f"message {i}: {message[:20]!r}"


def stall_payload(i):
    # Sizes on both sides of what the server copies next to its header (512 bytes) and of
    # the 16-bit length encoding, so a write cut anywhere cuts every kind of frame.
    sizes = (0, 100, 504, 505, 506, 2000, 70000)
    return f"s{i:06d}-" + "y" * sizes[i % len(sizes)]


async def stalled_reader_gets_everything_in_order():
    # The client stops reading (one queued message, a 64 KiB read buffer), so the kernel
    # buffers fill and the server's writes stop part way; once it reads again, every
    # message must arrive whole and in order. Publishing stops soon after the server has
    # bytes it could not write, well inside the session's 1 MiB buffer limit.
    async with connect("stall", max_queue=1, read_limit=64 * 1024) as ws:
        sent, held = 0, False
        for _ in range(500):
            lines = "\n".join(json.dumps({"to": "stall", "data": stall_payload(sent + i)})
                              for i in range(21))  # about 220 KB
            await asyncio.to_thread(post, "/api/v1/batch", lines, True)
            sent += 21
            if await asyncio.to_thread(outbound_bytes) > 0:
                await asyncio.sleep(0.1)  # still held a moment later: the write is waiting
                held = await asyncio.to_thread(outbound_bytes) > 0
                if held:
                    break
        assert held, "the server never had to hold bytes back"
        for i in range(sent):
            message = await asyncio.wait_for(ws.recv(), 10)
            assert message == stall_payload(i), f"message {i}: {message[:20]!r}"


async def ping_gets_its_pong():
    async with connect("pinger") as ws:
        waiter = await ws.ping(b"are you there")
        await asyncio.wait_for(waiter, 5)


async def fragmented_message_counts_once():
    async with connect("fragments") as ws:
        before = await asyncio.to_thread(frames_received)
        await ws.send(["frag", "men", "ted \u2713"])  # three frames: text, continuation x2
        await ws.send(b"\x00\x01binary")
        for _ in range(50):
            if await asyncio.to_thread(frames_received) == before + 2:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"frames_received {await asyncio.to_thread(frames_received)}, "
                             f"expected {before + 2}")


async def client_close_is_answered():
    async with connect("closer") as ws:
        await ws.close(code=1000, reason="done")
        assert ws.close_code == 1000, f"close code {ws.close_code}"


async def oversized_message_gets_1009():
    async with connect("big") as ws:
        await ws.send("x" * (64 * 1024 + 1))
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1009, f"got {closed!r}"
            return
        raise AssertionError("no close after an oversized message")


async def disconnect_arrives_after_earlier_messages():
    async with connect("leaver") as ws:
        await asyncio.to_thread(post, "/api/v1/send", {"to": "leaver", "data": "last words"})
        await asyncio.to_thread(post, "/api/v1/disconnect",
                                {"to": "leaver", "code": 4321, "reason": "bye"})
        assert await asyncio.wait_for(ws.recv(), 5) == "last words"
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (
                4321, "bye"), f"got {closed!r}"
            assert ws.close_code == 4321
            return
        raise AssertionError("still open after disconnect")


CHECKS = [burst_arrives_whole_and_in_order, stalled_reader_gets_everything_in_order,
          ping_gets_its_pong, fragmented_message_counts_once, client_close_is_answered,
          oversized_message_gets_1009, disconnect_arrives_after_earlier_messages]


async def main():
    for check in CHECKS:
        try:
            await asyncio.wait_for(check(), 30)
        except Exception as e:  # a failed check, whatever raised it, ends the run
            print(f"FAIL {check.__name__}: {e!r}", flush=True)
            sys.exit(1)
        print(f"ok {check.__name__}", flush=True)
    print("PASS", flush=True)


asyncio.run(main())
