"""The cluster test's credentials: a random HMAC secret the nodes verify connect tokens with
and a random API key the publishers present, each in a file of the work directory that the
nodes' configuration names, and the connect tokens minted from them (PyJWT, HS256), as a
backend would mint them. Any thread may mint.
"""
import json
import os
import secrets
import time

import jwt

# Longer than the test, so no session of it reaches its token's exp.
TOKEN_LIFETIME = 3600


def _write_private(path, text):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)


class Credentials:
    def __init__(self, workdir):
        # 48 random bytes as 64 URL-safe characters: over the 32 bytes HS256 needs, and no
        # trailing newline for the server to strip.
        self.secret = secrets.token_urlsafe(48)
        self.api_key = secrets.token_urlsafe(32)
        self.secret_file = os.path.join(workdir, "jwt-hmac-secret")
        self.api_keys_file = os.path.join(workdir, "api-keys")
        _write_private(self.secret_file, self.secret)
        _write_private(self.api_keys_file, f"# publishers of the cluster test\n{self.api_key}\n")

    def auth_config(self):
        """The auth section of the nodes' configuration: the secure way, both from files."""
        return {"jwt": {"hmac_secret_file": self.secret_file},
                "api_keys_file": self.api_keys_file}

    def token(self, sub, info=None, secret=None, indented=False):
        """A connect token for `sub`, expiring in TOKEN_LIFETIME seconds, with an `info` claim
        when given. `secret` signs it instead of the nodes' secret (a forged token).
        `indented` writes the claims as indented JSON, so a compact info the server passes
        on is its own serialisation, not a copy of ours."""
        claims = {"sub": sub, "exp": int(time.time()) + TOKEN_LIFETIME}
        if info is not None:
            claims["info"] = info
        key = secret or self.secret
        if indented:
            return jwt.api_jws.encode(json.dumps(claims, indent=2).encode(), key,
                                      algorithm="HS256")
        return jwt.encode(claims, key, algorithm="HS256")
