"""The player pages, an origin of kind "player" that the streaming distribution routes to.

    /                     the live streams, with links to watch them (the page reads /streams)
    /watch/STREAM         the player: ?mode=llhls (the default), hls, dash or webrtc
    /player/hls.js        hls.js, installed from npm at the version package.json pins
    /player/dash.js       dash.js, likewise (loaded by the page only in ?mode=dash)
    /player/NAME          the pages' own scripts and style (streaming/web/)

Every URL a page uses is on the distribution's own host (playlists, /streams, /whep), so the
pages work through any edge and never name a server. Files are read once, when the app is
built; each answer carries a strong ETag and a Cache-Control the edge honours.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from web_dist.config.player import PlayerSettings

WEB = Path(__file__).parent / "web"
STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the media origin's own rule
ASSET_NAME = re.compile(r"^[a-z0-9_-]+\.(js|css)$")
PAGE_CACHE = "public, max-age=60"
ASSET_CACHE = "public, max-age=300"
LIBRARY_CACHE = "public, max-age=86400"  # pinned version: changes only with package.json
TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    cache_control: str

    @functools.cached_property
    def etag(self) -> str:
        """Hashed once per asset (hls.js is 600 KB), not on every request."""
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    def response(self, request: Request) -> Response:
        etag = self.etag
        headers = {"ETag": etag, "Cache-Control": self.cache_control}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def build_player_app(settings: PlayerSettings | None = None) -> Starlette:
    settings = settings or PlayerSettings()
    assets = {p.name: _asset(p) for p in sorted(WEB.iterdir()) if ASSET_NAME.match(p.name)}
    libraries = {"hls.js": settings.hls_js / "hls.min.js", "dash.js": settings.dash_js / "dash.all.min.js"}
    for served, library in libraries.items():
        if library.is_file():
            # without its source map comment: the map is not served, so devtools would ask in vain
            code = re.sub(rb"\n//# sourceMappingURL=\S+\s*$", b"\n", library.read_bytes())
            assets[served] = Asset(code, TYPES["js"], LIBRARY_CACHE)
    list_page = Asset((WEB / "streams.html").read_bytes(), "text/html; charset=utf-8", PAGE_CACHE)
    watch_template = (WEB / "watch.html").read_text(encoding="utf-8")

    async def streams(request: Request) -> Response:
        return list_page.response(request)

    async def watch(request: Request) -> Response:
        name = request.path_params["stream"]
        if not STREAM_NAME.match(name):
            return _not_found(f"no stream can be named {name!r}: letters, digits, '-' and '_'")
        page = watch_template.replace("{{stream}}", html.escape(name))
        return Asset(page.encode(), "text/html; charset=utf-8", PAGE_CACHE).response(request)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        found = assets.get(name)
        if found is not None:
            return found.response(request)
        if name in libraries:
            return PlainTextResponse(
                f"{name} is not installed ({libraries[name]} is missing): run `make deps` (npm ci)\n",
                503,
                headers={"Cache-Control": "no-store", "Retry-After": "60"},
            )
        return _not_found(f"no player file {name!r}")

    return Starlette(
        routes=[
            Route("/", streams),
            Route("/watch/", streams),
            Route("/watch/{stream}", watch),
            Route("/player/{name}", asset),
        ]
    )


def _asset(path: Path) -> Asset:
    return Asset(path.read_bytes(), TYPES[path.suffix[1:]], ASSET_CACHE)


def _not_found(message: str) -> Response:
    # a short lifetime: a stream that starts later gets its page soon after
    return PlainTextResponse(message + "\n", 404, headers={"Cache-Control": "public, max-age=5"})
