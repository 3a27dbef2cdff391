"""The shipped nginx setup, run on 127.0.0.1 for the deploy checks: deploy/cluster/nginx.conf
(what compose runs) including deploy/nginx/shardcast.conf, both copied into a temporary
directory. In the copy the upstream's server lines name the test's nodes, ports 443 (TLS) and
80 (the redirect) become free ports of 127.0.0.1, and the certificate is a throw-away one
made with openssl for 127.0.0.1 and localhost. Every file nginx writes stays in that
directory, and nginx runs as one process that dies with the test. Called from one thread.

The scripts that import this put tests/support on sys.path first, for the harness.
"""
import re
import ssl
import subprocess
from pathlib import Path

from harness.processes import Process, free_port, port_open
from harness.waiting import TestFailure, wait_until

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "deploy/nginx/shardcast.conf"
MAIN_CONF = ROOT / "deploy/cluster/nginx.conf"
# Where the snippet expects the operator's certificate and key.
SHIPPED_TLS_DIR = "/etc/nginx/tls/"
START_SECONDS = 10


def expect(condition, message):
    if not condition:
        raise TestFailure(message)


def make_certificate(directory):
    """A self-signed certificate valid for a day, for 127.0.0.1 and localhost, and its key,
    as fullchain.pem and privkey.pem in `directory`. Returns the certificate's path: clients
    trust it as their only authority."""
    directory.mkdir(mode=0o700)
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem")],
        capture_output=True, text=True)
    expect(made.returncode == 0, f"openssl could not make a certificate:\n{made.stderr}")
    return directory / "fullchain.pem"


def client_context(certificate):
    """What a client that trusts only the test's certificate uses: TLS as Python's defaults
    have it, with the host name checked."""
    return ssl.create_default_context(cafile=str(certificate))


def substitute(pattern, replacement, text, expected, what):
    text, count = re.subn(pattern, replacement, text)
    expect(count == expected, f"{SNIPPET}: expected {expected} {what}, found {count}")
    return text


class LocalNginx:
    """nginx serving the copy; `upstreams` replace the snippet's server lines, and `edits`
    are (pattern, replacement, what) applied to the snippet, each matching exactly once.
    `error_level` replaces the level of the main config's error_log. start() and stop(), or
    use it as a context manager. `context` is the SSL context of a client that trusts the
    certificate."""

    def __init__(self, tmp, upstreams, edits=(), error_level=None):
        self.tmp = tmp
        self.tls_port = free_port()
        self.plain_port = free_port()
        while self.plain_port == self.tls_port:
            self.plain_port = free_port()
        self.certificate = make_certificate(tmp / "tls")
        self.context = client_context(self.certificate)
        self.error_log_path = tmp / "error.log"
        self.process = None
        self._write_snippet(upstreams, edits)
        self._write_main(error_level)

    def _write_snippet(self, upstreams, edits):
        text = SNIPPET.read_text()
        # The first server line of the upstream becomes the test's nodes, the others go.
        nodes = "".join(f"    server {address};\n" for address in upstreams)
        text = substitute(r"(?m)^    server shardcast-1:8080;\n", nodes, text, 1,
                          "'server shardcast-1:8080;' line")
        text = substitute(r"(?m)^    server shardcast-\d+:8080;\n", "", text, 2,
                          "further 'server shardcast-N:8080;' lines")
        text = substitute(r"(?m)^(\s*listen )80;", rf"\g<1>127.0.0.1:{self.plain_port};",
                          text, 1, "'listen 80;' line")
        text = substitute(r"(?m)^(\s*listen )443 ssl\b", rf"\g<1>127.0.0.1:{self.tls_port} ssl",
                          text, 1, "'listen 443 ssl' line")
        text = substitute(rf"(?m)^(\s*ssl_certificate(?:_key)? ){re.escape(SHIPPED_TLS_DIR)}",
                          rf"\g<1>{self.tmp}/tls/", text, 2,
                          f"ssl_certificate and ssl_certificate_key lines in {SHIPPED_TLS_DIR}")
        for pattern, replacement, what in edits:
            text = substitute(pattern, replacement, text, 1, what)
        (self.tmp / "shardcast.conf").write_text(text)

    def _write_main(self, error_level):
        # Temporary files under tmp, so nginx needs no root and leaves nothing behind.
        temp_paths = "".join(f"    {kind}_temp_path {self.tmp}/{kind};\n"
                             for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        main = substitute(r"(?m)^\s*include /etc/nginx/shardcast\.conf;\n",
                          temp_paths + f"    include {self.tmp}/shardcast.conf;\n",
                          MAIN_CONF.read_text(), 1, "'include /etc/nginx/shardcast.conf;'")
        main = substitute(r"(?m)^error_log \S+ (\w+);",
                          lambda m: f"error_log {self.error_log_path} {error_level or m[1]};",
                          main, 1, f"top-level error_log line in {MAIN_CONF}")
        (self.tmp / "nginx.conf").write_text(main)

    def command(self, *extra):
        # master_process off: one process as the current user, so no switch to a worker user.
        return ["nginx", "-p", str(self.tmp), "-c", str(self.tmp / "nginx.conf"),
                "-e", str(self.error_log_path),
                "-g", f"pid {self.tmp}/nginx.pid; daemon off; master_process off;", *extra]

    def start(self):
        """Checks the config with `nginx -t`, then starts nginx and waits for both ports."""
        test = subprocess.run(self.command("-t"), capture_output=True, text=True)
        expect(test.returncode == 0, f"nginx -t failed:\n{test.stderr}")
        self.process = Process("nginx", self.command(), str(self.tmp / "nginx.out"))
        try:
            wait_until(self._listening, START_SECONDS,
                       f"nginx to listen on 127.0.0.1:{self.tls_port} and :{self.plain_port}",
                       interval=0.05)
        except BaseException:
            self.stop()
            raise

    def _listening(self):
        if not self.process.running():
            raise TestFailure(f"nginx exited:\n{self.error_log()[-2000:]}")
        return port_open(self.tls_port) and port_open(self.plain_port)

    def stop(self):
        if self.process:
            self.process.stop()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def error_log(self):
        try:
            return self.error_log_path.read_text(errors="replace")
        except OSError:
            return ""
