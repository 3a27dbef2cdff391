"""A minimal NATS client over a plain socket (the text protocol: INFO, CONNECT, PUB, HPUB,
SUB, MSG, HMSG, PING, PONG), so the cluster test can publish as a backend would and watch
the subjects the nodes use without a client library.

One reader thread parses what the server sends and answers its PINGs; publish, subscribe
and flush may be called from any thread (writes are serialised by a lock).
"""
import collections
import json
import socket
import threading
import time

from harness.waiting import TestFailure

Message = collections.namedtuple("Message", "subject payload headers")


class NatsClient:
    def __init__(self, port, name="shardcast-cluster-test", timeout=10):
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""
        self._write_lock = threading.Lock()
        self._changed = threading.Condition()
        self._pongs = 0
        self._next_sid = 1
        self._messages = collections.defaultdict(list)  # sid -> [Message], in arrival order
        self.error = None
        info = self._read_line()
        if not info.startswith(b"INFO "):
            raise TestFailure(f"NATS on port {port} greeted with {info[:100]!r}, not INFO")
        self.info = json.loads(info[5:])
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": False,
                   "name": name, "lang": "python-raw", "version": "0", "protocol": 1}
        self._write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        answer = self._read_line()
        if answer != b"PONG":
            raise TestFailure(f"NATS answered CONNECT with {answer[:200]!r}")
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # --- commands ------------------------------------------------------------------------

    def subscribe(self, subject, queue=None):
        """Returns the subscription id; its messages are read with messages(sid)."""
        with self._write_lock:
            sid = self._next_sid
            self._next_sid += 1
        self._write(f"SUB {subject} {queue + ' ' if queue else ''}{sid}\r\n".encode())
        return sid

    def publish(self, subject, payload, headers=None):
        data = payload.encode() if isinstance(payload, str) else payload
        if headers is None:
            self._write(f"PUB {subject} {len(data)}\r\n".encode() + data + b"\r\n")
            return
        block = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        head = block.encode()
        self._write(f"HPUB {subject} {len(head)} {len(head) + len(data)}\r\n".encode()
                    + head + data + b"\r\n")

    def flush(self, timeout=10):
        """Returns once the server has processed everything written before: a PING is
        answered only after the commands sent ahead of it."""
        with self._changed:
            target = self._pongs + 1
        self._write(b"PING\r\n")
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._pongs < target and self.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure(f"NATS did not answer PING within {timeout}s")
                self._changed.wait(left)
        if self.error:
            raise TestFailure(f"NATS connection failed: {self.error}")

    def messages(self, sid):
        with self._changed:
            return list(self._messages[sid])

    def close(self):
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._reader.join(5)

    # --- wire ----------------------------------------------------------------------------

    def _write(self, data):
        with self._write_lock:
            self._sock.sendall(data)

    def _fill(self):
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        self._buffer += chunk

    def _read_line(self):
        while b"\r\n" not in self._buffer:
            self._fill()
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _read_exact(self, size):
        while len(self._buffer) < size + 2:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size + 2:]  # drops the CRLF
        return data

    def _read_loop(self):
        try:
            while True:
                line = self._read_line()
                op, _, rest = line.partition(b" ")
                if op == b"MSG":  # MSG <subject> <sid> [reply-to] <#bytes>
                    fields = rest.split()
                    payload = self._read_exact(int(fields[-1]))
                    self._deliver(fields, payload, {})
                elif op == b"HMSG":  # HMSG <subject> <sid> [reply-to] <#header> <#total>
                    fields = rest.split()
                    header_size, total = int(fields[-2]), int(fields[-1])
                    data = self._read_exact(total)
                    self._deliver(fields[:-1], data[header_size:],
                                  _parse_headers(data[:header_size]))
                elif op == b"PING":
                    self._write(b"PONG\r\n")
                elif op == b"PONG":
                    with self._changed:
                        self._pongs += 1
                        self._changed.notify_all()
                elif op == b"-ERR":
                    raise ConnectionError(f"server error {rest.decode(errors='replace')}")
                # INFO (cluster updates) and +OK need no answer.
        except (OSError, ConnectionError, ValueError) as e:
            with self._changed:
                self.error = str(e) or type(e).__name__
                self._changed.notify_all()

    def _deliver(self, fields, payload, headers):
        message = Message(fields[0].decode(), payload, headers)
        with self._changed:
            self._messages[int(fields[1])].append(message)
            self._changed.notify_all()


def _parse_headers(block):
    """{name: value} from "NATS/1.0\\r\\nName: value\\r\\n...\\r\\n\\r\\n"."""
    headers = {}
    for line in block.decode(errors="replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return headers
