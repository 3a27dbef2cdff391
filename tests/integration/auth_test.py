#!/usr/bin/python3
"""Client authentication end to end: real shardcast servers, keys made for this run with the
openssl CLI, and tokens minted with PyJWT (never with shardcast's own code, so the two are
shown to interoperate), or forged by hand where PyJWT refuses to. Scenarios, in order, each
on servers of its own:

  config errors      a bad public key file or a short HMAC secret stops startup and
                     --check-config with exit code 2 and a message naming the key, never
                     the secret
  closed by default  with no auth settings, and with the shipped deploy/shardcast.yaml,
                     every upgrade gets 401 and the publish API 403; /healthz and /metrics
                     stay open
  api keys           a publish without the key gets 401 from its header alone, with a 4 MiB
                     body announced and never sent, and the connection closes; keys from
                     auth.api_keys and auth.api_keys_file both publish
  opened explicitly  auth.insecure_api publishes without a key, auth.anonymous_clients
                     connects /ws/{id} without a token, auth.allowed_origins=* admits any
                     origin
  refusals           every bad token, origin, id and upgrade is answered before the upgrade
                     with its status and counted under exactly its reason; good tokens, and
                     times within the leeway, are admitted
  algorithms         HS256, HS384, RS256 (either of two keys), ES256 and ES384 connect; the
                     token is read from ?token=, Authorization: Bearer or a shardcast.token.
                     subprotocol, and /ws takes the id from sub
  v1 frames          shardcast.v1 clients get {"data":...} frames, others the bare data
  sessions safe      25 refused or incomplete upgrades for alice leave her session alone; a
                     second valid one replaces it (4001)
  refresh            a refreshed session outlives its first token and loses no message of a
                     publisher sending across the refresh, while one that did not refresh is
                     closed with 4004; bad refreshes, and a second within a second, get 4005
  token command      `shardcast token` mints HS256 tokens that PyJWT verifies and the server
                     admits
  counts             shardcast_handshake_failures_total of the refusals server is exactly
                     what the refusals scenario provoked, reason by reason
  logs               every server exits 0 on SIGTERM; no token, API key or secret is in any
                     log, and a refused request shows its token as ***

Usage: auth_test.py --shardcast <binary> --source <repository root>
Exits 0 when all of it holds; gives up after --timeout seconds.
"""
import argparse
import asyncio
import base64
import collections
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time

import jwt
import websockets

# The helpers below are imported from the source tree, which must not collect __pycache__.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                "support"))
from harness.processes import Process  # noqa: E402
from harness.runner import run_scenario  # noqa: E402
from harness.waiting import TestFailure, log, wait_until  # noqa: E402

# Bounds for waits and socket reads: generous, so a sanitizer build on a loaded machine
# passes. Nothing here is timed.
WAIT = 20
IO_TIMEOUT = 10
# What the refusals server is configured to expect of a token and an origin.
AUDIENCE = "shardcast-auth-test"
ISSUER = "https://issuer.auth-test.example"
APP_ORIGIN = "https://app.example.com"
EVIL_ORIGIN = "https://evil.example.com"
# A publish announcing the largest body http.max_body allows, and never sending it.
UNSENT_BODY = 4 * 1024 * 1024
# Every reason shardcast_handshake_failures_total counts: the HTTP refusals, then the shard's
# (too many sessions for an id) and upgrades that failed after the 101 was decided.
REFUSAL_REASONS = [
    "missing_token", "malformed_token", "algorithm_refused", "bad_signature", "token_expired",
    "token_not_yet_valid", "wrong_audience", "wrong_issuer", "sub_mismatch", "origin_refused",
    "invalid_client_id", "not_upgrade", "shutting_down", "too_many_connections",
    "too_many_from_address", "bad_resume", "too_many_sessions", "handshake_error"]
# The publish API's calls, all of which need a key (or auth.insecure_api).
API_CALLS = [
    ("POST", "/api/v1/send", {"to": "alice", "data": "x"}),
    ("POST", "/api/v1/broadcast", {"data": "x"}),
    ("POST", "/api/v1/batch", '{"to":"alice","data":"x"}\n'),
    ("POST", "/api/v1/disconnect", {"to": "alice"}),
    ("GET", "/api/v1/clients/alice", None),
    ("GET", "/api/v1/stats", None),
]
OMIT = object()  # a claim left out of a token


# --- keys and tokens ------------------------------------------------------------------------

def write_file(path, text):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    return path


def openssl(*args):
    result = subprocess.run(["openssl", *args], capture_output=True, timeout=120)
    if result.returncode != 0:
        raise TestFailure(f"openssl {' '.join(args)} exited {result.returncode}:\n"
                          f"{result.stderr.decode(errors='replace')}")


class KeyPair:
    """A private key's PEM text, which PyJWT signs with, and its public key's PEM file, which
    the server is given."""

    def __init__(self, directory, name, genpkey_options):
        self.private_path = os.path.join(directory, f"{name}.key.pem")
        self.public_path = os.path.join(directory, f"{name}.pub.pem")
        openssl("genpkey", *genpkey_options, "-out", self.private_path)
        openssl("pkey", "-in", self.private_path, "-pubout", "-out", self.public_path)
        with open(self.private_path) as f:
            self.private_pem = f.read()
        with open(self.public_path) as f:
            self.public_pem = f.read()


def rsa(bits):
    return ["-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}"]


def ec(curve):
    return ["-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}"]


class Keys:
    """Everything secret this run uses, made fresh in the work directory."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "keys")
        os.makedirs(self.dir)
        self.rsa = KeyPair(self.dir, "rsa-a", rsa(2048))
        self.rsa_b = KeyPair(self.dir, "rsa-b", rsa(2048))
        self.rsa_1024 = KeyPair(self.dir, "rsa-1024", rsa(1024))
        self.ec256 = KeyPair(self.dir, "ec-p256", ec("P-256"))
        self.ec256_b = KeyPair(self.dir, "ec-p256-b", ec("P-256"))
        self.ec384 = KeyPair(self.dir, "ec-p384", ec("P-384"))
        # 48 random bytes as 64 characters; the file ends with the newline an editor leaves,
        # which the server must strip.
        self.hmac_secret = secrets.token_urlsafe(48)
        self.hmac_secret_file = write_file(self.path("hmac-secret"), self.hmac_secret + "\n")
        self.other_secret = secrets.token_urlsafe(48)  # configured nowhere
        self.api_key = secrets.token_urlsafe(24)
        self.not_a_key = write_file(self.path("not-a-key.pem"), "this is not a key\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def secrets(self):
        return [self.hmac_secret, self.other_secret, self.api_key]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact_json(value):
    return json.dumps(value, separators=(",", ":")).encode()


def claims(sub="alice", ttl=3600, **extra):
    """Claims for `sub`, issued now and expiring `ttl` seconds from now; `extra` adds claims
    or replaces these, and a claim given as OMIT is left out."""
    now = int(time.time())
    result = {"sub": sub, "iat": now, "exp": now + ttl, **extra}
    return {name: value for name, value in result.items() if value is not OMIT}


def strict_claims(sub="alice", **extra):
    """Claims the refusals server admits: ours as audience and issuer."""
    return claims(sub, **{"aud": AUDIENCE, "iss": ISSUER, **extra})


class Tokens:
    """Mints tokens with PyJWT, forges the ones PyJWT will not make, and remembers every one,
    so that the logs can be searched for them."""

    def __init__(self, keys):
        self.keys = keys
        self.issued = []

    def remember(self, token):
        self.issued.append(token)
        return token

    def sign(self, alg, payload, key=None):
        """PyJWT's token; `key` defaults to the run's key for the algorithm's type."""
        if key is None:
            key = (self.keys.hmac_secret if alg.startswith("HS")
                   else self.keys.rsa.private_pem if alg.startswith("RS")
                   else {"ES256": self.keys.ec256.private_pem,
                         "ES384": self.keys.ec384.private_pem}[alg])
        return self.remember(jwt.encode(payload, key, algorithm=alg))

    def forge(self, header, payload, sign=None):
        """A token assembled by hand; sign(signing input) gives the signature bytes."""
        signing_input = f"{b64url(compact_json(header))}.{b64url(compact_json(payload))}"
        signature = sign(signing_input.encode()) if sign else b""
        return self.remember(f"{signing_input}.{b64url(signature)}")

    def alg_none(self, payload):
        return self.forge({"alg": "none", "typ": "JWT"}, payload)

    def alg_confusion(self, payload):
        """HS256 with the RSA public key's PEM text as the HMAC secret: what a verifier that
        takes the algorithm from the token and feeds it the RSA key would accept."""
        pem = self.keys.rsa.public_pem.encode()
        return self.forge({"alg": "HS256", "typ": "JWT"}, payload,
                          lambda data: hmac.new(pem, data, hashlib.sha256).digest())

    def tampered(self, token, payload):
        """The token with its claims replaced after signing, the signature kept."""
        header, _, signature = token.split(".")
        return self.remember(f"{header}.{b64url(compact_json(payload))}.{signature}")


def log_pieces(token):
    """What must not appear in a log for `token`: the whole of it, and each part long enough
    to be recognisable (a log line cuts a long target, so a whole token might not show)."""
    return [token] + [part for part in token.split(".") if len(part) >= 16]


# --- raw HTTP -------------------------------------------------------------------------------

class Reply:
    """One HTTP response: status, headers (lower-case names) and body."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def error(self):
        """The "error" of a JSON error body, or None when the body is not one."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value.get("error") if isinstance(value, dict) else None

    def __str__(self):
        return f"{self.status} {self.body[:200]!r}"


def read_reply(sock, what):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise TestFailure(f"{what}: the server closed the connection before a whole "
                              f"response head; got {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(lines[0].split()[1])
    length = 0 if status == 101 else int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise TestFailure(f"{what}: the body ended after {len(body)} of {length} bytes")
        body += chunk
    return Reply(status, headers, body[:length])


def request(port, method, target, headers=(), body=b""):
    """One request written by hand on a connection of its own, so any header may be left out
    or repeated; headers are (name, value) pairs. Returns the Reply; the connection is then
    closed (a 101 included)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    what = f"{method} {shown(target)}"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            return read_reply(sock, what)
    except socket.timeout:
        raise TestFailure(f"{what}: no answer within {IO_TIMEOUT}s") from None
    except OSError as e:
        raise TestFailure(f"{what}: {e}") from None


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def upgrade(port, target, headers=(), key=True, version="13"):
    """A WebSocket upgrade of `target` written by hand, with the extra headers; returns the
    server's Reply. `key` False leaves out Sec-WebSocket-Key."""
    base = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", version)]
    if key:
        base.append(("Sec-WebSocket-Key", ws_key()))
    return request(port, "GET", target, base + list(headers))


def shown(target):
    """A target for a failure message, its tokens shortened."""
    return re.sub(r"(token=[^&.]{0,12})[^&]*", r"\1...", target)


def bearer(token):
    return [("Authorization", f"Bearer {token}")]


def protocols(*entries):
    return [("Sec-WebSocket-Protocol", ", ".join(entries))]


# --- servers and clients --------------------------------------------------------------------

def run_shardcast(binary, *args):
    """A shardcast command that should end by itself, such as --check-config or token:
    (exit code, stdout, stderr). A server that wrongly starts is killed after the bound."""
    try:
        result = subprocess.run([binary, *args], capture_output=True, timeout=WAIT,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"shardcast {' '.join(args)} was still running after {WAIT}s") \
            from None
    return (result.returncode, result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"))


def settings_argv(settings):
    return [arg for setting in settings for arg in ("-s", setting)]


class Server:
    """One shardcast process started with the given settings, on a port of 127.0.0.1 it
    reports; `expected` counts the refusals the test provoked on it."""

    def __init__(self, binary, workdir, name, settings, api_key=None, config=None):
        self.name = name
        self.api_key = api_key
        self.expected = collections.Counter()
        argv = [binary, "--shards", "2"]
        if config:
            argv += ["--config", config]  # settings give its listen address
        else:
            argv += ["--listen", "127.0.0.1:0", "-s", "log.summary_interval=0"]
        argv += settings_argv(settings)
        self.process = Process(name, argv, os.path.join(workdir, f"{name}.log"))
        self.exit_code = None
        listening = re.compile(r"listening on 127\.0\.0\.1:(\d+) with \d+ shards")

        def port():
            match = listening.search(self.process.log())
            if match:
                return int(match.group(1))
            if not self.process.running():
                raise TestFailure(f"{name} exited before listening:\n"
                                  f"{self.process.log_tail()}")
            return None
        try:
            self.port = wait_until(port, WAIT, f"{name} to log its port")
        except BaseException:
            self.process.stop()
            raise

    def call(self, method, path, body=None, key=None, headers=None):
        """(status, body) of an API call on a connection of its own. `key` is the API key to
        present: None presents the server's own (if any), False none."""
        headers = dict(headers or {})
        key = self.api_key if key is None else key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if body is not None and not isinstance(body, str):
            body = json.dumps(body)
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError as e:
            raise TestFailure(f"{self.name}: {method} {path} failed: {e}") from None
        finally:
            conn.close()

    def publish(self, to, data):
        status, body = self.call("POST", "/api/v1/send", {"to": to, "data": data})
        if status != 202 or json.loads(body) != {"accepted": 1}:
            raise TestFailure(f"{self.name}: send to {to} answered {status} {body!r}, "
                              'expected 202 {"accepted":1}')

    def broadcast(self, data):
        status, body = self.call("POST", "/api/v1/broadcast", {"data": data})
        if status != 202 or json.loads(body) != {"accepted": 1}:
            raise TestFailure(f"{self.name}: broadcast answered {status} {body!r}, expected "
                              '202 {"accepted":1}')

    def online(self, client_id):
        status, body = self.call("GET", f"/api/v1/clients/{client_id}")
        if status != 200:
            raise TestFailure(f"{self.name}: GET /api/v1/clients/{client_id} answered {status}")
        return json.loads(body)["online"]

    def samples(self, name):
        """{labels text: value} of every sample of metric `name` on GET /metrics (with the
        server's key, if it has one: metrics.require_key)."""
        status, body = self.call("GET", "/metrics")
        if status != 200:
            raise TestFailure(f"{self.name}: GET /metrics answered {status}")
        found = {}
        for line in body.decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                series, value = line.rsplit(" ", 1)
                found[series[len(name):]] = float(value)
        return found

    def metric(self, name, **labels):
        """The sum of the samples of `name` that carry all of `labels`."""
        wanted = {f'{k}="{v}"' for k, v in labels.items()}
        return sum(value for series, value in self.samples(name).items()
                   if wanted <= set(series.strip("{}").split(",")))

    def refusals(self):
        """shardcast_handshake_failures_total by reason."""
        counts = collections.Counter()
        for series, value in self.samples("shardcast_handshake_failures_total").items():
            match = re.search(r'reason="([^"]*)"', series)
            if match:
                counts[match.group(1)] += int(value)
        return counts

    def stop(self):
        """SIGTERM; the exit code. Safe to call twice."""
        if self.exit_code is None:
            self.exit_code = self.process.stop()
        return self.exit_code


class ClientLoop:
    """Runs the WebSocket library clients on their own thread, so they keep answering the
    server's pings while the main thread blocks on HTTP."""

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine, timeout=WAIT):
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, timeout),
                                                  self._loop)
        try:
            return future.result(timeout + 5)
        except (asyncio.TimeoutError, TimeoutError):
            raise TestFailure(f"a client operation took over {timeout}s") from None

    def stop(self):
        """Cancels every client task (their sockets are dropped), then ends the thread."""
        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=10)
        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(15)
        except Exception:  # the thread goes away below in any case
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class Client:
    """A python3-websockets client: answers pings, records every message it receives and the
    code the server closed it with. Its lists are appended on the loop thread and read whole
    from the main thread."""

    def __init__(self, loop, port, target, subprotocols=None, headers=None):
        self.name = shown(target)
        self.messages = []
        self.close_code = None
        self.subprotocol = None
        self._loop = loop
        self._url = f"ws://127.0.0.1:{port}{target}"
        self._subprotocols = subprotocols
        self._headers = headers or {}
        self._ws = None
        self._reader = None

    def connect(self):
        try:
            self._loop.run(self._connect())
        except websockets.exceptions.InvalidStatusCode as e:
            raise TestFailure(f"the upgrade of {self.name} was refused with {e.status_code}") \
                from None
        except (OSError, websockets.exceptions.WebSocketException) as e:
            raise TestFailure(f"the upgrade of {self.name} failed: {e!r}") from None
        return self

    async def _connect(self):
        self._ws = await websockets.connect(
            self._url, subprotocols=self._subprotocols, extra_headers=self._headers,
            compression=None, ping_interval=None, max_size=None, open_timeout=IO_TIMEOUT,
            close_timeout=5)
        self.subprotocol = self._ws.subprotocol
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for message in self._ws:
                self.messages.append(message)
        except websockets.ConnectionClosed:
            pass
        self.close_code = self._ws.close_code

    def closed(self):
        return self._reader is not None and self._reader.done()

    def send(self, text):
        self._loop.run(self._ws.send(text))

    def close(self):
        """Clean close from our side; the close code the server answered with."""
        async def close():
            await self._ws.close()
            await self._reader
        self._loop.run(close())
        return self.close_code

    def wait_messages(self, count):
        wait_until(lambda: len(self.messages) >= count or self.closed(), WAIT,
                   lambda: f"{self.name} to receive {count} messages (has "
                           f"{len(self.messages)}: {self.messages[-3:]})")
        if len(self.messages) < count:
            raise TestFailure(f"{self.name} was closed with {self.close_code} after "
                              f"{len(self.messages)} of {count} messages: {self.messages}")

    def wait_closed(self, code, why):
        wait_until(self.closed, WAIT, f"the server to close {self.name} ({why})")
        if self.close_code != code:
            raise TestFailure(f"{self.name} was closed with {self.close_code}, expected {code} "
                              f"({why})")


def v1_parts(message):
    """A shardcast.v1 text frame, parsed: a dict with one key ("data" or "refreshed"), the
    offset and epoch a data frame also carries checked and left out."""
    if not isinstance(message, str):
        raise TestFailure(f"a shardcast.v1 frame arrived as binary: {message!r}")
    value = json.loads(message)
    if isinstance(value, dict) and "data" in value:
        if set(value) != {"data", "offset", "epoch"} or not isinstance(value["offset"], int) \
                or not isinstance(value["epoch"], str) or not value["epoch"]:
            raise TestFailure(f"a shardcast.v1 data frame is not {{data, offset, epoch}}: "
                              f"{message!r}")
        return {"data": value["data"]}
    if not isinstance(value, dict) or len(value) != 1:
        raise TestFailure(f"a shardcast.v1 frame is not an object of one key: {message!r}")
    return value


class Publisher(threading.Thread):
    """Sends 0, 1, 2, ... to one client over one keep-alive connection until stopped, and keeps
    the numbers each 202 accepted, in order."""

    def __init__(self, server, to, interval=0.005, limit=20000):
        super().__init__(daemon=True)
        self.server = server
        self.to = to
        self.interval = interval
        self.limit = limit
        self.accepted = []
        self.error = None
        self.halt = threading.Event()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=IO_TIMEOUT)
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {self.server.api_key}"}
        try:
            for n in range(self.limit):
                if self.halt.is_set():
                    break
                conn.request("POST", "/api/v1/send", json.dumps({"to": self.to, "data": n}),
                             headers)
                response = conn.getresponse()
                body = response.read()
                if response.status == 202:
                    self.accepted.append(n)
                elif response.status != 429:  # 429 is backpressure: that one was not taken
                    self.error = f"send {n} answered {response.status} {body!r}"
                    return
                self.halt.wait(self.interval)
        except Exception as e:  # reported by finish()
            self.error = repr(e)
        finally:
            conn.close()

    def finish(self):
        self.halt.set()
        self.join(WAIT)
        if self.is_alive():
            raise TestFailure(f"the publisher to {self.to} did not stop")
        if self.error:
            raise TestFailure(f"the publisher to {self.to} failed: {self.error}")


# --- the scenarios --------------------------------------------------------------------------

class Scenario:
    """The whole test: each step starts the servers it needs; stop() ends them all. Runs on
    the main thread; `current` names the step running, which a failure names."""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.keys = None
        self.tokens = None
        self.loop = ClientLoop()
        self.servers = []
        self.main = None  # the server of most client scenarios: every algorithm, leeway 0
        self.strict = None  # the refusals server: audience, issuer, an allowed origin
        self.current = "setup"
        self.steps = 0

    def run(self):
        self.current = "keys"
        self.keys = Keys(self.workdir)
        self.tokens = Tokens(self.keys)
        log("keys made with openssl: RSA 2048 (x2), RSA 1024, EC P-256 (x2), EC P-384")
        for name, step in [("config errors", self.config_errors),
                           ("closed by default", self.closed_by_default),
                           ("api keys", self.api_keys),
                           ("opened explicitly", self.opened_explicitly),
                           ("refusals", self.refusals),
                           ("algorithms", self.algorithms),
                           ("v1 frames", self.v1_frames),
                           ("sessions safe", self.sessions_safe),
                           ("refresh", self.refresh),
                           ("token command", self.token_command),
                           ("counts", self.counts),
                           ("logs", self.logs)]:
            self.current = name
            step()
            self.steps += 1
        self.current = None

    def stop(self, passed):
        """Stops everything the test started. When the test passed so far, every server must
        also have stopped cleanly (exit 0 on SIGTERM)."""
        problems = []
        self.loop.stop()
        for server in self.servers:
            code = server.stop()
            if code != 0:
                problems.append(f"{server.name} exited {code} on SIGTERM:\n"
                                f"{server.process.log_tail()}")
        if not passed:
            for server in self.servers:
                print(f"--- {server.name} log (tail) ---\n{server.process.log_tail()}")
        return problems

    # --- helpers ----------------------------------------------------------------------------

    def start(self, name, settings, api_key=None, config=None):
        server = Server(self.args.shardcast, self.workdir, name, settings, api_key, config)
        self.servers.append(server)
        log(f"{name} on 127.0.0.1:{server.port}")
        return server

    def finish(self, server):
        code = server.stop()
        if code != 0:
            raise TestFailure(f"{server.name} exited {code} on SIGTERM:\n"
                              f"{server.process.log_tail()}")

    def connect(self, server, target, subprotocols=None, headers=None):
        return Client(self.loop, server.port, target, subprotocols, headers).connect()

    def refused(self, server, what, status, reason, send):
        """send() makes one request the server must refuse with `status`, a JSON error and
        (for 401) WWW-Authenticate: Bearer, counted once under `reason` and nothing else."""
        before = server.refusals()
        reply = send()
        after = server.refusals()
        if reply.status != status:
            raise TestFailure(f"{what}: answered {reply}, expected {status} ({reason})")
        if reply.error() is None:
            raise TestFailure(f"{what}: the {status} has no JSON error body: {reply.body!r}")
        if status == 401 and reply.headers.get("www-authenticate") != "Bearer":
            raise TestFailure(f"{what}: the 401 has WWW-Authenticate "
                              f"{reply.headers.get('www-authenticate')!r}, expected 'Bearer'")
        counted = {r: after[r] - before[r] for r in set(after) | set(before)
                   if after[r] != before[r]}
        if counted != {reason: 1}:
            raise TestFailure(f"{what}: counted as {counted}, expected {{'{reason}': 1}}")
        server.expected[reason] += 1
        return reply

    def refused_upgrade(self, server, what, status, reason, target, headers=(), **options):
        return self.refused(server, what, status, reason,
                            lambda: upgrade(server.port, target, headers, **options))

    def admitted(self, server, what, target, headers=()):
        """A hand-written upgrade the server must answer with 101, counting no refusal."""
        before = server.refusals()
        reply = upgrade(server.port, target, headers)
        if reply.status != 101:
            raise TestFailure(f"{what}: answered {reply}, expected 101")
        if server.refusals() != before:
            raise TestFailure(f"{what}: admitted, but a refusal was counted")
        return reply

    def received(self, client, expected):
        """client receives exactly `expected`, in order."""
        client.wait_messages(len(expected))
        if client.messages != expected:
            raise TestFailure(f"{client.name} received {client.messages}, expected {expected}")

    # --- config errors ----------------------------------------------------------------------

    def config_errors(self):
        k = self.keys
        short = secrets.token_hex(10)  # 20 characters
        short_file = write_file(k.path("short-secret"), secrets.token_hex(10) + "\n")
        missing = k.path("no-such-key.pem")
        good = [f"auth.jwt.hmac_secret_file={k.hmac_secret_file}",
                "auth.jwt.public_keys=" + ",".join(
                    [k.rsa.public_path, k.ec256.public_path, k.ec384.public_path])]
        code, out, err = run_shardcast(self.args.shardcast, "--check-config",
                                       *settings_argv(good))
        if code != 0:
            raise TestFailure(f"--check-config of a good auth config exited {code}:\n{err}")
        cases = [
            ("a file that is not PEM",
             f"auth.jwt.public_keys={k.rsa.public_path},{k.not_a_key}",
             f"auth.jwt.public_keys[1] ({k.not_a_key}): not a PEM public key "
             "(-----BEGIN PUBLIC KEY-----)"),
            ("a private key for a public one", f"auth.jwt.public_keys={k.ec256.private_path}",
             f"auth.jwt.public_keys[0] ({k.ec256.private_path}): not a PEM public key "
             "(-----BEGIN PUBLIC KEY-----)"),
            ("an RSA key of 1024 bits", f"auth.jwt.public_keys={k.rsa_1024.public_path}",
             f"auth.jwt.public_keys[0] ({k.rsa_1024.public_path}): an RSA key of 1024 bits"),
            ("a key file that does not exist", f"auth.jwt.public_keys={missing}",
             f"auth.jwt.public_keys[0]: cannot read \"{missing}\""),
            ("an HMAC secret of 20 bytes", f"auth.jwt.hmac_secret={short}",
             "auth.jwt.hmac_secret: expected a secret of at least 32 bytes, got one of 20 "
             "(not shown)"),
            # 20 characters and a newline: the newline is not part of the secret.
            ("an HMAC secret file of 20 bytes", f"auth.jwt.hmac_secret_file={short_file}",
             "auth.jwt.hmac_secret_file: expected a secret of at least 32 bytes, got one of "
             "20 (not shown)"),
        ]
        with open(short_file) as f:
            short_in_file = f.read().strip()
        for what, setting, message in cases:
            for mode in (["--check-config"], ["--listen", "127.0.0.1:0"]):
                code, out, err = run_shardcast(self.args.shardcast, *mode, "-s", setting)
                run = f"{what} ({mode[0]})"
                if code != 2:
                    raise TestFailure(f"{run}: exited {code}, expected 2:\n{err}")
                if message not in err:
                    raise TestFailure(f"{run}: stderr lacks {message!r}:\n{err}")
                for secret in [short, short_in_file] + k.secrets():
                    if secret in out + err:
                        raise TestFailure(f"{run}: the output shows a secret:\n{err}")
        log(f"{len(cases)} bad key files and secrets stop startup and --check-config with exit "
            "code 2, naming the key and never the secret")

    # --- closed by default ------------------------------------------------------------------

    def closed_by_default(self):
        server = self.start("defaults", [])
        self.refused_upgrade(server, "an upgrade without a token", 401, "missing_token",
                             "/ws/alice")
        self.refused_upgrade(server, "an upgrade of /ws without a token", 401, "missing_token",
                             "/ws")
        token = self.tokens.sign("HS256", claims())
        # No key of any type is set, so no algorithm is.
        self.refused_upgrade(server, "an upgrade with a token", 401, "algorithm_refused",
                             f"/ws/alice?token={token}")
        self.api_closed(server, 403)
        self.finish(server)

        shipped = os.path.join(self.args.source, "deploy", "shardcast.yaml")
        server = self.start("shipped-config", ["listen=127.0.0.1:0"], config=shipped)
        self.refused_upgrade(server, "an anonymous upgrade of /ws/alice", 401, "missing_token",
                             "/ws/alice")
        status, body = server.call("POST", "/api/v1/send", {"to": "alice", "data": "hi"})
        if status != 403:
            raise TestFailure(f"shipped config: a publish answered {status} {body!r}, "
                              "expected 403")
        self.finish(server)
        log("no auth settings, and deploy/shardcast.yaml: upgrades get 401, the publish API "
            "403, /healthz and /metrics 200")

    def api_closed(self, server, status):
        """Every publish API call gets `status` with or without a made-up key; /healthz and
        /metrics answer."""
        for method, path, body in API_CALLS:
            for key in (False, "made-up-key"):
                got, answer = server.call(method, path, body, key=key)
                if got != status:
                    raise TestFailure(f"{server.name}: {method} {path} "
                                      f"{'with' if key else 'without'} a key answered {got} "
                                      f"{answer!r}, expected {status}")
        for path in ("/healthz", "/metrics"):
            got, answer = server.call("GET", path, key=False)
            if got != 200:
                raise TestFailure(f"{server.name}: GET {path} answered {got} {answer!r}")

    # --- api keys ---------------------------------------------------------------------------

    def api_keys(self):
        k = self.keys
        listed = [secrets.token_urlsafe(24), secrets.token_urlsafe(24)]
        from_file = k.api_key
        key_file = write_file(k.path("api-keys"),
                              f"# publishers of the auth test\n\n{from_file}\n")
        server = self.start("api-keys", ["auth.api_keys=" + ",".join(listed),
                                         f"auth.api_keys_file={key_file}"])
        for what, authorization in [("no key", None),
                                    ("a wrong key", "Bearer not-a-key"),
                                    ("a listed key in another scheme", f"Basic {listed[0]}")]:
            self.unsent_body_refused(server, what, authorization)
        for key in listed + [from_file]:
            status, body = server.call("POST", "/api/v1/send", {"to": "nobody", "data": 1},
                                       key=key)
            if status != 202 or json.loads(body) != {"accepted": 1}:
                raise TestFailure(f"a publish with a configured key answered {status} {body!r}")
        for key, expected in [(False, 401), ("not-a-key", 401), (from_file, 200)]:
            status, body = server.call("GET", "/api/v1/stats", key=key)
            if status != expected:
                raise TestFailure(f"GET /api/v1/stats with key {key!r} answered {status}, "
                                  f"expected {expected}")
        status, _ = server.call("GET", "/healthz", key=False)
        if status != 200:
            raise TestFailure(f"GET /healthz without a key answered {status}")
        # With keys set, the metrics need one too (metrics.require_key, on by default).
        for key, expected in [(False, 401), ("not-a-key", 401), (from_file, 200)]:
            status, _ = server.call("GET", "/metrics", key=key)
            if status != expected:
                raise TestFailure(f"GET /metrics with key {key!r} answered {status}, "
                                  f"expected {expected}")
        self.finish(server)
        log("a publish without a valid key gets 401 from its header alone and the connection "
            "closes; keys from auth.api_keys and auth.api_keys_file publish; /metrics needs a "
            "key once keys are set")

    def unsent_body_refused(self, server, what, authorization):
        """A publish announcing a 4 MiB body and sending none: the 401 must come at once, and
        the server must close the connection rather than wait for the body."""
        lines = ["POST /api/v1/send HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
                 "Content-Type: application/json", f"Content-Length: {UNSENT_BODY}"]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        timeout = 5
        with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            try:
                reply = read_reply(sock, f"a publish with {what}")
            except socket.timeout:
                raise TestFailure(f"a publish with {what} and no body: no answer within "
                                  f"{timeout}s (is the server waiting for the body?)") from None
            if reply.status != 401 or reply.error() is None:
                raise TestFailure(f"a publish with {what} answered {reply}, expected 401")
            if reply.headers.get("www-authenticate") != "Bearer":
                raise TestFailure(f"a publish with {what}: the 401 has WWW-Authenticate "
                                  f"{reply.headers.get('www-authenticate')!r}")
            try:
                rest = sock.recv(65536)
            except socket.timeout:
                raise TestFailure(f"a publish with {what}: the connection was still open "
                                  f"{timeout}s after the 401") from None
            except ConnectionResetError:
                rest = b""
            if rest:
                raise TestFailure(f"a publish with {what}: more after the 401: {rest!r}")

    # --- opened explicitly ------------------------------------------------------------------

    def opened_explicitly(self):
        server = self.start("open", ["auth.insecure_api=true", "auth.anonymous_clients=true",
                                     "auth.allowed_origins=*"])
        carol = self.connect(server, "/ws/carol")
        browser = self.connect(server, "/ws/dan", headers={"Origin": EVIL_ORIGIN})
        sandboxed = self.connect(server, "/ws/erin", headers={"Origin": "null"})
        for client, name in [(carol, "carol"), (browser, "dan"), (sandboxed, "erin")]:
            server.publish(name, f"hello {name}")
            self.received(client, [f"hello {name}"])
        self.refused_upgrade(server, "an anonymous upgrade of /ws, which names no id", 401,
                             "missing_token", "/ws")
        for client in (carol, browser, sandboxed):
            code = client.close()
            if code != 1000:
                raise TestFailure(f"{client.name}: our close was answered with {code}")
        self.finish(server)
        log("auth.insecure_api: publishing needs no key; auth.anonymous_clients: /ws/{id} "
            "connects without a token; auth.allowed_origins=*: any origin, null included")

    # --- refusals ---------------------------------------------------------------------------

    def refusals(self):
        k, t = self.keys, self.tokens
        self.strict = server = self.start("refusals", [
            f"auth.jwt.hmac_secret={k.hmac_secret}",
            f"auth.jwt.public_keys={k.rsa.public_path},{k.ec256.public_path}",
            f"auth.jwt.audience={AUDIENCE}", f"auth.jwt.issuer={ISSUER}",
            f"auth.allowed_origins={APP_ORIGIN}"])
        port = server.port
        now = int(time.time())

        def hs(**extra):
            return t.sign("HS256", strict_claims(**extra))
        good = hs()

        # Admitted: each algorithm configured, the allowed and our own origin, and times
        # just inside the 30 s leeway. Each on an id of its own, so none replaces another.
        for what, target, headers in [
            ("an HS256 token", "/ws/ok-1?token=" + hs(sub="ok-1"), []),
            ("an RS256 token whose aud list names us, on /ws",
             "/ws?token=" + t.sign("RS256", strict_claims("ok-2", aud=["other", AUDIENCE])),
             []),
            ("an ES256 token in Authorization", "/ws/ok-3",
             bearer(t.sign("ES256", strict_claims("ok-3")))),
            ("the allowed origin", "/ws/ok-4?token=" + hs(sub="ok-4"), [("Origin", APP_ORIGIN)]),
            ("the server's own origin", "/ws/ok-5?token=" + hs(sub="ok-5"),
             [("Origin", f"http://127.0.0.1:{port}")]),
            ("exp 10 s ago, inside the leeway", "/ws/ok-6?token=" + hs(sub="ok-6", exp=now - 10),
             []),
            ("nbf and iat 10 s ahead, inside the leeway",
             "/ws/ok-7?token=" + hs(sub="ok-7", nbf=now + 10, iat=now + 10), []),
        ]:
            self.admitted(server, what, target, headers)

        garbage = t.remember("garbage-token-" + secrets.token_hex(12))
        cases = [
            (401, "missing_token", [
                ("no token", "/ws/alice", []),
                ("no token and no id", "/ws", []),
                ("an empty token parameter", "/ws/alice?token=", []),
                ("Authorization of another scheme", "/ws/alice", [("Authorization", "Basic x")]),
            ]),
            (401, "malformed_token", [
                ("a token that is not a JWT", f"/ws/alice?token={garbage}", []),
                ("three segments of garbage", "/ws/alice?token=Zm9v.YmFy.YmF6", []),
                ("a broken URL escape", "/ws/alice?token=%zz", []),
                ("two token parameters", f"/ws/alice?token={good}&token={good}", []),
                ("a token in the query and in Authorization", f"/ws/alice?token={good}",
                 bearer(good)),
                ("a token in the query and in a subprotocol", f"/ws/alice?token={good}",
                 protocols(f"shardcast.token.{good}")),
                ("a token in Authorization and in a subprotocol", "/ws/alice",
                 bearer(good) + protocols("shardcast.v1", f"shardcast.token.{good}")),
                ("no sub", "/ws?token=" + hs(sub=OMIT), []),
                ("a numeric sub", "/ws?token=" + hs(sub=42), []),
                ("a sub that is no valid id", "/ws?token=" + hs(sub="alice smith!"), []),
                ("a sub of 129 characters", "/ws?token=" + hs(sub="a" * 129), []),
                ("exp as a string", "/ws/alice?token=" + hs(exp="tomorrow"), []),
                ("nbf as a string", "/ws/alice?token=" + hs(nbf="yesterday"), []),
                ("iat as a string", "/ws/alice?token=" + hs(iat="now"), []),
                ("no exp", "/ws/alice?token=" + hs(exp=OMIT), []),
                ("an info claim that is a string", "/ws/alice?token=" + hs(info="admin"), []),
                ("an info claim that is an array", "/ws/alice?token=" + hs(info=["admin"]), []),
            ]),
            (401, "algorithm_refused", [
                ("alg none", "/ws/alice?token=" + t.alg_none(strict_claims()), []),
                ("ES384, with no P-384 key set",
                 "/ws/alice?token=" + t.sign("ES384", strict_claims()), []),
            ]),
            (401, "bad_signature", [
                ("HS256 signed with another secret",
                 "/ws/alice?token=" + t.sign("HS256", strict_claims(), k.other_secret), []),
                ("HS384 signed with another secret",
                 "/ws/alice?token=" + t.sign("HS384", strict_claims(), k.other_secret), []),
                ("RS256 signed by an RSA key not set",
                 "/ws/alice?token=" + t.sign("RS256", strict_claims(), k.rsa_b.private_pem), []),
                ("ES256 signed by a P-256 key not set",
                 "/ws/alice?token=" + t.sign("ES256", strict_claims(), k.ec256_b.private_pem),
                 []),
                ("alg confusion: HS256 keyed with the RSA public key's PEM",
                 "/ws/alice?token=" + t.alg_confusion(strict_claims()), []),
                ("claims changed after signing",
                 "/ws/bob?token=" + t.tampered(good, strict_claims("bob")), []),
            ]),
            (401, "token_expired", [
                ("exp an hour ago", "/ws/alice?token=" + hs(exp=now - 3600, iat=now - 7200), []),
                ("exp 60 s ago, past the leeway", "/ws/alice?token=" + hs(exp=now - 60), []),
            ]),
            (401, "token_not_yet_valid", [
                ("nbf an hour ahead", "/ws/alice?token=" + hs(nbf=now + 3600), []),
                ("iat an hour ahead",
                 "/ws/alice?token=" + hs(iat=now + 3600, exp=now + 7200), []),
            ]),
            (401, "wrong_audience", [
                ("no aud", "/ws/alice?token=" + hs(aud=OMIT), []),
                ("another aud", "/ws/alice?token=" + hs(aud="another-service"), []),
                ("an aud list without ours", "/ws/alice?token=" + hs(aud=["a", "b"]), []),
            ]),
            (401, "wrong_issuer", [
                ("no iss", "/ws/alice?token=" + hs(iss=OMIT), []),
                ("another iss", "/ws/alice?token=" + hs(iss="https://evil.example"), []),
            ]),
            (403, "sub_mismatch", [
                ("bob's token on /ws/alice", "/ws/alice?token=" + hs(sub="bob"), []),
                ("bob's token in Authorization on /ws/alice", "/ws/alice",
                 bearer(hs(sub="bob"))),
            ]),
            (403, "origin_refused", [
                ("a foreign origin", f"/ws/alice?token={good}", [("Origin", EVIL_ORIGIN)]),
                ("Origin: null", f"/ws/alice?token={good}", [("Origin", "null")]),
                ("our host on another port", f"/ws/alice?token={good}",
                 [("Origin", f"http://127.0.0.1:{port + 1}")]),
                ("the allowed origin's name as a prefix", f"/ws/alice?token={good}",
                 [("Origin", APP_ORIGIN + ".evil.example")]),
                ("the allowed origin over http", f"/ws/alice?token={good}",
                 [("Origin", APP_ORIGIN.replace("https:", "http:"))]),
            ]),
            (400, "invalid_client_id", [
                ("an id with a !", f"/ws/bad!id?token={good}", []),
                ("an id of 129 characters", "/ws/" + "a" * 129, []),
            ]),
        ]
        count = 0
        for status, reason, requests in cases:
            for what, target, headers in requests:
                self.refused_upgrade(server, what, status, reason, target, headers)
                count += 1

        target = f"/ws/alice?token={good}"
        self.refused_upgrade(server, "no Sec-WebSocket-Key", 400, "not_upgrade", target,
                             key=False)
        self.refused_upgrade(server, "Sec-WebSocket-Version 8", 426, "not_upgrade", target,
                             version="8")
        self.refused(server, "a plain GET, no upgrade", 426, "not_upgrade",
                     lambda: request(port, "GET", target))
        count += 3
        log(f"{count} bad upgrades refused before the upgrade, each with its status and "
            "counted under its reason; 7 good ones admitted")

    # --- algorithms and where the token is --------------------------------------------------

    def algorithms(self):
        k, t = self.keys, self.tokens
        self.main = server = self.start("main", [
            f"auth.jwt.hmac_secret_file={k.hmac_secret_file}",
            "auth.jwt.public_keys=" + ",".join([k.rsa.public_path, k.rsa_b.public_path,
                                                k.ec256.public_path, k.ec384.public_path]),
            f"auth.api_keys={k.api_key}", "auth.jwt.leeway=0s"], api_key=k.api_key)
        for alg, key, sub in [("HS256", None, "hs256"), ("HS384", None, "hs384"),
                              ("RS256", None, "rs256-a"),
                              ("RS256", k.rsa_b.private_pem, "rs256-b"),
                              ("ES256", None, "es256"), ("ES384", None, "es384")]:
            token = t.sign(alg, claims(sub), key)
            if jwt.get_unverified_header(token)["alg"] != alg:
                raise TestFailure(f"PyJWT made a {jwt.get_unverified_header(token)} token")
            self.round_trip(server, sub, self.connect(server, f"/ws/{sub}?token={token}"))
        log("HS256, HS384, RS256 with either of two RSA keys, ES256 and ES384 connect")

        token = t.sign("HS256", claims("frank"))
        self.round_trip(server, "frank", self.connect(server, f"/ws?token={token}"))
        token = t.sign("ES256", claims("grace"))
        self.round_trip(server, "grace",
                        self.connect(server, "/ws", headers={"Authorization": f"Bearer {token}"}))
        # A token in a subprotocol entry: the server never selects that entry, and selects
        # shardcast.v1 when it is offered too.
        token = t.sign("RS256", claims("heidi"))
        heidi = self.connect(server, "/ws", subprotocols=[f"shardcast.token.{token}"])
        if heidi.subprotocol is not None:
            raise TestFailure(f"the server selected subprotocol {heidi.subprotocol!r}")
        self.round_trip(server, "heidi", heidi)
        # Ids of their own: a session closed a moment ago may not be removed yet, and a new
        # one for its id would replace it.
        token = t.sign("ES384", claims("heidi-2"))
        reply = self.admitted(server, "a token in a subprotocol entry, with shardcast.v1",
                              "/ws", protocols(f"shardcast.token.{token}", "shardcast.v1"))
        if reply.headers.get("sec-websocket-protocol") != "shardcast.v1":
            raise TestFailure("a token entry and shardcast.v1 offered: the server selected "
                              f"{reply.headers.get('sec-websocket-protocol')!r}")
        token = t.sign("ES384", claims("heidi-3"))
        reply = self.admitted(server, "a token in a second Sec-WebSocket-Protocol field", "/ws",
                              protocols("shardcast.v1") + protocols(f"shardcast.token.{token}"))
        if reply.headers.get("sec-websocket-protocol") != "shardcast.v1":
            raise TestFailure("a token entry in a second field: the server selected "
                              f"{reply.headers.get('sec-websocket-protocol')!r}")

        # Refused here for what this server's settings make wrong.
        self.refused_upgrade(server, "a token both in the query and in a subprotocol", 401,
                             "malformed_token", f"/ws?token={token}",
                             protocols(f"shardcast.token.{token}"))
        self.refused_upgrade(server, "an aud, with no auth.jwt.audience set", 401,
                             "wrong_audience",
                             "/ws?token=" + t.sign("HS256", claims("ivan", aud="anyone")))
        log("the token is read from ?token=, Authorization: Bearer and a shardcast.token. "
            "subprotocol; /ws takes the id from sub; the token entry is never selected")

    def round_trip(self, server, client_id, client):
        """A message published to client_id reaches the client; then it closes cleanly."""
        server.publish(client_id, f"hello {client_id}")
        self.received(client, [f"hello {client_id}"])
        code = client.close()
        if code != 1000:
            raise TestFailure(f"{client.name}: our close was answered with {code}")

    # --- shardcast.v1 data frames -----------------------------------------------------------

    def v1_frames(self):
        server, t = self.main, self.tokens
        v1 = self.connect(server, "/ws/ivy?token=" + t.sign("HS256", claims("ivy")),
                          subprotocols=["shardcast.v1"])
        plain = self.connect(server, "/ws/jack?token=" + t.sign("HS256", claims("jack")))
        if v1.subprotocol != "shardcast.v1" or plain.subprotocol is not None:
            raise TestFailure(f"subprotocols selected: {v1.subprotocol!r} when shardcast.v1 "
                              f"was offered, {plain.subprotocol!r} when none was")
        payloads = ["hi", 'say "hi" \u00fc \u2603', {"n": 1, "list": [1, "two"], "o": {}}, 42,
                    [1, "two"]]
        for data in payloads:
            server.publish("ivy", data)
            server.publish("jack", data)
        server.broadcast({"to": "all"})
        expected = payloads + [{"to": "all"}]
        v1.wait_messages(len(expected))
        plain.wait_messages(len(expected))
        frames = [v1_parts(m) for m in v1.messages]
        if frames != [{"data": data} for data in expected]:
            raise TestFailure(f"the shardcast.v1 client received {v1.messages}, expected "
                              f"{{\"data\": ...}} of each of {expected}")
        # A string arrives as its text, anything else as its JSON.
        if not all(isinstance(m, str) for m in plain.messages) or \
                [m if isinstance(data, str) else json.loads(m)
                 for m, data in zip(plain.messages, expected)] != expected:
            raise TestFailure(f"the client without a subprotocol received {plain.messages}, "
                              f"expected the bare data of each of {expected}")
        for client in (v1, plain):
            client.close()
        log("shardcast.v1 clients receive {\"data\":<JSON>,\"offset\":..,\"epoch\":..} text "
            "frames; others the bare data")

    # --- sessions are never disturbed by a refused upgrade ----------------------------------

    def sessions_safe(self):
        server, t, k = self.main, self.tokens, self.keys
        port = server.port
        alice_token = t.sign("HS256", claims("alice"))
        alice = self.connect(server, f"/ws/alice?token={alice_token}")
        # A delivered message proves the session is open, not still in its handshake.
        server.publish("alice", "first")
        self.received(alice, ["first"])
        target = f"/ws/alice?token={alice_token}"
        forged = t.sign("HS256", claims("alice"), k.other_secret)
        bob = t.sign("HS256", claims("bob"))
        attempts = [
            ("no Sec-WebSocket-Key", 400, lambda: upgrade(port, target, key=False)),
            ("a forged token", 401, lambda: upgrade(port, f"/ws/alice?token={forged}")),
            ("bob's token on /ws/alice", 403, lambda: upgrade(port, f"/ws/alice?token={bob}")),
            ("a refused origin", 403,
             lambda: upgrade(port, target, [("Origin", EVIL_ORIGIN)])),
            ("a valid upgrade whose body never ends", None,
             lambda: self.incomplete_upgrade(port, target)),
        ]
        rounds = 5
        for _ in range(rounds):
            for what, status, send in attempts:
                reply = send()
                if status is not None and (reply is None or reply.status != status):
                    raise TestFailure(f"an upgrade for alice with {what} answered {reply}, "
                                      f"expected {status}")
                if status is None and reply is not None and reply.status == 101:
                    raise TestFailure(f"an upgrade for alice with {what} was answered 101")
        if alice.closed():
            raise TestFailure(f"alice was closed with {alice.close_code} by refused upgrades")
        server.publish("alice", "still here")
        self.received(alice, ["first", "still here"])
        replaced = server.metric("shardcast_sessions_cleaned_total", reason="replaced")
        if replaced != 0 or not server.online("alice"):
            raise TestFailure(f"after refused upgrades: {replaced:g} sessions replaced, alice "
                              f"online: {server.online('alice')}")
        log(f"{rounds * len(attempts)} refused or incomplete upgrades for alice left her "
            "session connected and receiving")

        second = self.connect(server, f"/ws/alice?token={t.sign('HS256', claims('alice'))}")
        alice.wait_closed(4001, "replaced by a second valid session")
        server.publish("alice", "to the second")
        self.received(second, ["to the second"])
        self.cleaned(server, "replaced", 1)
        second.close()
        log("a second valid upgrade for alice replaced the first session, which got 4001")

    def incomplete_upgrade(self, port, target):
        """A valid upgrade for alice announcing a body it never finishes: the server must not
        upgrade before the request is whole. Returns the answer, or None if the server just
        closed the connection."""
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                 f"Sec-WebSocket-Key: {ws_key()}", "Content-Length: 100"]
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"x" * 10)
            sock.shutdown(socket.SHUT_WR)
            try:
                return read_reply(sock, "an incomplete upgrade")
            except TestFailure:
                return None  # closed without an answer
            except socket.timeout:
                raise TestFailure(f"an incomplete upgrade: the connection was still open "
                                  f"{IO_TIMEOUT}s after it ended") from None

    # --- refresh and expiry -----------------------------------------------------------------

    def refresh(self):
        server, t = self.main, self.tokens
        # Both expire a few seconds from now (leeway 0s): dave refreshes and eve does not.
        # Seconds enough for dave to connect and refresh on a loaded machine.
        exp = int(time.time()) + 6
        first = t.sign("HS256", claims("dave", exp=exp))
        dave = self.connect(server, f"/ws/dave?token={first}", subprotocols=["shardcast.v1"])
        eve = self.connect(server, "/ws/eve?token=" + t.sign("HS256", claims("eve", exp=exp)),
                           subprotocols=["shardcast.v1"])
        publisher = Publisher(server, "dave")
        publisher.start()
        try:
            wait_until(lambda: len(dave.messages) >= 20 or dave.closed(), WAIT,
                       "dave to receive 20 messages before refreshing")
            new_exp = int(time.time()) + 3600
            dave.send(json.dumps({"refresh": t.sign("HS256", claims("dave", exp=new_exp))}))
            wait_until(lambda: self.refreshed(dave) or dave.closed(), WAIT,
                       "dave's {\"refreshed\":...} answer")
            if self.refreshed(dave) != [{"exp": new_exp}]:
                raise TestFailure(f"dave's refresh was answered {self.refreshed(dave)} (closed "
                                  f"with {dave.close_code}), expected one "
                                  f"{{'exp': {new_exp}}}")
            eve.wait_closed(4004, "her token expired")
            # Past dave's first exp by more than a shard's tick: had the refresh not moved his
            # expiry, he would be closed by now.
            wait_until(lambda: time.time() > exp + 2, WAIT, "dave's first exp to pass")
            if dave.closed():
                raise TestFailure(f"dave was closed with {dave.close_code} after refreshing")
            sent = len(publisher.accepted)
            wait_until(lambda: len(self.data(dave)) > sent, WAIT,
                       "dave to receive messages published after his first exp")
        finally:
            publisher.finish()
        accepted = publisher.accepted
        wait_until(lambda: len(self.data(dave)) >= len(accepted) or dave.closed(), WAIT,
                   lambda: f"dave to receive all {len(accepted)} accepted messages "
                           f"(has {len(self.data(dave))})")
        if self.data(dave) != accepted:
            got = self.data(dave)
            missing = sorted(set(accepted) - set(got))
            raise TestFailure(f"dave received {len(got)} messages for {len(accepted)} accepted: "
                              f"missing {missing[:10]}, duplicates "
                              f"{len(got) - len(set(got))}, in order: {got == sorted(got)}")
        if dave.closed():
            raise TestFailure(f"dave was closed with {dave.close_code}")
        dave.close()
        log(f"dave refreshed and stayed past his first exp, receiving all {len(accepted)} "
            "messages published across the refresh exactly once, in order; eve, who did not "
            "refresh, was closed with 4004")

        refusals = [
            ("a forged token", t.sign("HS256", claims("kim"), self.keys.other_secret)),
            ("a token for another id", t.sign("HS256", claims("bob"))),
            ("an expired token", t.sign("HS256", claims("kim", exp=int(time.time()) - 10))),
            ("a token that is not a string", 42),
        ]
        # One kim after another: a session is removed as its 4005 is sent, so the next one
        # replaces nothing.
        for what, token in refusals:
            kim = self.connect(server, "/ws/kim?token=" + t.sign("HS256", claims("kim")),
                               subprotocols=["shardcast.v1"])
            kim.send(json.dumps({"refresh": token}))
            kim.wait_closed(4005, f"a refresh with {what}")
        kim = self.connect(server, "/ws/kim?token=" + t.sign("HS256", claims("kim")),
                           subprotocols=["shardcast.v1"])
        again = int(time.time()) + 600
        for _ in range(2):
            kim.send(json.dumps({"refresh": t.sign("HS256", claims("kim", exp=again))}))
        kim.wait_closed(4005, "a second refresh within a second")
        if self.refreshed(kim) != [{"exp": again}]:
            raise TestFailure(f"two refreshes at once: the first was answered "
                              f"{self.refreshed(kim)}, expected {{'exp': {again}}}")
        for reason, count in [("token_expired", 1), ("refresh_refused", len(refusals) + 1)]:
            self.cleaned(server, reason, count)
        log(f"refreshes with {', '.join(what for what, _ in refusals)}, and a second refresh "
            "within a second, closed their sessions with 4005")

    @staticmethod
    def cleaned(server, reason, count):
        """Waits for shardcast_sessions_cleaned_total{reason} to reach exactly `count`."""
        def value():
            return server.metric("shardcast_sessions_cleaned_total", reason=reason)
        wait_until(lambda: value() == count, WAIT,
                   lambda: f'shardcast_sessions_cleaned_total{{reason="{reason}"}} to be '
                           f"{count} (is {value():g})")

    @staticmethod
    def refreshed(client):
        return [p["refreshed"] for p in map(v1_parts, client.messages) if "refreshed" in p]

    @staticmethod
    def data(client):
        return [p["data"] for p in map(v1_parts, client.messages) if "data" in p]

    # --- shardcast token --------------------------------------------------------------------

    def token_command(self):
        k, t = self.keys, self.tokens
        binary = self.args.shardcast
        server = self.start("minted", [
            f"auth.jwt.hmac_secret_file={k.hmac_secret_file}", "auth.jwt.require_exp=false",
            "auth.insecure_api=true"])
        secret_file = [f"auth.jwt.hmac_secret_file={k.hmac_secret_file}"]
        alice = self.shardcast_token("alice", "1h", 3600, secret_file)
        ivan = self.shardcast_token("ivan", "30m", 1800, secret_file, info={"role": "x"})
        self.round_trip(server, "alice", self.connect(server, f"/ws/alice?token={alice}"))
        self.round_trip(server, "ivan", self.connect(
            server, "/ws", headers={"Authorization": f"Bearer {ivan}"}))
        # With an audience and an issuer set, the token carries them, and the refusals server,
        # which requires them, admits it.
        lena = self.shardcast_token("lena", "5m", 300, [
            f"auth.jwt.hmac_secret={k.hmac_secret}", f"auth.jwt.audience={AUDIENCE}",
            f"auth.jwt.issuer={ISSUER}"], aud=AUDIENCE, iss=ISSUER)
        self.admitted(self.strict, "a token of shardcast token with aud and iss",
                      f"/ws/lena?token={lena}")

        code, out, err = run_shardcast(binary, "token", "--sub", "alice")
        if code != 2 or out.strip() or "auth.jwt.hmac_secret" not in err:
            raise TestFailure(f"shardcast token without a secret exited {code} with stdout "
                              f"{out!r} and stderr {err!r}; expected 2, nothing, and a word "
                              "on auth.jwt.hmac_secret")
        log("shardcast token mints HS256 tokens (sub, iat, exp = iat + ttl, info, aud, iss) "
            "that PyJWT verifies and the servers admit; without a secret it exits 2")

        # auth.jwt.require_exp=false admits a token without exp; this server has the HMAC
        # secret only, so a public-key algorithm is refused, and the alg confusion token is
        # checked against the secret and fails.
        self.round_trip(server, "judy", self.connect(
            server, "/ws/judy?token=" + t.sign("HS256", claims("judy", exp=OMIT))))
        for alg in ("RS256", "ES256"):
            self.refused_upgrade(server, f"{alg}, with only an HMAC secret set", 401,
                                 "algorithm_refused",
                                 "/ws/alice?token=" + t.sign(alg, claims()))
        self.refused_upgrade(server, "alg confusion, with only an HMAC secret set", 401,
                             "bad_signature", "/ws/alice?token=" + t.alg_confusion(claims()))
        log("with only an HMAC secret: a token without exp is admitted (require_exp=false), "
            "RS256 and ES256 are refused, the alg confusion token fails its signature")

    def shardcast_token(self, sub, ttl, seconds, settings, info=None, **registered):
        """The token `shardcast token` prints with these settings, checked with PyJWT: HS256,
        signed with the secret, and exactly the claims sub, iat (about now), exp = iat +
        `seconds`, info when given, and the registered claims (aud, iss) given."""
        args = ["token", "--sub", sub, "--ttl", ttl, *settings_argv(settings)]
        if info:
            args += ["--info", json.dumps(info)]
        command = f"shardcast {' '.join(args[:5])}{' --info ...' if info else ''}"
        code, out, err = run_shardcast(self.args.shardcast, *args)
        if code != 0:
            raise TestFailure(f"{command} exited {code}:\n{err}")
        token = self.tokens.remember(out.strip())
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "HS256":
            raise TestFailure(f"{command} made a token with header {header}")
        try:
            decoded = jwt.decode(token, self.keys.hmac_secret, algorithms=["HS256"],
                                 audience=registered.get("aud"), issuer=registered.get("iss"))
        except jwt.PyJWTError as e:
            raise TestFailure(f"PyJWT refused the token of {command}: {e!r}") from None
        iat = decoded.get("iat")
        expected = {"sub": sub, "iat": iat, "exp": (iat or 0) + seconds, **registered}
        if info:
            expected["info"] = info
        if decoded != expected or not isinstance(iat, int) or abs(iat - time.time()) > 600:
            raise TestFailure(f"{command} made claims {decoded}, expected {expected} with iat "
                              "about now")
        return token

    # --- the refusal counts -----------------------------------------------------------------

    def counts(self):
        server = self.strict
        seen = server.refusals()
        wrong = [f"  {reason}: {seen[reason]}, expected {server.expected[reason]}"
                 for reason in REFUSAL_REASONS if seen[reason] != server.expected[reason]]
        unknown = set(seen) - set(REFUSAL_REASONS)
        if wrong or unknown:
            raise TestFailure("shardcast_handshake_failures_total of the refusals server "
                              "differs from what the test provoked:\n" + "\n".join(wrong) +
                              (f"\n  unknown reasons: {sorted(unknown)}" if unknown else ""))
        log(f"shardcast_handshake_failures_total is exactly what was provoked: "
            f"{sum(server.expected.values())} refusals over {len(server.expected)} reasons")

    # --- logs -------------------------------------------------------------------------------

    def logs(self):
        for server in self.servers:
            self.finish(server)
        leaks = []
        for server in self.servers:
            text = server.process.log()
            for token in self.tokens.issued:
                for piece in log_pieces(token):
                    if piece in text:
                        leaks.append(f"{server.name}: token text {piece[:24]}...")
                        break
            for secret in self.keys.secrets():
                if secret in text:
                    leaks.append(f"{server.name}: a secret or API key")
        if leaks:
            raise TestFailure("secrets in the logs:\n  " + "\n  ".join(sorted(set(leaks))))
        strict = self.strict.process.log()
        for line in ["rejected GET /ws/alice?token=*** from 127.0.0.1: ",
                     "rejected GET /ws/alice?token=***&token=*** from 127.0.0.1: "]:
            if line not in strict:
                raise TestFailure(f"the refusals server's log has no line with {line!r}")
        log(f"{len(self.servers)} servers exited 0; none of {len(self.tokens.issued)} tokens, "
            "nor any secret, is in their logs; refused requests show token=***")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shardcast", required=True, help="the shardcast binary")
    parser.add_argument("--source", required=True, help="the repository root")
    parser.add_argument("--timeout", type=int, default=240, help="seconds before giving up")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    args.source = os.path.abspath(args.source)
    args.shardcast = os.path.abspath(args.shardcast)
    return args


def main():
    args = parse_args()
    return run_scenario(
        lambda workdir: Scenario(args, workdir), timeout=args.timeout, keep=args.keep,
        workdir_prefix="shardcast-auth-test-",
        summary=lambda scenario: f"{scenario.steps} scenarios; "
                                 f"{sum(scenario.strict.expected.values())} refusals counted")


if __name__ == "__main__":
    sys.exit(main())
