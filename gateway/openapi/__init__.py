"""The OpenAPI 3.1 documents of both listeners (CONTRACT.md §11): built once at start-up, served as bytes.

`shop.py` and `admin.py` say what each listener's routes answer, `models.py` describes the bodies and
`document.py` assembles them; this module only serves a finished document, never rebuilding it per request.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

DOCUMENT: Final = web.AppKey("openapi_document", bytes)


async def serve_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")


def publish(app: web.Application, path: str, document: bytes) -> None:
    """Serve the encoded `document` at `GET path` of `app`."""
    app[DOCUMENT] = document
    app.router.add_get(path, serve_document)
