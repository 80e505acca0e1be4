"""The operator console (CONTRACT.md §10): `GET /admin/` and its static files on the admin listener.

The page is a fixed HTML shell plus one script and one stylesheet shipped in the package
(`gateway/static/`): no build step, nothing fetched from elsewhere, so it works without internet.
These routes are the one exception to the admin token: the page holds no data, and everything it
shows comes from the token-guarded `/admin/*` API, which the script calls with the operator's token.
The script builds the page with `textContent` only; the Content-Security-Policy refuses inline
script, so markup that came from a supplier or a shop can never run.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import NotFound

routes = web.RouteTableDef()

STATIC: Final = Path(__file__).with_name("static")
PAGE: Final = "index.html"
# The only files served: a fixed list, so no request path ever names a file on disk.
FILES: Final = {
    "console.js": "text/javascript",
    "console.css": "text/css",
}
POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",  # a form the script failed to take over never sends the token anywhere
        "frame-ancestors 'none'",
    )
)
HEADERS: Final = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _file(name: str, content_type: str) -> web.Response:
    return web.Response(body=_read(name), content_type=content_type, charset="utf-8", headers=HEADERS)


@routes.get("/admin/")
async def console_page(request: web.Request) -> web.Response:
    return _file(PAGE, "text/html")


@routes.get("/admin/static/{name}")
async def console_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = FILES.get(name)
    if content_type is None:
        raise NotFound(f"no console file {name!r}")
    return _file(name, content_type)


PUBLIC_HANDLERS: Final[frozenset[Handler]] = frozenset({console_page, console_file})


def is_public(request: web.Request) -> bool:
    """Whether the request reached one of the console's own routes, which need no token.

    Decided by the route the router matched, not by a path prefix: a method the route does not take,
    or any other `/admin/` path, still needs the token.
    """
    return request.match_info.route.handler in PUBLIC_HANDLERS
