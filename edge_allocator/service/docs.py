"""GET /docs: interactive API documentation (Swagger UI) over /openapi.json.

Every asset is vendored in the package (``static/swagger-ui/``: swagger-ui-dist
5.35.0 from the npm registry, Apache-2.0, its LICENSE and NOTICE beside it), so the page
fetches nothing from anywhere but this service: no CDN at run time, and the spec
validator badge (which would call validator.swagger.io) is off. URLs are relative, so
the page works under any route prefix; ``/docs/`` redirects to ``/docs`` for that.
"""

from __future__ import annotations

import gzip
from importlib import resources
from typing import NamedTuple

SWAGGER_UI_VERSION = "5.35.0"
#: The vendored files served under /docs/, with their media types.
ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",
}
_COMPRESSIBLE = ("text/", "application/json")
CACHE_S = 3600

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Edge Allocator API</title>
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
<link rel="stylesheet" href="docs/swagger-ui.css">
<style>
#token-bar { font: 14px sans-serif; padding: 8px 20px; border-bottom: 1px solid #ddd; }
</style>
</head>
<body>
<div id="token-bar">
<label>Bearer token, if the service requires one:
<input id="token" type="password" size="40" autocomplete="off"></label>
<button id="use-token" type="button">Use</button>
</div>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
const KEY = "edge-allocator-token";
function show() {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    requestInterceptor: (req) => {
      const token = sessionStorage.getItem(KEY);
      if (token) { req.headers.Authorization = "Bearer " + token; }
      return req;
    },
  });
}
document.getElementById("use-token").onclick = () => {
  sessionStorage.setItem(KEY, document.getElementById("token").value);
  show();
};
show();
</script>
</body>
</html>
"""


class Page(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


class DocsPages:
    """The page and its assets, read from the package once and gzipped once."""

    def __init__(self) -> None:
        self._plain: dict[str, bytes] = {}
        self._gzipped: dict[str, bytes] = {}

    def get(self, path: str, raw_path: str, accept_encoding: str) -> Page | None:
        """``path`` without, ``raw_path`` with its trailing slash; None: not a docs URL."""
        if path == "/docs":
            if raw_path.endswith("/"):
                return Page(308, b"", {"location": "../docs"})
            return self._page("", "text/html; charset=utf-8", accept_encoding)
        name = path.removeprefix("/docs/")
        if path.startswith("/docs/") and name in ASSETS:
            return self._page(name, ASSETS[name], accept_encoding)
        return None

    def _page(self, name: str, media: str, accept_encoding: str) -> Page:
        body = self._plain.get(name)
        if body is None:
            body = self._plain[name] = PAGE.encode() if not name else asset(name)
        headers = {"content-type": media, "cache-control": f"public, max-age={CACHE_S}"}
        if media.startswith(_COMPRESSIBLE) and "gzip" in accept_encoding:
            packed = self._gzipped.get(name)
            if packed is None:
                packed = self._gzipped[name] = gzip.compress(body, compresslevel=6)
            headers.update({"content-encoding": "gzip", "vary": "accept-encoding"})
            return Page(200, packed, headers)
        return Page(200, body, headers)


def asset(name: str) -> bytes:
    """A vendored file's bytes, as shipped."""
    return (resources.files("edge_allocator.service") / "static" / "swagger-ui" / name
            ).read_bytes()
