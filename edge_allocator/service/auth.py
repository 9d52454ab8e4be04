"""Optional bearer-token auth for every endpoint."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from edge_allocator.schema import RequestError


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

    def check(self, authorization: str | None) -> None:
        if not self._tokens:
            return
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip().encode()
        ok = False
        for t in self._tokens:  # no early exit: timing does not reveal which token matched
            ok |= hmac.compare_digest(given, t)
        if scheme.lower() != "bearer" or not ok:
            raise RequestError(401, "missing or invalid bearer token")
