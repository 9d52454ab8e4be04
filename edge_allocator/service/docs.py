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


class StaticPages:
    """A page and its assets under ``/<prefix>``, read from the package's
    ``static/<folder>/`` once and gzipped once (/docs, and the explorer under /ui/).

    ``slash``: the page lives at ``/<prefix>/`` (its relative URLs then resolve inside
    the folder) and ``/<prefix>`` redirects there; otherwise the reverse (/docs).
    """

    def __init__(self, prefix: str, folder: str, assets: dict[str, str], page: bytes,
                 slash: bool = False, headers: dict[str, str] | None = None) -> None:
        self.prefix, self.folder, self.assets, self.page = prefix, folder, assets, page
        self.slash = slash
        self.headers = headers or {}
        self._plain: dict[str, bytes] = {}
        self._gzipped: dict[str, bytes] = {}

    def get(self, path: str, raw_path: str, accept_encoding: str) -> Page | None:
        """``path`` without, ``raw_path`` with its trailing slash; None: not ours."""
        root = "/" + self.prefix
        if path == root:
            if raw_path.endswith("/") != self.slash:  # relative to the page's own URL
                target = f"{self.prefix}/" if self.slash else f"../{self.prefix}"
                return Page(308, b"", {"location": target})
            return self._page("", "text/html; charset=utf-8", accept_encoding)
        name = path.removeprefix(root + "/")
        if path.startswith(root + "/") and name in self.assets:
            return self._page(name, self.assets[name], accept_encoding)
        return None

    def _page(self, name: str, media: str, accept_encoding: str) -> Page:
        body = self._plain.get(name)
        if body is None:
            body = self._plain[name] = self.page if not name else asset(name, self.folder)
        headers = {"content-type": media, "cache-control": f"public, max-age={CACHE_S}",
                   **self.headers}
        if media.startswith(_COMPRESSIBLE) and "gzip" in accept_encoding:
            packed = self._gzipped.get(name)
            if packed is None:
                packed = self._gzipped[name] = gzip.compress(body, compresslevel=6)
            headers.update({"content-encoding": "gzip", "vary": "accept-encoding"})
            return Page(200, packed, headers)
        return Page(200, body, headers)


def docs_pages() -> StaticPages:
    return StaticPages("docs", "swagger-ui", ASSETS, PAGE.encode())


def asset(name: str, folder: str = "swagger-ui") -> bytes:
    """A shipped file's bytes (``static/<folder>/<name>``), as shipped."""
    return (resources.files("edge_allocator.service") / "static" / folder / name).read_bytes()
