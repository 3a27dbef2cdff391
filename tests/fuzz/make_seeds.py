#!/usr/bin/python3
"""Writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/) and the test-only
keys the token seeds are signed with (tests/fuzz/keys/). Run once; the output is committed.

    tests/fuzz/make_seeds.py

A new RSA-2048 and EC P-256 key pair is made with the openssl CLI each run, the public halves
are kept and the private halves are thrown away, so the committed tokens verify only against
the committed public keys. The HMAC secret and the fuzzers' fixed clock are the ones in
fuzz_support.hpp. Seeds are small and each shows one thing the parser under test accepts or
refuses; the input layout of each target (its first bytes choose a mode) is described at the
top of its source. Needs /usr/bin/python3 with PyJWT (Debian python3-jwt) and openssl.
"""
import base64
import json
import os
import shutil
import struct
import subprocess
import tempfile

import jwt

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
KEYS = os.path.join(HERE, "keys")
REPO = os.path.dirname(os.path.dirname(HERE))

# As fuzz_support.hpp has them.
NOW = 1_800_000_000
HMAC_SECRET = "fuzz-only-hmac-secret-not-a-real-one-0123456789"
AUDIENCE = "shardcast-fuzz"
ISSUER = "https://issuer.fuzz.invalid"
API_KEY = "fuzz-api-key"

written = {}


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    path = os.path.join(CORPUS, target, name)
    with open(path, "wb") as f:
        f.write(data)
    written[target] = written.get(target, 0) + 1


# --- keys and tokens ------------------------------------------------------------------------

def make_keys(scratch):
    """PEM private keys in scratch, public keys in keys/. Returns {kind: private PEM}."""
    os.makedirs(KEYS, exist_ok=True)
    private = {}
    for kind, options in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                          ("ec", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])):
        key = os.path.join(scratch, f"{kind}.pem")
        subprocess.run(["openssl", "genpkey", *options, "-out", key], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out",
                        os.path.join(KEYS, f"{kind}_public.pem")], check=True)
        with open(key, "rb") as f:
            private[kind] = f.read()
    return private


def claims(sub="alice", strict=True, **extra):
    c = {"sub": sub, "iat": NOW - 60, "exp": NOW + 3600}
    if strict:
        c.update(aud=AUDIENCE, iss=ISSUER)
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def token_seeds(private):
    """(name, mode byte, token) for the verbatim mode of connect_token_fuzz, and the tokens
    http_request_fuzz uses."""
    hs = lambda c, alg="HS256": jwt.encode(c, HMAC_SECRET, algorithm=alg)
    rs = lambda c, alg="RS256": jwt.encode(c, private["rsa"], algorithm=alg)
    es = lambda c: jwt.encode(c, private["ec"], algorithm="ES256")
    unsigned = lambda header, c: (b64(json.dumps(header).encode()) + b"." +
                                  b64(json.dumps(c).encode()) + b".").decode()
    # Mode byte of connect_token_fuzz: 'T' checks with the strict verifier (audience, issuer,
    # exp required), 't' with the lenient one.
    return [
        ("hs256_strict", "T", hs(claims())),
        ("hs384_strict", "T", hs(claims(), "HS384")),
        ("hs512_strict", "T", hs(claims(), "HS512")),
        ("rs256_strict", "T", rs(claims())),
        ("rs512_strict", "T", rs(claims(), "RS512")),
        ("es256_strict", "T", es(claims())),
        ("hs256_info_lenient", "t", hs(claims(strict=False, info={"plan": "pro", "n": [1, 2]}))),
        ("hs256_no_exp_lenient", "t", hs(claims(strict=False, exp=None))),
        ("hs256_aud_list_strict", "T", hs(claims(aud=["other", AUDIENCE]))),
        ("hs256_expired_strict", "T", hs(claims(exp=NOW - 3600))),
        ("hs256_nbf_future_strict", "T", hs(claims(nbf=NOW + 600))),
        ("hs256_bad_sub_strict", "T", hs(claims(sub="no spaces allowed"))),
        ("hs256_wrong_secret_strict", "T",
         jwt.encode(claims(), "another-secret-of-at-least-32-bytes!", algorithm="HS256")),
        ("rs256_signed_as_hs256", "T", hs(claims(), "HS256").rsplit(".", 1)[0] + "." +
         rs(claims()).rsplit(".", 1)[1]),
        ("alg_none", "T", unsigned({"alg": "none", "typ": "JWT"}, claims())),
    ]


def connect_token_corpus(tokens):
    for name, mode, token in tokens:
        write("connect_token_fuzz", name, mode + token)
    # 'H' + alg digit: the rest is the claims, signed here with the HMAC secret.
    write("connect_token_fuzz", "signed_claims_hs256", "H0" + json.dumps(claims()))
    write("connect_token_fuzz", "signed_claims_hs512_info",
          "H2" + json.dumps(claims(info={"role": "viewer"})))
    write("connect_token_fuzz", "signed_claims_lenient_numbers",
          "h1" + json.dumps(claims(strict=False, exp=1.8e9 + 0.5, nbf=NOW - 1, iat=-5)))
    write("connect_token_fuzz", "signed_claims_not_object", "H0[1,2,3]")
    # 'S': header and claims on two lines, both the fuzzer's, signed with the HMAC secret.
    write("connect_token_fuzz", "split_header_claims",
          "S" + json.dumps({"alg": "HS384", "typ": "JWT", "kid": "k1"}) + "\n" +
          json.dumps(claims()))
    # 'R': header, claims and signature on three lines, base64url-encoded as given.
    write("connect_token_fuzz", "raw_es256_bad_signature",
          "R" + json.dumps({"alg": "ES256"}) + "\n" + json.dumps(claims()) + "\n" + "x" * 64)
    write("connect_token_fuzz", "raw_rs256_bad_signature",
          "r" + json.dumps({"alg": "RS256"}) + "\n" + json.dumps(claims(strict=False)) + "\n" +
          "s" * 256)


# --- frames ---------------------------------------------------------------------------------

KEY = bytes([0x37, 0xFA, 0x21, 0x3D])


def frame(opcode, payload=b"", fin=True, masked=True, rsv=0, length=None, width=None):
    """One client frame. width forces the 16-bit (2) or 64-bit (8) length form."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mask = 0x80 if masked else 0
    if width is None:
        width = 0 if n < 126 else 2 if n <= 0xFFFF else 8
    if width == 0:
        head += bytes([mask | n])
    elif width == 2:
        head += bytes([mask | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mask | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def frame_reader_corpus():
    # Byte 0: max_message_size (low two bits: 125, 1000, 64 KiB, 1 MiB) and when to discard
    # messages (high six bits: never, before the first byte, or inside the handler of event
    # discard - 2; also the read before which a third reader starts discarding). Byte 1: 0 feeds
    # the rest whole, anything else seeds the sizes of the reads it is split into.
    def seed(name, frames, limit=2, chunks=0, discard=0):
        write("frame_reader_fuzz", name, bytes([discard << 2 | limit, chunks]) + b"".join(frames))

    seed("text", [frame(TEXT, "hello")])
    seed("binary_split_reads", [frame(BINARY, bytes(range(40)))], chunks=3)
    seed("fragmented_text_with_ping",
         [frame(TEXT, "hel", fin=False), frame(PING, "p"), frame(CONT, "lo")], chunks=7)
    seed("fragmented_utf8_split_code_point",
         [frame(TEXT, "price: \u20ac".encode()[:-1], fin=False),
          frame(CONT, "price: \u20ac".encode()[-1:])], chunks=1)
    seed("fragmented_binary_three", [frame(BINARY, "a" * 30, fin=False),
                                     frame(CONT, "b" * 30, fin=False), frame(CONT, "c" * 30)],
         chunks=200)
    seed("ping_pong", [frame(PING, "are you there"), frame(PONG, "")])
    seed("close_with_reason", [frame(TEXT, "last"), frame(CLOSE, b"\x03\xe8bye")])
    seed("close_empty", [frame(CLOSE)])
    seed("close_1005_refused", [frame(CLOSE, b"\x03\xed")])
    seed("close_one_byte", [frame(CLOSE, b"\x03")])
    seed("length16", [frame(TEXT, "x" * 300)], chunks=9)
    seed("length64_small", [frame(BINARY, "y" * 10, width=8)])
    seed("length64_top_bit", [frame(BINARY, length=1 << 63, width=8)])
    seed("too_big_for_125", [frame(TEXT, "z" * 200)], limit=0)
    seed("too_big_fragments", [frame(TEXT, "a" * 100, fin=False), frame(CONT, "b" * 100)],
         limit=0)
    seed("invalid_utf8", [frame(TEXT, b"\xc3\x28")])
    seed("unmasked", [frame(TEXT, "hi", masked=False)])
    seed("reserved_bits", [frame(TEXT, "hi", rsv=0x40)])
    seed("unknown_opcode", [frame(0x3, "hi")])
    seed("continuation_first", [frame(CONT, "hi")])
    seed("fragmented_control", [frame(PING, "p", fin=False)])
    seed("control_too_long", [frame(PING, "p" * 126)])
    seed("new_message_inside_fragments", [frame(TEXT, "a", fin=False), frame(TEXT, "b")])
    seed("many_messages", [frame(TEXT, f"m{i}") for i in range(8)] + [frame(CLOSE, b"\x0f\xa0")],
         limit=3, chunks=5)
    seed("discard_from_the_start", [frame(TEXT, "skipped", fin=False), frame(PING, "p"),
                                    frame(CONT, "also skipped"), frame(CLOSE, b"\x03\xe8")],
         chunks=3, discard=1)
    seed("discard_after_first_message", [frame(TEXT, "kept"), frame(BINARY, "x" * 200, fin=False),
                                          frame(PING, "still answered"), frame(CONT, "y" * 200),
                                          frame(CLOSE, b"\x03\xe8closing")],
         chunks=11, discard=2)
    seed("discard_inside_fragments", [frame(TEXT, "a" * 50, fin=False), frame(PING, "p" * 100),
                                      frame(CONT, "b" * 50, fin=False), frame(PONG, ""),
                                      frame(CONT, "c"), frame(CLOSE)],
         chunks=2, discard=3)


# --- HTTP requests --------------------------------------------------------------------------

def request(method, target, headers=(), body=b""):
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {target} HTTP/1.1", "Host: push.example.com", *headers]
    if body and not any(h.lower().startswith("transfer-encoding") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def upgrade(target, headers=()):
    return request("GET", target, ["Connection: Upgrade", "Upgrade: websocket",
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                   "Sec-WebSocket-Version: 13", *headers])


def http_request_corpus(tokens):
    # Byte 0 chooses the mode (its value modulo 8) and the authenticator (upper case: the
    # strict one with an API key and JWT keys; lower case: anonymous clients and an open API).
    # h: HTTP requests, each read given all it asks for; i: the same in pieces cut by a
    # generator byte 1 seeds; s, b, n, d: the
    # body of send, broadcast, batch and disconnect; u: the fields of an upgrade request, one
    # per line (method, target, host, Connection, Upgrade, key, version, origin,
    # authorization, protocols).
    tok = {name: token for name, _, token in tokens}
    auth = [f"Authorization: Bearer {API_KEY}"]
    seeds = {
        "get_healthz": ("h", request("GET", "/healthz")),
        "head_readyz": ("h", request("HEAD", "/readyz")),
        "get_metrics": ("h", request("GET", "/metrics")),
        "get_stats": ("H", request("GET", "/api/v1/stats", auth)),
        "get_client": ("H", request("GET", "/api/v1/clients/alice", auth)),
        "get_unknown": ("h", request("GET", "/nowhere?x=%ff")),
        "post_send": ("H", request("POST", "/api/v1/send", auth,
                                   '{"to":"alice","data":{"text":"hi","n":1}}')),
        "post_broadcast": ("h", request("POST", "/api/v1/broadcast", [],
                                        '{"data":"to all","except":"bob"}')),
        "post_batch_chunked": ("h", request(
            "POST", "/api/v1/batch", ["Transfer-Encoding: chunked"],
            b'1a\r\n{"to":"alice","data":"x"}\n\r\n14\r\n{"to":"*","data":1}\n\r\n0\r\n\r\n')),
        "post_disconnect": ("H", request("POST", "/api/v1/disconnect", auth,
                                         '{"to":"alice","code":4000,"reason":"bye"}')),
        "put_send_405": ("h", request("PUT", "/api/v1/send", [], "{}")),
        "pipelined": ("h", request("GET", "/healthz") +
                      request("POST", "/api/v1/send", [], '{"to":"a","data":"1"}') +
                      request("GET", "/api/v1/clients/a")),
        "expect_continue": ("h", request("POST", "/api/v1/send", ["Expect: 100-continue"],
                                         '{"to":"a","data":[1,2]}')),
        "http10": ("h", b"GET /healthz HTTP/1.0\r\n\r\n"),
        "upgrade_query_token": ("H", upgrade("/ws?token=" + tok["hs256_strict"])),
        "upgrade_bearer_rs256": ("H", upgrade("/ws/alice",
                                              ["Authorization: Bearer " + tok["rs256_strict"]])),
        "upgrade_protocol_es256": ("H", upgrade("/ws", [
            "Sec-WebSocket-Protocol: shardcast.v1, shardcast.token." + tok["es256_strict"],
            "Origin: https://app.fuzz.invalid"])),
        "upgrade_two_tokens": ("H", upgrade("/ws?token=" + tok["hs256_strict"],
                                            ["Authorization: Bearer " + tok["hs256_strict"]])),
        "upgrade_anonymous": ("h", upgrade("/ws/bob", ["Origin: http://push.example.com:80"])),
        "upgrade_bad_origin": ("H", upgrade("/ws/alice?token=" + tok["hs256_strict"],
                                            ["Origin: https://evil.example"])),
        "upgrade_version_8": ("h", request("GET", "/ws/bob", [
            "Connection: keep-alive, Upgrade", "Upgrade: websocket",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 8"])),
    }
    for name, (mode, data) in seeds.items():
        write("http_request_fuzz", name, mode.encode() + data)
    # A head longer than the session's first read (4 KiB): it must be read whole into the
    # session's own buffer (async_read_until once read the rest into a copy).
    write("http_request_fuzz", "head_over_first_read",
          b"h" + request("GET", "/healthz", ["X-Padding: " + "a" * 5000]))
    # A transfer coding that is not UTF-8: the 501 that names it must still be JSON.
    write("http_request_fuzz", "transfer_coding_not_utf8", b"h" + request(
        "POST", "/api/v1/send", ["Transfer-Encoding: gzip"], "x").replace(b"gzip", b"gz\xf4p"))
    write("http_request_fuzz", "split_send", b"i\x07" + request(
        "POST", "/api/v1/send", [], '{"to":"alice","data":"split across reads"}'))
    write("http_request_fuzz", "split_chunked", b"i\x01" + request(
        "POST", "/api/v1/batch", ["Transfer-Encoding: chunked"],
        b'5\r\n{"to"\r\n10\r\n:"a","data":"x"}\r\n0\r\n\r\n'))
    bodies = {
        "send_string": ("s", '{"to":"alice","data":"hello"}'),
        "send_nested": ("s", '{"data":{"a":[1,2.5,-3e4,true,null,"\\u00e9"]},"to":"a.b@c:d"}'),
        "send_bad_to": ("s", '{"to":"","data":1}'),
        "broadcast_except": ("b", '{"data":"x","except":"bob"}'),
        "broadcast_unknown_field": ("b", '{"data":"x","to":"bob"}'),
        "batch_lines": ("n", '{"to":"a","data":1}\n{"to":"*","data":"all"}\r\n\n'
                             '  \t\n{"to":"b c","data":2}\nnot json\n[1]\n'),
        "batch_empty": ("n", "\n\n"),
        "disconnect_full": ("d", '{"to":"alice","code":1000,"reason":"maintenance"}'),
        "disconnect_bad_code": ("d", '{"to":"alice","code":1001}'),
        "disconnect_wrong_type": ("d", '{"to":"alice","reason":5}'),
    }
    for name, (mode, body) in bodies.items():
        write("http_request_fuzz", name, mode + body)
    fields = {
        "view_query_token": ["GET", "/ws?token=" + tok["hs256_strict"], "push.example.com",
                             "Upgrade", "websocket", "dGhlIHNhbXBsZSBub25jZQ==", "13", "", "",
                             "shardcast.v1"],
        "view_origin_default_port": ["GET", "/ws/alice", "push.example.com:443", "upgrade",
                                     "WebSocket", "dGhlIHNhbXBsZSBub25jZQ==", "13",
                                     "https://push.example.com", "Bearer " + tok["hs256_strict"],
                                     ""],
    }
    write("http_request_fuzz", "view_query_token", "U" + "\n".join(fields["view_query_token"]))
    write("http_request_fuzz", "view_origin_default_port",
          "U" + "\n".join(fields["view_origin_default_port"]))
    # The Upgrade field last, matching but for case, at the end of the input: Beast 1.81's
    # iequals read the byte after it (see transport/ascii.hpp).
    write("http_request_fuzz", "view_upgrade_field_last",
          "U" + "\n".join(["GET", "/ws/alice", "push.example.com:443", "upgrade", "WebSocket"]))
    write("http_request_fuzz", "view_anonymous",
          "u" + "\n".join(["GET", "/ws/carol", "h", "Upgrade", "websocket",
                           "AAAAAAAAAAAAAAAAAAAAAA==", "13"]))


# --- config files ---------------------------------------------------------------------------

def config_corpus():
    # The YAML file, then optionally a NUL and NUL-separated key=value overrides (-s).
    with open(os.path.join(REPO, "deploy", "shardcast.yaml"), "rb") as f:
        write("config_fuzz", "deploy_shardcast_yaml", f.read())
    keys = "tests/fuzz/keys"  # the fuzzers run from the repository root
    seeds = {
        "empty": "",
        "minimal": "listen: 127.0.0.1:0\nshards: 2\n",
        "flow_style": "{listen: '[::1]:9000', session: {overflow: drop_oldest, "
                      "on_duplicate: allow, max_per_client: 3}}\n",
        "sizes_and_durations": "session:\n  buffer_limit: 2MiB\n  send_time_limit: 250ms\n"
                               "  heartbeat_interval: 5m\n  heartbeat_timeout: 1h\n"
                               "  max_message_size: 125\n  socket_send_buffer: 64KB\n"
                               "  write_delay: 1s\nhttp: {max_body: 1GB, threads: 64}\n",
        "auth_keys": "auth:\n  api_keys: [k1, k2]\n  insecure_api: false\n"
                     "  anonymous_clients: true\n  allowed_origins: ['https://a.example:8443']\n"
                     "  jwt:\n    hmac_secret: '" + HMAC_SECRET + "'\n"
                     f"    public_keys: [{keys}/rsa_public.pem, {keys}/ec_public.pem]\n"
                     "    audience: aud\n    issuer: iss\n    leeway: 5m\n    require_exp: false\n",
        "public_key_not_pem": f"auth:\n  jwt:\n    public_keys: [{keys}/../CMakeLists.txt]\n",
        "cluster": "cluster:\n  nats:\n    url: 'nats://a:4222, nats://b'\n"
                   "    reconnect_wait: 50ms\n    reconnect_wait_max: 10s\n"
                   "  node: node-1\n  subject_prefix: acme.push\n  upstream: true\n",
        "metrics_and_log": "metrics: {enabled: false, listen: '0.0.0.0:9100'}\n"
                           "log: {level: debug, summary_interval: 0}\nshutdown:\n"
                           "  drain_timeout: 0\n",
        "anchors": "session:\n  buffer_limit: &size 2MiB\nhttp:\n  max_body: *size\n",
        "anchor_in_section": "session: &s\n  overflow: terminate\nhttp: *s\n",
        "dotted_key": "session.buffer_limit: 1MiB\n",
        "duplicate_key": "shards: 1\nshards: 2\n",
        "complex_key": "? [a, b]\n: 1\n",
        "not_a_map": "- listen\n- shards\n",
        "wrong_types": "session: [1, 2]\nhttp:\n  threads: {a: 1}\n",
        "out_of_range": "shards: 100000\nsession:\n  buffer_limit: 18446744073709551616\n",
        "heartbeat_relation": "session: {heartbeat_interval: 60s, heartbeat_timeout: 60s}\n",
        "bad_yaml": "session: {buffer_limit: [1MiB\n",
        "tags_and_nulls": "listen: !!str 0.0.0.0:1\nsession: ~\ncluster:\n  node:\n",
    }
    for name, text in seeds.items():
        write("config_fuzz", name, text)
    write("config_fuzz", "overrides", b"listen: 0.0.0.0:1\n\0session.buffer_limit=2MiB\0"
                                      b"auth.api_keys=a,b\0auth.allowed_origins=\0shards=3")
    write("config_fuzz", "override_bad", b"\0nodots\0session..x=1")


def main():
    for target in ("frame_reader_fuzz", "http_request_fuzz", "connect_token_fuzz",
                   "config_fuzz"):
        shutil.rmtree(os.path.join(CORPUS, target), ignore_errors=True)
        os.makedirs(os.path.join(CORPUS, target))
    with tempfile.TemporaryDirectory() as scratch:
        tokens = token_seeds(make_keys(scratch))
    connect_token_corpus(tokens)
    frame_reader_corpus()
    http_request_corpus(tokens)
    config_corpus()
    for target, n in sorted(written.items()):
        print(f"{target}: {n} seeds")


if __name__ == "__main__":
    main()
