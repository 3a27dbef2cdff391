#!/usr/bin/env python3
"""Checks deploy/nginx/shardcast.conf with a real nginx (ctest NginxSnippetIsValidAndProxies).

Runs the compose nginx.conf and the snippet from a temporary directory (local_nginx.py): the
snippet's `server shardcast-N:8080` lines point at two stub nodes and one address that
refuses connections, its TLS server uses a throw-away certificate. Runs `nginx -t` on it,
then starts it on 127.0.0.1 and checks, over https: the API is proxied and retried past the
dead node, X-Forwarded-For and X-Real-IP carry the address nginx saw (not one the client
sent), X-Forwarded-Proto is https, HSTS is set, the body limit is 4 MiB, a WebSocket upgrade
reaches a node with its Upgrade and Connection headers, and /metrics is not exposed.
Python 3 standard library and openssl; exits 1 naming the first failure.
"""

import base64
import hashlib
import http.client
import json
import socket
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# The harness is imported from the source tree, which must not collect __pycache__.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from harness.processes import free_port  # noqa: E402
from harness.waiting import TestFailure  # noqa: E402
from local_nginx import LocalNginx, expect  # noqa: E402

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEADLINE_SECONDS = 10
# An address a client claims to have, which no node may believe.
FORGED_ADDRESS = "203.0.113.7"


class StubNode(BaseHTTPRequestHandler):
    """Answers like a shardcast node would, and reports the headers nginx sent."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/ws/"):
            self.upgrade()
        else:
            self.reply(200, {"node": self.server.name,
                             "x_forwarded_for": self.headers.get("X-Forwarded-For", ""),
                             "x_real_ip": self.headers.get("X-Real-IP", ""),
                             "x_forwarded_proto": self.headers.get("X-Forwarded-Proto", ""),
                             "connection": self.headers.get("Connection", "")})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(202, {"accepted": 1})

    def upgrade(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        if (self.headers.get("Upgrade", "").lower() != "websocket"
                or self.headers.get("Connection", "").lower() != "upgrade" or not key):
            self.reply(426, {"error": "upgrade headers did not reach the node"})
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                          ).encode())
        self.wfile.write(b"\x81\x05hello")  # one unmasked text frame, as a server sends
        self.close_connection = True


def start_stub(name):
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubNode)
    server.name = name
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def request(edge, method, path, body=None, headers=None):
    """One request over https; returns the status, the headers and the body."""
    conn = http.client.HTTPSConnection("127.0.0.1", edge.tls_port, timeout=DEADLINE_SECONDS,
                                       context=edge.context)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def check_api(edge):
    nodes = set()
    # Six requests: least_conn tries the dead address too, and nginx must skip it each time.
    # Each claims another address; the node must see only the one nginx saw.
    for _ in range(6):
        status, headers, body = request(edge, "GET", "/api/v1/stats", headers={
            "X-Forwarded-For": FORGED_ADDRESS, "X-Real-IP": FORGED_ADDRESS})
        expect(status == 200, f"GET /api/v1/stats through nginx: {status} {body!r}")
        answer = json.loads(body)
        for header in ("x_forwarded_for", "x_real_ip"):
            expect(answer[header] == "127.0.0.1",
                   f"{header} at the node: {answer[header]!r}, not 127.0.0.1 alone")
        expect(answer["x_forwarded_proto"] == "https",
               f"X-Forwarded-Proto at the node: {answer['x_forwarded_proto']!r}")
        expect(answer["connection"] == "",
               f"API request reached the node with Connection: {answer['connection']!r}"
               " (upstream keepalive needs none)")
        expect(headers.get("Strict-Transport-Security", "").startswith("max-age="),
               f"no HSTS header on an API answer: {dict(headers)}")
        nodes.add(answer["node"])
    expect(nodes == {"node-a", "node-b"}, f"API requests reached only {sorted(nodes)}")

    status, _, body = request(edge, "POST", "/api/v1/send", body=b'{"to":"alice","data":1}',
                              headers={"Content-Type": "application/json"})
    expect(status == 202, f"POST /api/v1/send through nginx: {status} {body!r}")


def check_body_limit(edge):
    limit = 4 * 1024 * 1024
    status, _, body = request(edge, "POST", "/api/v1/batch", body=b"x" * limit)
    expect(status == 202, f"a 4 MiB body got {status} {body!r}, not 202")
    conn = http.client.HTTPSConnection("127.0.0.1", edge.tls_port, timeout=DEADLINE_SECONDS,
                                       context=edge.context)
    try:
        # nginx decides from Content-Length, like the node does, before any body is sent.
        conn.putrequest("POST", "/api/v1/batch")
        conn.putheader("Content-Length", str(limit + 1))
        conn.endheaders()
        status = conn.getresponse().status
    except TimeoutError:
        raise TestFailure("a 4 MiB + 1 Content-Length was not refused: nginx waited for the "
                          "body")
    finally:
        conn.close()
    expect(status == 413, f"a 4 MiB + 1 body got {status}, not 413")


def read_until(sock, done):
    received = b""
    while not done(received):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def check_websocket(edge):
    key = base64.b64encode(b"shardcast-nginx-1").decode()
    raw = socket.create_connection(("127.0.0.1", edge.tls_port), timeout=DEADLINE_SECONDS)
    with edge.context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall((f"GET /ws/alice HTTP/1.1\r\nHost: 127.0.0.1:{edge.tls_port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = read_until(s, lambda r: b"\r\n\r\n" in r)
        expect(head.startswith(b"HTTP/1.1 101"), f"WebSocket upgrade through nginx: {head!r}")
        frame = head.split(b"\r\n\r\n", 1)[1]
        frame += read_until(s, lambda r: len(frame + r) >= 7)
    expect(frame == b"\x81\x05hello", f"no frame after the upgrade: {frame!r}")


def check_not_exposed(edge):
    for path in ("/metrics", "/healthz"):
        status, _, _ = request(edge, "GET", path)
        expect(status == 404, f"GET {path} through nginx got {status}, not 404")


def main():
    with tempfile.TemporaryDirectory(prefix="shardcast-nginx-") as name:
        stubs = [start_stub("node-a"), start_stub("node-b")]
        try:
            upstreams = ([f"127.0.0.1:{free_port()}"]
                         + [f"127.0.0.1:{s.server_port}" for s in stubs])
            with LocalNginx(Path(name), upstreams) as edge:
                check_api(edge)
                check_body_limit(edge)
                check_websocket(edge)
                check_not_exposed(edge)
        finally:
            for stub in stubs:
                stub.shutdown()
    print("nginx snippet: valid, proxies the API and WebSocket upgrades over TLS with the "
          "client's address, hides /metrics")


if __name__ == "__main__":
    try:
        main()
    except (TestFailure, OSError) as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
