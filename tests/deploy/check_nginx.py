#!/usr/bin/env python3
"""Checks deploy/nginx/shardcast.conf with a real nginx (ctest NginxSnippetIsValidAndProxies).

Builds an nginx.conf in a temporary directory from deploy/cluster/nginx.conf (the compose
one), with the snippet's `server shardcast-N:8080` lines and its `listen` port substituted the
way the cluster tests do. Runs `nginx -t` on it, then starts it on 127.0.0.1 in front of two
stub nodes and one address that refuses connections, and checks: the API is proxied and
retried past the dead node, X-Forwarded-For is set, the body limit is 4 MiB, a WebSocket
upgrade reaches a node with its Upgrade and Connection headers, and /metrics is not exposed.
Python 3 standard library only; exits 1 naming the first failure.
"""

import base64
import hashlib
import http.client
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "deploy/nginx/shardcast.conf"
MAIN_CONF = ROOT / "deploy/cluster/nginx.conf"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEADLINE_SECONDS = 10


class Failure(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failure(message)


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


def free_port():
    """A port nothing listens on (the kernel may hand it out again, but not this quickly)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp, listen_port, upstreams):
    snippet = SNIPPET.read_text()
    lines = iter(upstreams)
    snippet, servers = re.subn(r"(?m)^(    server )shardcast-\d+:8080\b",
                               lambda m: m.group(1) + next(lines), snippet)
    expect(servers == 3, f"{SNIPPET}: expected 3 'server shardcast-N:8080' lines, got {servers}")
    snippet, listens = re.subn(r"(?m)^(\s*listen )\d+;", rf"\g<1>127.0.0.1:{listen_port};",
                               snippet)
    expect(listens == 1, f"{SNIPPET}: expected one 'listen PORT;' line, got {listens}")
    (tmp / "shardcast.conf").write_text(snippet)

    # Temporary files under tmp, so nginx needs no root and leaves nothing behind.
    temp_paths = "".join(f"    {kind}_temp_path {tmp}/{kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main, includes = re.subn(r"(?m)^\s*include /etc/nginx/shardcast\.conf;\n",
                             temp_paths + f"    include {tmp}/shardcast.conf;\n",
                             MAIN_CONF.read_text())
    expect(includes == 1, f"{MAIN_CONF}: expected one 'include /etc/nginx/shardcast.conf;'")
    (tmp / "nginx.conf").write_text(main)


def nginx_command(tmp, *extra):
    # master_process off: one process as the current user, so no switch to a worker user.
    return ["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log"),
            "-g", f"pid {tmp}/nginx.pid; daemon off; master_process off;", *extra]


def wait_for_port(port, nginx):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        expect(nginx.poll() is None, f"nginx exited with {nginx.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Failure(f"nginx did not listen on 127.0.0.1:{port} within {DEADLINE_SECONDS}s")


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_SECONDS)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check_api(port):
    nodes = set()
    # Six requests: least_conn tries the dead address too, and nginx must skip it each time.
    for _ in range(6):
        status, body = request(port, "GET", "/api/v1/stats")
        expect(status == 200, f"GET /api/v1/stats through nginx: {status} {body!r}")
        answer = json.loads(body)
        expect(answer["x_forwarded_for"] == "127.0.0.1",
               f"X-Forwarded-For at the node: {answer['x_forwarded_for']!r}")
        expect(answer["connection"] == "",
               f"API request reached the node with Connection: {answer['connection']!r}"
               " (upstream keepalive needs none)")
        nodes.add(answer["node"])
    expect(nodes == {"node-a", "node-b"}, f"API requests reached only {sorted(nodes)}")

    status, body = request(port, "POST", "/api/v1/send", body=b'{"to":"alice","data":1}',
                           headers={"Content-Type": "application/json"})
    expect(status == 202, f"POST /api/v1/send through nginx: {status} {body!r}")


def check_body_limit(port):
    limit = 4 * 1024 * 1024
    status, body = request(port, "POST", "/api/v1/batch", body=b"x" * limit)
    expect(status == 202, f"a 4 MiB body got {status} {body!r}, not 202")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_SECONDS)
    try:
        # nginx decides from Content-Length, like the node does, before any body is sent.
        conn.putrequest("POST", "/api/v1/batch")
        conn.putheader("Content-Length", str(limit + 1))
        conn.endheaders()
        status = conn.getresponse().status
    except TimeoutError:
        raise Failure("a 4 MiB + 1 Content-Length was not refused: nginx waited for the body")
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


def check_websocket(port):
    key = base64.b64encode(b"shardcast-nginx-1").decode()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_SECONDS) as s:
        s.sendall((f"GET /ws/alice HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = read_until(s, lambda r: b"\r\n\r\n" in r)
        expect(head.startswith(b"HTTP/1.1 101"), f"WebSocket upgrade through nginx: {head!r}")
        frame = head.split(b"\r\n\r\n", 1)[1]
        frame += read_until(s, lambda r: len(frame + r) >= 7)
    expect(frame == b"\x81\x05hello", f"no frame after the upgrade: {frame!r}")


def check_not_exposed(port):
    for path in ("/metrics", "/healthz"):
        status, _ = request(port, "GET", path)
        expect(status == 404, f"GET {path} through nginx got {status}, not 404")


def main():
    with tempfile.TemporaryDirectory(prefix="shardcast-nginx-") as name:
        tmp = Path(name)
        stubs = [start_stub("node-a"), start_stub("node-b")]
        upstreams = [f"127.0.0.1:{free_port()}"] + [f"127.0.0.1:{s.server_port}" for s in stubs]
        port = free_port()
        write_config(tmp, port, upstreams)

        test = subprocess.run(nginx_command(tmp, "-t"), capture_output=True, text=True)
        expect(test.returncode == 0, f"nginx -t failed:\n{test.stderr}")

        with open(tmp / "stdout.log", "w") as log:
            nginx = subprocess.Popen(nginx_command(tmp), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, nginx)
            check_api(port)
            check_body_limit(port)
            check_websocket(port)
            check_not_exposed(port)
        finally:
            nginx.terminate()
            nginx.wait(timeout=DEADLINE_SECONDS)
            for stub in stubs:
                stub.shutdown()
    print("nginx snippet: valid, proxies the API and WebSocket upgrades, hides /metrics")


if __name__ == "__main__":
    try:
        main()
    except (Failure, OSError) as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
