"""The real binaries the cluster test runs, each on free ports of 127.0.0.1: nats-server (with
its monitoring port, which shows every connection's subscriptions), and nginx in front of
the nodes, configured from a copy of deploy/nginx/shardcast.conf. Each process logs to a
file (a pipe nobody reads would fill and block it), runs in a process group of its own,
and is stopped with SIGTERM, then SIGKILL of its group after a bound. Called from the
test's main thread.
"""
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request

from waiting import TestFailure, wait_until


def free_port():
    """A port nothing listens on right now. Another process may take it before we do; the
    callers retry in that case."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# Resolved here, not in the child: between fork and exec (other threads exist) the child
# should do no more than one plain call.
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    """In the child before exec: SIGKILL it when the test process dies, however it dies, so
    nothing outlives a test killed from outside."""
    if _prctl is not None:
        _prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


class Process:
    """One child process with its output in a log file, in a process group of its own so
    that its children (nginx's worker) go with it."""

    def __init__(self, name, argv, log_path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self._popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=_die_with_parent)
        self.pid = self._popen.pid

    def running(self):
        return self._popen.poll() is None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines=30):
        return "\n".join(self.log().splitlines()[-lines:])

    def kill(self):
        """SIGKILL, as a crash would; returns once the process is gone."""
        self._popen.kill()
        self._popen.wait(10)

    def stop(self, timeout=10, sig=signal.SIGTERM):
        """`sig`, then SIGKILL to the whole group if it is still running after `timeout`
        seconds. Returns the exit code (negative for a signal), or None if it had to be
        killed. Safe to call twice."""
        code = self._popen.poll()
        if code is None:
            self._popen.send_signal(sig)
            try:
                code = self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                code = None
        try:
            os.killpg(self.pid, signal.SIGKILL)  # leftovers of the group, if any
        except OSError:
            pass
        if self._popen.poll() is None:
            self._popen.wait(10)
        if not self._log.closed:
            self._log.close()
        return code


def http_get_json(port, path, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


class NatsServer:
    """nats-server on 127.0.0.1. stop() and start() again reuse the same client port, as a
    restarted server would; the monitoring port may change."""

    def __init__(self, workdir, binary="nats-server"):
        self.workdir = workdir
        self.binary = binary
        self.port = None
        self.monitor_port = None
        self.process = None
        self.starts = 0

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self):
        fixed = self.port is not None
        for attempt in range(5):
            port = self.port if fixed else free_port()
            self.monitor_port = free_port()
            self.starts += 1
            self.process = Process("nats-server", [
                self.binary, "-a", "127.0.0.1", "-p", str(port),
                "-m", str(self.monitor_port), "-n", f"cluster-test-{self.starts}",
            ], os.path.join(self.workdir, f"nats-server-{self.starts}.log"))
            self.port = port
            try:
                wait_until(self._ready, 15, "nats-server to answer /healthz", interval=0.1)
                return
            except TestFailure:
                log = self.process.log()
                self.process.stop()
                if "address already in use" not in log:
                    raise TestFailure(f"nats-server did not start:\n{self.process.log_tail()}")
                if fixed:
                    # The old server's port is still held for a moment: try it again.
                    continue
        raise TestFailure(f"nats-server could not listen after 5 attempts:\n"
                          f"{self.process.log_tail()}")

    def _ready(self):
        if not self.process.running():
            raise TestFailure(f"nats-server exited:\n{self.process.log_tail()}")
        try:
            http_get_json(self.monitor_port, "/healthz", timeout=2)
            return port_open(self.port)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self):
        if self.process:
            self.process.stop()

    def connections(self):
        """{cid: (connection name, set of subscribed subjects)} for every client connection."""
        connz = http_get_json(self.monitor_port, "/connz?subs=1&limit=10000")
        return {c["cid"]: (c.get("name", ""), set(c.get("subscriptions_list") or []))
                for c in connz.get("connections") or []}


# --- nginx -------------------------------------------------------------------------------

_UPSTREAM_OPEN = re.compile(r"^\s*upstream\s+\S+\s*\{")
_UPSTREAM_SERVER = re.compile(r"^(\s*)server\s+([^\s;{]+)([^;{]*);\s*(#.*)?$")
_LISTEN = re.compile(r"^(\s*)listen\s+([^\s;]+)([^;]*);\s*(#.*)?$")
_LOG_LINE = re.compile(r"^(\s*)(access_log|error_log)\s[^;]*;\s*(#.*)?$")


def rewrite_nginx_snippet(text, node_addresses, listen_port):
    """The snippet with its upstream's server lines replaced by `node_addresses` (each keeps
    the parameters of the original line at its position, or of the last one), its one
    listen line by 127.0.0.1:`listen_port`, and any log line dropped (the generated main
    config sets those). Raises TestFailure when the snippet does not have that shape."""
    out = []
    depth = 0
    upstream_depth = None
    upstreams = 0
    originals = []  # parameters after the address of each original server line
    insert_at = None
    listens = 0
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if _UPSTREAM_OPEN.match(code):
            upstreams += 1
            upstream_depth = depth + 1
        server = _UPSTREAM_SERVER.match(line) if upstream_depth == depth else None
        listen = _LISTEN.match(line) if upstream_depth is None else None
        if server:
            if insert_at is None:
                insert_at = (len(out), server.group(1))
                out.append(None)  # placeholder for the new server lines
            originals.append(server.group(3).rstrip())
        elif listen:
            listens += 1
            if listens == 1:
                params = listen.group(3).rstrip()
                out.append(f"{listen.group(1)}listen 127.0.0.1:{listen_port}{params};")
            # A second listen (say [::]:8080) would bind a port the test did not pick: drop it.
        elif _LOG_LINE.match(line):
            pass
        else:
            out.append(line)
        depth += code.count("{") - code.count("}")
        if upstream_depth is not None and depth < upstream_depth:
            upstream_depth = None
    if upstreams != 1 or not originals or listens < 1:
        raise TestFailure(
            "the nginx snippet does not have the expected shape (one upstream block with "
            f"server lines, a server block with a listen line): found {upstreams} upstream "
            f"block(s), {len(originals)} server line(s), {listens} listen line(s)")
    index, indent = insert_at
    lines = [f"{indent}server {address}{originals[min(i, len(originals) - 1)]};"
             for i, address in enumerate(node_addresses)]
    out[index] = "\n".join(lines)
    return "\n".join(out) + "\n", len(originals)


class Nginx:
    """nginx in the foreground, every file it writes under `workdir`/nginx, serving a copy
    of the shipped snippet pointed at the nodes."""

    def __init__(self, workdir, snippet_path, node_addresses, binary="nginx"):
        self.root = os.path.join(workdir, "nginx")
        os.makedirs(self.root, exist_ok=True)
        with open(snippet_path) as f:
            snippet = f.read()
        for attempt in range(3):
            self.port = free_port()
            text, self.original_servers = rewrite_nginx_snippet(snippet, node_addresses,
                                                                self.port)
            with open(os.path.join(self.root, "shardcast.conf"), "w") as f:
                f.write(text)
            config = os.path.join(self.root, "nginx.conf")
            with open(config, "w") as f:
                f.write(self._main_config())
            error_log = os.path.join(self.root, "error.log")
            self.process = Process("nginx", [binary, "-p", self.root, "-c", config,
                                             "-e", error_log],
                                   os.path.join(workdir, f"nginx-{attempt}.log"))
            self.error_log = error_log
            try:
                wait_until(self._ready, 15, f"nginx to listen on 127.0.0.1:{self.port}")
                return
            except TestFailure:
                self.process.stop()
                log = self.log()
                if "Address already in use" not in log:
                    raise TestFailure(f"nginx did not start:\n{log[-3000:]}")
        raise TestFailure("nginx found no free port in 3 attempts")

    def _main_config(self):
        temp = {name: os.path.join(self.root, name)
                for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        # As root, nginx would run its worker as nobody, which may not enter the test's
        # private temp directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return f"""# Generated by the cluster test.
{user}daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 8192;
pid {self.root}/nginx.pid;
error_log {self.root}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    include {self.root}/shardcast.conf;
}}
"""

    def _ready(self):
        if not self.process.running():
            raise TestFailure("nginx exited")
        return port_open(self.port)

    def log(self):
        text = self.process.log()
        try:
            with open(self.error_log, errors="replace") as f:
                text += f.read()
        except OSError:
            pass
        return text

    def stop(self):
        return self.process.stop()
