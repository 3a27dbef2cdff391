"""nginx in front of the cluster test's nodes, on a free port of 127.0.0.1, configured from
a copy of deploy/nginx/shardcast.conf with the nodes' addresses put in, served as plain HTTP:
the test's clients speak ws://, and TLS and the per-address limits are the deploy checks'
subject (tests/deploy/check_nginx*.py). Called from the test's main thread.
"""
import os
import re

from harness.processes import Process, free_port, port_open
from harness.waiting import TestFailure, wait_until

_BLOCK_OPEN = re.compile(r"^\s*(upstream|server)\b[^{;]*\{")
_UPSTREAM_SERVER = re.compile(r"^(\s*)server\s+([^\s;{]+)([^;{]*);\s*(#.*)?$")
_LISTEN = re.compile(r"^(\s*)listen\s+([^\s;]+)([^;]*);\s*(#.*)?$")
_LOG_LINE = re.compile(r"^(\s*)(access_log|error_log)\s[^;]*;\s*(#.*)?$")
# TLS settings, which would load certificates the test does not have, and the per-address
# limits: all 300 clients come from 127.0.0.1, past the connection cap and the upgrade rate.
_DROPPED_IN_SERVER = re.compile(r"^\s*(ssl_\w+|limit_conn|limit_req)\s")


def _top_level_blocks(lines):
    """The snippet as (kind, lines): kind "upstream" or "server" for such a block at the top
    level, None for any other line."""
    depth = 0
    block = None
    for line in lines:
        code = line.split("#", 1)[0]
        opened = _BLOCK_OPEN.match(code) if depth == 0 else None
        if opened:
            block = (opened.group(1), [])
        if block:
            block[1].append(line)
        else:
            yield None, [line]
        depth += code.count("{") - code.count("}")
        if block and depth == 0:
            yield block
            block = None
    if block:
        yield block


def _is_tls_server(lines):
    return any(re.search(r"\sssl\b", m.group(3)) for m in map(_LISTEN.match, lines) if m)


def _plain_server(lines, listen_port):
    """The server block listening on 127.0.0.1:`listen_port` in plain HTTP: its first listen
    keeps its parameters but ssl and http2, further listens (say [::]:443) go, and so do the
    lines _DROPPED_IN_SERVER matches. Returns the lines and how many listens there were."""
    out = []
    listens = 0
    for line in lines:
        listen = _LISTEN.match(line)
        if listen:
            listens += 1
            if listens == 1:
                params = "".join(f" {p}" for p in listen.group(3).split()
                                 if p not in ("ssl", "http2"))
                out.append(f"{listen.group(1)}listen 127.0.0.1:{listen_port}{params};")
        elif not (_DROPPED_IN_SERVER.match(line) or _LOG_LINE.match(line)):
            out.append(line)
    return out, listens


def _nodes_upstream(lines, node_addresses, originals):
    """The upstream block with one server line per node where its first server line was."""
    out = []
    placed = False
    for line in lines:
        server = _UPSTREAM_SERVER.match(line)
        if server and not placed:
            out.extend(f"{server.group(1)}server {address}"
                       f"{originals[min(i, len(originals) - 1)]};"
                       for i, address in enumerate(node_addresses))
            placed = True
        elif not server:
            out.append(line)
    return out


def rewrite_nginx_snippet(text, node_addresses, listen_port):
    """The snippet as the cluster test serves it: its upstream's server lines replaced by
    `node_addresses` (each keeps the parameters of the original line at its position, or of
    the last one); of its servers, only the TLS one (or the only one, in a snippet without
    TLS), made plain HTTP on 127.0.0.1:`listen_port` (the others, such as the redirect from
    port 80, would bind ports the test did not pick); and any log line dropped (the
    generated main config sets those). Returns the text and the number of server lines
    replaced; raises TestFailure when the snippet does not have that shape."""
    blocks = list(_top_level_blocks(text.splitlines()))
    upstreams = [lines for kind, lines in blocks if kind == "upstream"]
    servers = [lines for kind, lines in blocks if kind == "server"]
    tls = [lines for lines in servers if _is_tls_server(lines)]
    served = tls if tls else servers
    originals = [m.group(3).rstrip() for lines in upstreams[:1] for line in lines[1:]
                 if (m := _UPSTREAM_SERVER.match(line))]
    if len(upstreams) != 1 or not originals or len(served) != 1:
        raise TestFailure(
            "the nginx snippet does not have the expected shape (one upstream block with "
            "server lines; one server block with ssl on its listen, or just one server "
            f"block): found {len(upstreams)} upstream block(s), {len(originals)} server "
            f"line(s), {len(servers)} server block(s), {len(tls)} with ssl")

    out = []
    for kind, lines in blocks:
        if kind == "upstream":
            out.extend(_nodes_upstream(lines, node_addresses, originals))
        elif kind == "server" and lines is served[0]:
            plain, listens = _plain_server(lines, listen_port)
            if listens < 1:
                raise TestFailure("the nginx snippet's server block has no listen line")
            out.extend(plain)
        elif kind is None and not _LOG_LINE.match(lines[0]):
            out.extend(lines)
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
