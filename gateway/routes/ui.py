"""``GET /ui``: the playground and live comparison page, static files shipped in the package.
``GET /`` redirects there.

The page is plain HTML, CSS and ES modules under ``gateway/ui/static`` (no build step, nothing fetched
from anywhere else). It calls this gateway's own API from the browser with the key the user types in, so
serving the files needs no key: they hold no data.

Every response forbids everything but this origin (Content-Security-Policy) and carries an ETag with
``Cache-Control: no-cache``: browsers keep their copy but ask each time (a 304 when nothing changed), so
an upgraded gateway never pairs a new page with an old script. The files are read once, on first use.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from gateway.wire.errors import ModelNotFound

STATIC = Path(__file__).resolve().parent.parent / "ui" / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Only this origin, and only what the page uses: no inline script or style, no frames, no form posts.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}

router = APIRouter()


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """Every servable file by name: the static directory is flat, so a name is never a path."""
    found: dict[str, Asset] = {}
    for path in sorted(STATIC.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            body = path.read_bytes()
            found[path.name] = Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return found


class _NoSuchFile(ModelNotFound):
    default_code = "not_found"


def _serve(request: Request, name: str) -> Response:
    asset = assets().get(name)
    if asset is None:
        raise _NoSuchFile("no such file")
    headers = {**SECURITY_HEADERS, "etag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, headers={**headers, "content-type": asset.content_type})


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root() -> Response:
    # A browser pointed at the gateway's address lands on the playground rather than a JSON 404.
    return RedirectResponse("/ui", status_code=307)


@router.api_route("/ui", methods=["GET", "HEAD"], include_in_schema=False)
async def page(request: Request) -> Response:
    return _serve(request, "index.html")


@router.api_route("/ui/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def static_file(request: Request, name: str) -> Response:
    return _serve(request, name)
