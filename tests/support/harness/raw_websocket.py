"""A WebSocket client written by hand over a blocking socket, for the clients a library will
not imitate: one that never answers pings, and one that stops reading while it keeps
talking. No extensions are offered, so frames are plain RFC 6455. upgrade_answer() sends one
upgrade request as given, for the requests a server must refuse.

One thread reads (read_message, close); send_text may run on another thread at the same
time, since the two directions of a socket are independent.
"""
import base64
import os
import socket
import struct
import threading
import urllib.parse

from harness.waiting import TestFailure

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def upgrade_answer(port, target, headers, timeout=10):
    """Sends `GET target` with the upgrade headers and `headers` ({name: value}; a value of
    None leaves that header out, such as Sec-WebSocket-Key), and returns the answer's status
    code and head. The connection is closed either way."""
    fields = {"Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
              "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
              "Sec-WebSocket-Version": "13", **headers}
    request = f"GET {target} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in fields.items() if value is not None)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall((request + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                break
            head += chunk
    head = head.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    status = head.split("\r\n", 1)[0].split()
    if len(status) < 2 or not status[1].isdigit():
        raise TestFailure(f"upgrade request for {target} got no HTTP answer: {head[:200]!r}")
    return int(status[1]), head


class RawWebSocket:
    """`token`, when given, goes in the query string (?token=) as a connect token."""

    def __init__(self, port, client_id, receive_buffer=None, timeout=10, token=None):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            # Before connect, so the window the server sees is small from the first byte.
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self._sock.settimeout(timeout)
        self._sock.connect(("127.0.0.1", port))
        self._pending = b""
        self._send_lock = threading.Lock()
        key = base64.b64encode(os.urandom(16)).decode()
        query = f"?token={urllib.parse.quote(token, safe='')}" if token else ""
        self._sock.sendall((f"GET /ws/{client_id}{query} HTTP/1.1\r\n"
                            f"Host: 127.0.0.1:{port}\r\n"
                            "Upgrade: websocket\r\n"
                            "Connection: Upgrade\r\n"
                            f"Sec-WebSocket-Key: {key}\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"101":
            raise TestFailure(f"upgrade of {client_id} refused: {head!r}")

    def send_text(self, text):
        self._send_frame(OP_TEXT, text.encode())

    def read_message(self, timeout=None):
        """The next data message as (opcode, payload), fragments joined, or a control frame
        as (opcode, payload). Raises socket.timeout after `timeout` seconds of silence and
        ConnectionError at EOF."""
        self._sock.settimeout(timeout)
        opcode, fin, payload = self._read_frame()
        if opcode in (OP_CLOSE, OP_PING, OP_PONG) or fin:
            return opcode, payload
        parts = [payload]
        # The rest of a message is on its way: a short timeout here would drop the start.
        self._sock.settimeout(max(timeout or 0, 10))
        while True:
            next_opcode, fin, payload = self._read_frame()
            if next_opcode in (OP_CLOSE, OP_PING, OP_PONG):
                if next_opcode == OP_CLOSE:
                    raise TestFailure("close frame in the middle of a fragmented message")
                continue  # control frames may arrive between fragments
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)

    def close(self, timeout=10):
        """Clean close: sends close 1000, reads up to the server's close frame and then the
        end of the stream. Returns the server's close code."""
        self._send_frame(OP_CLOSE, struct.pack("!H", 1000))
        while True:
            opcode, payload = self.read_message(timeout)
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                break
        self._sock.settimeout(timeout)
        while self._sock.recv(4096):
            pass
        self._sock.close()
        return code

    def abort(self):
        self._sock.close()

    def _send_frame(self, opcode, payload):
        # Client frames are masked (RFC 6455 5.3).
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        with self._send_lock:
            self._sock.sendall(header + mask + masked)

    def _read_frame(self):
        # Consumes nothing until the whole frame is buffered, so a timeout loses no bytes.
        self._want(2)
        b0, b1 = self._pending[0], self._pending[1]
        length, start = b1 & 0x7F, 2
        if length == 126:
            self._want(4)
            length, start = struct.unpack_from("!H", self._pending, 2)[0], 4
        elif length == 127:
            self._want(10)
            length, start = struct.unpack_from("!Q", self._pending, 2)[0], 10
        if b1 & 0x80:
            raise TestFailure("the server sent a masked frame")
        self._want(start + length)
        payload = self._pending[start:start + length]
        self._pending = self._pending[start + length:]
        return b0 & 0x0F, bool(b0 & 0x80), payload

    def _want(self, n):
        while len(self._pending) < n:
            self._fill()

    def _read_until(self, marker):
        while marker not in self._pending:
            self._fill()
        end = self._pending.index(marker) + len(marker)
        data, self._pending = self._pending[:end], self._pending[end:]
        return data

    def _fill(self):
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self._pending += chunk
