"""Optional bearer-token auth for every endpoint."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from edge_allocator.schema import RequestError


def fingerprint(token: bytes) -> str:
    """A token's name for quota buckets: 12 hex digits of its sha256 (never the value)."""
    return hashlib.sha256(token).hexdigest()[:12]


class TokenAuth:
    """Tokens come from an environment variable (comma separated) and/or a secret file
    (one per line); none configured means open. Tokens are compared in constant time
    and never logged or echoed."""

    def __init__(self, env_var: str | None = None, token_file: Path | None = None):
        tokens: list[str] = []
        if env_var and os.environ.get(env_var):
            tokens += [t.strip() for t in os.environ[env_var].split(",") if t.strip()]
        if token_file is not None:
            tokens += [t.strip() for t in Path(token_file).read_text().splitlines() if t.strip()]
        self._tokens = [t.encode() for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def fingerprints(self) -> set[str]:
        return {fingerprint(t) for t in self._tokens}

    def check(self, authorization: str | None) -> str | None:
        """Raises 401 unless ``authorization`` carries a configured token; returns that
        token's fingerprint (None while the service is open)."""
        if not self._tokens:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip().encode()
        matched: bytes | None = None
        for t in self._tokens:  # no early exit: timing does not reveal which token matched
            if hmac.compare_digest(given, t):
                matched = t
        if scheme.lower() != "bearer" or matched is None:
            raise RequestError(401, "missing or invalid bearer token")
        return fingerprint(matched)
