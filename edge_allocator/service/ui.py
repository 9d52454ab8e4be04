"""GET /ui/: the decision explorer, a page the operator opens first.

Plain HTML, CSS and JavaScript shipped in the package (``static/ui/``): no build step, no
third-party library, nothing fetched from anywhere but this service (the graph and the
charts are inline SVG). Like /docs the files are public and hold no data; the page asks
for the bearer token and sends it with every API call it makes. The Content-Security-
Policy holds the page to that: scripts, styles and connections to this origin only.
"""

from __future__ import annotations

from edge_allocator.service.docs import StaticPages, asset

#: The shipped files under /ui/, with their media types.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def ui_pages() -> StaticPages:
    return StaticPages("ui", "ui", ASSETS, asset("index.html", "ui"), slash=True,
                       headers={"content-security-policy": CSP,
                                "x-content-type-options": "nosniff"})
