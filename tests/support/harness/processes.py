"""Child processes for the end-to-end tests, and the nats-server they share. Each process
logs to a file (a pipe nobody reads would fill and block it), runs in a process group of
its own, dies with the test, and is stopped with SIGTERM, then SIGKILL of its group after a
bound. Called from the test's main thread.
"""
import ctypes
import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from .waiting import TestFailure, wait_until


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

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL to the whole group if it is still running after `timeout`
        seconds. Returns the exit code (negative for a signal), or None if it had to be
        killed. Safe to call twice."""
        code = self._popen.poll()
        if code is None:
            self._popen.send_signal(signal.SIGTERM)
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


class NatsServer:
    """nats-server on free ports of 127.0.0.1: one for clients, one for its monitoring API,
    which tells when it is ready and which connections and subscriptions it holds. stop()
    and start() again reuse the same client port, as a restarted server would; the
    monitoring port may change. `extra_args` go on the command line of the next start (say
    JetStream's -js and -sd), so a restart may change them."""

    def __init__(self, workdir, binary="nats-server", extra_args=()):
        self.workdir = workdir
        self.binary = binary
        self.extra_args = list(extra_args)
        self.port = None
        self.monitor_port = None
        self.process = None
        self.starts = 0

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self):
        # A port may be taken between choosing and binding it, and a restarted server's
        # port may still be held for a moment by the old one: retry either way.
        fixed = self.port is not None
        for _ in range(5):
            port = self.port if fixed else free_port()
            self.monitor_port = free_port()
            while self.monitor_port == port:
                self.monitor_port = free_port()
            self.starts += 1
            # A name per start, so the logs tell a restarted server from the first.
            self.process = Process("nats-server", [
                self.binary, "-a", "127.0.0.1", "-p", str(port),
                "-m", str(self.monitor_port), "-n", f"test-nats-{self.starts}",
                *self.extra_args,
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
        raise TestFailure(f"nats-server could not listen after 5 attempts:\n"
                          f"{self.process.log_tail()}")

    def _monitor(self, path, timeout=5):
        url = f"http://127.0.0.1:{self.monitor_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)

    def _ready(self):
        if not self.process.running():
            raise TestFailure(f"nats-server exited:\n{self.process.log_tail()}")
        try:
            healthy = self._monitor("/healthz", timeout=2).get("status") == "ok"
        except (urllib.error.URLError, OSError, ValueError):
            return False
        # The monitoring port opens on its own; the clients need the client port.
        return healthy and port_open(self.port)

    def stop(self):
        """SIGTERM, as Process.stop; start() may follow."""
        if self.process:
            self.process.stop()

    def connections(self):
        """{cid: (connection name, set of subscribed subjects)} for every client connection."""
        connz = self._monitor("/connz?subs=1&limit=10000")
        return {c["cid"]: (c.get("name", ""), set(c.get("subscriptions_list") or []))
                for c in connz.get("connections") or []}

    def interest(self, subject):
        """How many subscriptions the server holds that match `subject`: once it counts one,
        anything published to `subject` afterwards, over any connection, is delivered."""
        try:
            subsz = self._monitor("/subsz?subs=1&test=" + urllib.parse.quote(subject))
        except (urllib.error.URLError, OSError, ValueError):
            return 0
        return len(subsz.get("subscriptions_list") or [])
