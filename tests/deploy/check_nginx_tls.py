#!/usr/bin/python3
"""TLS at the edge, end to end (ctest NginxTerminatesTlsAndLimitsPerAddress).

    check_nginx_tls.py --shardcast <binary>

Runs a real shardcast node, secured with an HMAC secret and an API key made for the run, on a
free port of 127.0.0.1, and in front of it the shipped nginx setup (local_nginx.py) with a
throw-away self-signed certificate. Clients trust that certificate alone. Steps, in order:

  tls            TLS 1.2 and 1.3 handshakes succeed and offer HTTP/2; a client that offers
                 TLS 1.1 at most is refused by nginx in the handshake
  plain http     plain HTTP on the TLS port gets 400; the plain port answers 301 to https
  limit_conn     past the per-address cap, an upgrade gets 429; when one connection ends,
                 a new one gets in
  wss            a client over wss:// (python3-websockets) with a PyJWT connect token
                 receives a message published over https:// with the API key
  limit_req      upgrade attempts sent all at once, more than the shipped burst, get 429s
                 from the rate limit, and the node sees only the ones nginx let through

Everything listens on 127.0.0.1; every wait is bounded. Needs the Debian packages nginx,
openssl, python3-websockets and python3-jwt. Exits 0 when all of it holds.
"""
import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import jwt
import websockets

# The helpers below are imported from the source tree, which must not collect __pycache__.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from harness.processes import Process  # noqa: E402
from harness.runner import run_scenario  # noqa: E402
from harness.waiting import TestFailure, log, wait_until  # noqa: E402
from local_nginx import LocalNginx, client_context, expect  # noqa: E402

# Bounds for waits and socket reads: generous, so a sanitizer build on a loaded machine
# passes. Nothing here is timed.
WAIT = 20
IO_TIMEOUT = 10
# The shipped cap is 100 connections per address; the test lowers it in its copy of the
# snippet, so that reaching it takes a few connections rather than a hundred.
CONN_CAP = 3
# More than the shipped burst (40) of the upgrade rate limit, all sent within a moment.
BURST_ATTEMPTS = 60


def write_secret(path, text):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    return path


def upgrade_request(port, target):
    return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n").encode()


def read_status(sock):
    """The status code of the answer on `sock`, or 0 when it closed without one."""
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            return 0
        head += chunk
    fields = head.split(b"\r\n", 1)[0].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


class Scenario:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = Path(workdir)
        self.current = "start"
        self.node = None
        self.node_port = None
        self.edge = None
        self.secret = base64.b64encode(secrets.token_bytes(48)).decode()
        self.api_key = f"test-{secrets.token_urlsafe(24)}"

    # --- start and stop -------------------------------------------------------------------

    def run(self):
        self.start_node()
        # The cap lowered as CONN_CAP says; the error log at notice, the level the snippet
        # logs refusals at, so the log says which limit refused a request.
        self.edge = LocalNginx(
            self.workdir, [f"127.0.0.1:{self.node_port}"],
            edits=[(r"limit_conn shardcast_ws_conn 100;",
                    f"limit_conn shardcast_ws_conn {CONN_CAP};", "'limit_conn ... 100;' line")],
            error_level="notice")
        self.edge.start()
        log(f"shardcast on 127.0.0.1:{self.node_port}; nginx with TLS on "
            f"127.0.0.1:{self.edge.tls_port}, plain HTTP on 127.0.0.1:{self.edge.plain_port}")
        for step in (self.check_tls, self.check_plain_http, self.check_limit_conn,
                     self.check_wss, self.check_limit_req):
            self.current = step.__name__.removeprefix("check_")
            step()
        self.current = None

    def start_node(self):
        hmac_file = write_secret(self.workdir / "hmac_secret", self.secret)
        keys_file = write_secret(self.workdir / "api_keys", self.api_key + "\n")
        self.node = Process("shardcast", [
            self.args.shardcast, "-s", "listen=127.0.0.1:0", "-s", "log.summary_interval=0",
            "-s", f"auth.jwt.hmac_secret_file={hmac_file}",
            "-s", f"auth.api_keys_file={keys_file}"], str(self.workdir / "shardcast.log"))
        listening = re.compile(r"listening on 127\.0\.0\.1:(\d+) with \d+ shards")

        def port():
            match = listening.search(self.node.log())
            if match:
                return int(match.group(1))
            if not self.node.running():
                raise TestFailure(f"shardcast exited before listening:\n{self.node.log_tail()}")
            return None
        self.node_port = wait_until(port, WAIT, "shardcast to log its port")

    def stop(self, passed):
        problems = []
        if self.edge:
            self.edge.stop()
            if not passed:
                print(f"--- nginx error log (tail) ---\n{self.edge.error_log()[-3000:]}")
        if self.node:
            code = self.node.stop()
            if code != 0:
                problems.append(f"shardcast exited {code} on SIGTERM:\n{self.node.log_tail()}")
            elif not passed:
                print(f"--- shardcast log (tail) ---\n{self.node.log_tail()}")
        return problems

    # --- clients --------------------------------------------------------------------------

    def token(self, sub):
        return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, self.secret,
                          algorithm="HS256")

    async def connect(self, sub):
        """(session, 101) for a wss:// session as `sub` through nginx, or (None, the status
        that refused it)."""
        uri = f"wss://127.0.0.1:{self.edge.tls_port}/ws?token={self.token(sub)}"
        try:
            session = await websockets.connect(uri, ssl=self.edge.context,
                                               open_timeout=IO_TIMEOUT)
            return session, 101
        except websockets.exceptions.InvalidStatusCode as refusal:
            return None, refusal.status_code

    async def connect_once_free(self, sub):
        """A session as `sub`, retrying while nginx answers 429: it frees a connection's slot
        when it sees the node close the connection, a moment after the client's close."""
        deadline = time.monotonic() + WAIT
        while True:
            session, status = await self.connect(sub)
            if session:
                return session
            expect(status == 429, f"upgrade for {sub} through nginx got {status}")
            expect(time.monotonic() < deadline,
                   f"upgrade for {sub} still refused with 429 after {WAIT}s")
            await asyncio.sleep(0.1)

    def api(self, method, path, body=None):
        """(status, decoded JSON answer) of an API call over https with the key."""
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.edge.tls_port}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.api_key}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.edge.context,
                                        timeout=IO_TIMEOUT) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def node_connections(self):
        """shardcast_connections_total, read from the node itself (nginx hides /metrics), with
        the key in case the node asks for one there."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.node_port}/metrics",
                                         headers={"Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as answer:
            text = answer.read().decode()
        match = re.search(r"(?m)^shardcast_connections_total(?:\{[^}]*\})? (\S+)$", text)
        expect(match, "the node's /metrics has no shardcast_connections_total")
        return int(float(match.group(1)))

    # --- steps ----------------------------------------------------------------------------

    def check_tls(self):
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            context = client_context(self.edge.certificate)
            context.minimum_version = context.maximum_version = version
            context.set_alpn_protocols(["h2", "http/1.1"])
            raw = socket.create_connection(("127.0.0.1", self.edge.tls_port), IO_TIMEOUT)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                expect(s.version() == version.name.replace("_", "."),
                       f"asked for {version.name}, got {s.version()}")
                expect(s.selected_alpn_protocol() == "h2",
                       f"{version.name}: ALPN chose {s.selected_alpn_protocol()!r}, not h2")

        # A client of old, which offers TLS 1.0 and 1.1 only, with the ciphers they used: the
        # handshake must fail on an alert from nginx, not for want of anything to offer.
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(cafile=str(self.edge.certificate))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        raw = socket.create_connection(("127.0.0.1", self.edge.tls_port), IO_TIMEOUT)
        try:
            with old.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                raise TestFailure(f"a TLS 1.1 client was admitted with {s.version()}")
        except ssl.SSLError as refusal:
            expect("ALERT" in (refusal.reason or ""),
                   f"the TLS 1.1 handshake failed, but not on nginx's alert: {refusal}")
            reason = refusal.reason
        finally:
            raw.close()
        log(f"TLS 1.2 and 1.3 admitted, HTTP/2 offered; TLS 1.1 refused ({reason})")

    def check_plain_http(self):
        conn = socket.create_connection(("127.0.0.1", self.edge.tls_port), IO_TIMEOUT)
        with conn:
            conn.sendall(b"GET /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status = read_status(conn)
        expect(status == 400, f"plain HTTP on the TLS port got {status}, not 400")

        conn = socket.create_connection(("127.0.0.1", self.edge.plain_port), IO_TIMEOUT)
        with conn:
            conn.sendall(f"GET /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1:{self.edge.plain_port}"
                         "\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
        head = answer.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
        expect(head.startswith("HTTP/1.1 301"), f"the plain port answered {head!r}")
        location = re.search(r"(?mi)^Location: (\S+)", head)
        expect(location and location.group(1) == "https://127.0.0.1/api/v1/stats",
               f"the plain port redirects to {location and location.group(1)!r}, not to "
               "https://127.0.0.1/api/v1/stats")
        log("plain HTTP: 400 on the TLS port, 301 to https on the plain one")

    def check_limit_conn(self):
        asyncio.run(self._limit_conn())
        log(f"limit_conn: {CONN_CAP} sessions held, the next upgrade got 429; one closed, and "
            "a new one got in")

    async def _limit_conn(self):
        held = []
        try:
            for i in range(CONN_CAP):
                session, status = await self.connect(f"held-{i}")
                expect(status == 101, f"upgrade {i + 1} of {CONN_CAP} got {status}, not 101")
                held.append(session)
            session, status = await self.connect("over-cap")
            expect(status == 429, f"upgrade {CONN_CAP + 1}, past the cap, got {status}")
            expect('limiting connections by zone "shardcast_ws_conn"' in self.edge.error_log(),
                   "nginx's error log does not say limit_conn refused the upgrade")
            await held.pop().close()
            held.append(await self.connect_once_free("after-close"))
        finally:
            for session in held:
                await session.close()

    def check_wss(self):
        asyncio.run(self._wss())
        log("wss: alice, connected over TLS, received what https published")

    async def _wss(self):
        session = await self.connect_once_free("alice")
        try:
            tls = session.transport.get_extra_info("ssl_object")
            expect(tls and tls.version() in ("TLSv1.2", "TLSv1.3"),
                   f"the session is not over TLS 1.2 or 1.3: {tls and tls.version()}")

            def online():
                status, answer = self.api("GET", "/api/v1/clients/alice")
                expect(status == 200, f"GET /api/v1/clients/alice over https: {status} "
                                      f"{answer!r}")
                return answer.get("online")
            await asyncio.to_thread(wait_until, online, WAIT, "alice to be online")
            status, answer = await asyncio.to_thread(
                self.api, "POST", "/api/v1/send", {"to": "alice", "data": "over wss"})
            expect(status == 202 and answer == {"accepted": 1},
                   f"POST /api/v1/send over https: {status} {answer!r}")
            received = await asyncio.wait_for(session.recv(), IO_TIMEOUT)
            expect(received == "over wss", f"alice received {received!r}, not 'over wss'")
        finally:
            await session.close()

    def check_limit_req(self):
        before = self.node_connections()
        # The handshakes first, then every upgrade request at once: they reach nginx within a
        # moment, far less than the 50ms in which 20r/s would admit one more.
        port = self.edge.tls_port
        socks = []
        try:
            for _ in range(BURST_ATTEMPTS):
                raw = socket.create_connection(("127.0.0.1", port), IO_TIMEOUT)
                socks.append(self.edge.context.wrap_socket(raw, server_hostname="127.0.0.1"))
            for i, s in enumerate(socks):
                s.sendall(upgrade_request(port, f"/ws?token={self.token(f'burst-{i}')}"))
            statuses = [read_status(s) for s in socks]
        finally:
            for s in socks:
                s.close()
        admitted = statuses.count(101)
        refused = statuses.count(429)
        expect(admitted + refused == BURST_ATTEMPTS,
               f"answers other than 101 and 429 to the burst: {sorted(statuses)}")
        rate_refusals = len(re.findall(r'limiting requests, excess: \S+ by zone '
                                       r'"shardcast_ws_upgrade"', self.edge.error_log()))
        expect(rate_refusals > 0,
               f"{refused} of {BURST_ATTEMPTS} upgrades got 429, but nginx's error log has no "
               "refusal by the rate limit (zone shardcast_ws_upgrade)")
        # The node counts a session once it is attached, a moment after the 101.
        wait_until(lambda: self.node_connections() - before == admitted, WAIT,
                   lambda: f"the node to count the {admitted} admitted sessions (it counts "
                           f"{self.node_connections() - before})")
        log(f"limit_req: {BURST_ATTEMPTS} upgrades at once, {rate_refusals} refused by the "
            f"rate limit and {refused - rate_refusals} by the connection cap; the node saw "
            f"{admitted}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shardcast", required=True, help="the shardcast binary")
    parser.add_argument("--timeout", type=int, default=50, help="seconds before giving up")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    args.shardcast = os.path.abspath(args.shardcast)
    return run_scenario(lambda workdir: Scenario(args, workdir), timeout=args.timeout,
                        keep=args.keep, workdir_prefix="shardcast-nginx-tls-",
                        summary=lambda _: "nginx terminates TLS for a real node, refuses old "
                                          "TLS and plain HTTP, and limits per address")


if __name__ == "__main__":
    sys.exit(main())
