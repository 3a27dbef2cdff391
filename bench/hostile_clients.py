#!/usr/bin/python3
"""Hostile clients for the soak (bench/soak.sh): a few connections of each kind below, each
reopened as soon as the server has dealt with the last, until SIGTERM or --seconds. The
server must end every one of them itself, each with its own answer, and keep nothing of them
once they have gone; the soak checks the second half (descriptors, sessions, RSS), this
driver the first, and writes what it saw as JSON.

    hostile_clients.py --port PORT --seconds S --out FILE [--each N]

The kinds, and the answer each must get:
- idle:     connects and sends nothing: closed at http.header_timeout (408 or a plain close)
- slow_head: trickles its request one byte a second: 408 at http.header_timeout
- garbage:  sends bytes that are not HTTP: 400
- stalled:  upgrades, then never reads nor answers a ping: closed at session.heartbeat_timeout
            (4002, or a cut once its close handshake times out)
- ping_flood: upgrades, then sends 200 pings at once: 1008 (limits.client_ping_burst)
- oversized: upgrades, then starts a 1 MiB message: 1009 (session.max_message_size)

Threads: one per connection slot, each blocking on its own socket; the main thread waits.
"""
import argparse
import base64
import json
import os
import signal
import socket
import struct
import threading
import time

# How long a connection may wait for the server's answer before it counts as unanswered:
# well past the timeouts soak.sh sets (header 2 s; heartbeat every 3 s, 10 s without an
# answer, then the 2 s close handshake).
ANSWER_WITHIN_S = {"idle": 15, "slow_head": 15, "garbage": 15, "stalled": 30,
                   "ping_flood": 15, "oversized": 15}
# What each kind expects: HTTP statuses, WebSocket close codes, or 0 for a close without one.
EXPECTED = {"idle": {408, 0}, "slow_head": {408, 0}, "garbage": {400},
            "stalled": {4002, 0}, "ping_flood": {1008}, "oversized": {1009}}
# A stalled client reads nothing this long (its kernel buffer fills with what the server
# sends), then only drains to see how it was closed; it never answers a ping either way.
STALLED_HOLD_S = 10
STOP = threading.Event()


def client_frame(opcode, payload=b"", length=None):
    """A masked client frame; length overrides the header's payload length (oversized)."""
    n = len(payload) if length is None else length
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_code(data):
    """The code of the server's close frame in data (unmasked frames), 0 when there is none."""
    i = 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = struct.unpack_from("!H", data, i)[0], i + 2
        elif n == 127:
            n, i = struct.unpack_from("!Q", data, i)[0], i + 8
        if opcode == 0x8:
            return struct.unpack_from("!H", data, i)[0] if n >= 2 and i + 2 <= len(data) else 0
        i += n
    return 0


def read_until_closed(sock, deadline):
    """Everything the server sends until it closes; None when it has not by the deadline."""
    data = b""
    while not STOP.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(min(left, 0.5))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return data  # a reset: closed all the same
        if not chunk:
            return data
        data += chunk
    return None


def upgrade(sock, client_id, port):
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /ws/{client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        head += chunk
    status = int(head.split(b" ", 2)[1])
    return head.split(b"\r\n\r\n", 1)[1] if status == 101 else None


def answer(kind, sock, port, client_id):
    """Plays one connection of kind; the server's answer (status or close code), or None."""
    deadline = time.monotonic() + ANSWER_WITHIN_S[kind]
    if kind == "slow_head":
        request = f"GET /ws/{client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: "
        sock.sendall(request.encode())
        for _ in range(ANSWER_WITHIN_S[kind]):
            if STOP.wait(1):
                return None
            try:
                sock.sendall(b"a")
            except OSError:
                break  # the server has answered and closed
    elif kind == "garbage":
        sock.sendall(os.urandom(200).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n\r\n")
    elif kind in ("stalled", "ping_flood", "oversized"):
        if upgrade(sock, client_id, port) is None:
            return -1
        if kind == "stalled" and STOP.wait(STALLED_HOLD_S):
            return None
        if kind == "ping_flood":
            sock.sendall(client_frame(0x9) * 200)
        elif kind == "oversized":
            sock.sendall(client_frame(0x1, b"x" * 4096, length=1 << 20)[:4110])
    data = read_until_closed(sock, deadline)
    if data is None:
        return None
    if data.startswith(b"HTTP/1.1 "):
        return int(data[9:12])
    return close_code(data)


def slot(kind, number, port, tally, lock):
    """One connection slot: plays kind again and again until STOP."""
    n = 0
    while not STOP.is_set():
        n += 1
        outcome = "error"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                # A reset, not a FIN, when this side gives up: the rudest way to leave.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                got = answer(kind, sock, port, f"hostile{kind.replace('_', '')}{number}x{n}")
                if got is None and STOP.is_set():
                    break
                outcome = "unanswered" if got is None else str(got)
        except OSError:
            pass
        with lock:
            counts = tally.setdefault(kind, {})
            counts[outcome] = counts.get(outcome, 0) + 1
        STOP.wait(0.2)


def summary(tally):
    """Per kind: every outcome with its count, the expected ones, and whether all were."""
    out = {}
    for kind, expected in EXPECTED.items():
        counts = tally.get(kind, {})
        good = sum(n for k, n in counts.items() if k.lstrip("-").isdigit() and int(k) in expected)
        out[kind] = {"outcomes": counts, "expected": sorted(expected), "answered_as_expected": good,
                     "other": sum(counts.values()) - good}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--each", type=int, default=2, help="connections of each kind at once")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    tally, lock = {}, threading.Lock()
    threads = [threading.Thread(target=slot, args=(kind, i, args.port, tally, lock))
               for kind in EXPECTED for i in range(args.each)]
    for thread in threads:
        thread.start()
    STOP.wait(args.seconds)
    STOP.set()
    for thread in threads:
        thread.join()
    with open(args.out, "w") as f:
        json.dump({"each": args.each, "kinds": summary(tally)}, f, indent=1)


if __name__ == "__main__":
    main()
