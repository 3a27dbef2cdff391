#!/usr/bin/python3
"""Runs the README's backend example, as it stands, against a real server (ctest
ReadmeExamplePublishesToAConnectedClient).

    check_readme_example.py --shardcast <binary> --source <dir>

The example is the README's first ```python block. The test gives it what `scripts/serve`
would: a working directory holding .dev/hmac_secret and .dev/api_keys, and a server secured
with them (on a free port of 127.0.0.1, which replaces 127.0.0.1:8080 in the block). With
alice connected, it runs the block, then checks that:
  - what the block prints is what its last comment says it prints;
  - alice received the data the block published;
  - the token the block minted connects as `GET /ws?token=<token>`, as its comment says.
Needs PyJWT (Debian: python3-jwt), which the example imports. Exits 1 saying what differed.
"""
import argparse
import base64
import contextlib
import io
import os
import re
import secrets
import sys
import tempfile
import urllib.parse

# The harness is imported from the source tree, which must not collect __pycache__.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                "support"))
from harness.processes import Process  # noqa: E402
from harness.raw_websocket import OP_TEXT, RawWebSocket, upgrade_answer  # noqa: E402
from harness.waiting import TestFailure, log, wait_until  # noqa: E402

PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
DOCUMENTED_ADDRESS = "127.0.0.1:8080"


def readme_example(source):
    with open(os.path.join(source, "README.md"), encoding="utf-8") as f:
        match = PYTHON_BLOCK.search(f.read())
    if not match:
        raise TestFailure("README.md has no ```python block")
    code = match.group(1)
    if DOCUMENTED_ADDRESS not in code:
        raise TestFailure(f"the README example does not publish to {DOCUMENTED_ADDRESS}, the "
                          "address scripts/serve listens on; this test cannot redirect it")
    return code


def promised_output(code):
    """What the block's last line says it prints: the comment after its print(...)."""
    last = code.rstrip("\n").split("\n")[-1]
    match = re.match(r"\s*print\(.*\)\s*#\s*(.+)$", last)
    if not match:
        raise TestFailure(f"the README example should end in print(...)  # <what it prints>, "
                          f"not {last!r}")
    return match.group(1).strip()


def start_server(binary, workdir):
    dev = os.path.join(workdir, ".dev")
    argv = [binary, "-s", "listen=127.0.0.1:0", "-s", "log.summary_interval=0",
            "-s", f"auth.jwt.hmac_secret_file={dev}/hmac_secret",
            "-s", f"auth.api_keys_file={dev}/api_keys"]
    server = Process("shardcast", argv, os.path.join(workdir, "shardcast.log"))
    listening = re.compile(r"listening on 127\.0\.0\.1:(\d+) with \d+ shards")

    def port():
        match = listening.search(server.log())
        if match:
            return int(match.group(1))
        if not server.running():
            raise TestFailure(f"shardcast exited before listening:\n{server.log_tail()}")
        return None
    try:
        return server, wait_until(port, 30, "shardcast to log its port")
    except BaseException:
        server.stop()
        raise


def run_example(code, workdir):
    """Runs the block in workdir, as `python3` would run it from the repository root; returns
    what it printed and the names it defined."""
    names = {"__name__": "__main__"}
    printed = io.StringIO()
    here = os.getcwd()
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "README.md (python example)", "exec"), names)
    finally:
        os.chdir(here)
    return printed.getvalue().strip(), names


def check(args, workdir):
    code = readme_example(args.source)
    promised = promised_output(code)
    # What scripts/serve writes: a base64 secret without a newline, and one key per line.
    os.makedirs(os.path.join(workdir, ".dev"))
    secret = base64.b64encode(secrets.token_bytes(48)).decode()
    with open(os.path.join(workdir, ".dev", "hmac_secret"), "w") as f:
        f.write(secret)
    with open(os.path.join(workdir, ".dev", "api_keys"), "w") as f:
        f.write(f"dev-{secrets.token_urlsafe(24)}\n")

    server, port = start_server(args.shardcast, workdir)
    try:
        import jwt  # PyJWT, as the example itself
        alice = RawWebSocket(port, "alice", token=jwt.encode(
            {"sub": "alice", "exp": 2**31 - 1}, secret, algorithm="HS256"))
        log(f"shardcast on 127.0.0.1:{port}, alice connected; running the README example")
        printed, names = run_example(code.replace(DOCUMENTED_ADDRESS, f"127.0.0.1:{port}"),
                                     workdir)
        if printed != promised:
            raise TestFailure(f"the README example printed {printed!r}; its comment says "
                              f"{promised!r}")
        opcode, payload = alice.read_message(timeout=10)
        if opcode != OP_TEXT or payload != b'{"hello":"world"}':
            raise TestFailure(f"alice received opcode {opcode} {payload!r}, expected the "
                              "example's data as a text frame, {\"hello\":\"world\"}")
        token = names.get("token")
        if not isinstance(token, str):
            raise TestFailure(f"the README example left no token string, but {token!r}")
        status, head = upgrade_answer(port, f"/ws?token={urllib.parse.quote(token)}", {})
        if status != 101:
            raise TestFailure(f"the example's token did not connect: {head!r}")
        log("the example published to alice, printed what it says, and its token connects")
        alice.abort()
    finally:
        exit_code = server.stop()
    if exit_code != 0:
        raise TestFailure(f"shardcast exited {exit_code} on SIGTERM:\n{server.log_tail()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shardcast", required=True, help="the shardcast binary")
    parser.add_argument("--source", required=True, help="the repository root")
    args = parser.parse_args()
    args.shardcast = os.path.abspath(args.shardcast)
    args.source = os.path.abspath(args.source)
    with tempfile.TemporaryDirectory(prefix="shardcast-readme-example-") as workdir:
        try:
            check(args, workdir)
        except TestFailure as e:
            print(f"FAILED: {e}", file=sys.stderr)
            return 1
    print("PASS: the README's backend example publishes to a connected client")
    return 0


if __name__ == "__main__":
    sys.exit(main())
