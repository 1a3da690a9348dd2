"""A real media origin (test pattern or RTMP) that counts what it is asked, and edges of a
streaming distribution before it, all on loopback."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from edge.app import EdgeApp, build_admin_app, build_edge_app
from origin_media.app import MediaOriginSettings, build_media_origin_app
from web_dist.config import CdnConfig, parse_config
from web_dist.server import RunningServer, start_server

SMALL = {"segment_seconds": 1.0, "part_seconds": 0.25, "window_seconds": 6.0, "rtmp_listen": "127.0.0.1:0"}
PATTERN = {"demo": {"source": "test", "width": 160, "height": 96, "fps": 25, "bitrate": 200_000}}
PLAYLIST = "/live/demo/source/index.m3u8"


class CountingOrigin:
    """The media origin's ASGI app, counting each request by path and query."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.hits: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()  # most requests for one target in progress at once

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode()
        target = scope["path"] + ("?" + query if query else "")
        self.hits[target] += 1
        self.in_flight[target] += 1
        self.peak[target] = max(self.peak[target], self.in_flight[target])
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight[target] -= 1

    def media_hits(self) -> dict[str, int]:
        """Requests per init, segment and part path."""
        return {p: n for p, n in self.hits.items() if p.endswith((".m4s", ".mp4"))}

    def playlist_hits(self) -> dict[str, int]:
        return {p: n for p, n in self.hits.items() if ".m3u8" in p}


ADMIN_TOKEN = "admin-token-for-tests-0123"


@dataclass
class LiveRig:
    origin: CountingOrigin
    origin_server: RunningServer
    config: CdnConfig
    edges: dict[str, RunningServer] = field(default_factory=dict)
    apps: dict[str, EdgeApp] = field(default_factory=dict)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def app(self) -> Any:
        return self.origin.app

    def url(self, edge: str) -> str:
        return self.edges[edge].url

    def viewer_client(self, n: int) -> httpx.AsyncClient:
        """A client with its own loopback address (127.0.0.N+10): one distinct viewer."""
        transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{10 + n}")
        client = httpx.AsyncClient(transport=transport, timeout=30)
        self.clients.append(client)
        return client

    async def start_edge(self, name: str) -> EdgeApp:
        app = build_edge_app(self.config, name)
        self.edges[name] = await start_server(app, self.config.edges[name].listen, name=name)
        self.apps[name] = app
        return app

    async def stop_edge(self, name: str) -> None:
        await self.edges.pop(name).stop()

    async def admin(self, edge: str) -> RunningServer:
        server = await start_server(
            build_admin_app(self.apps[edge].flow, token=ADMIN_TOKEN), "127.0.0.1:0", name=f"{edge}-admin"
        )
        self.edges[f"{edge}-admin"] = server
        return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def live_config(origin_url: str, edges: dict[str, dict[str, Any]]) -> CdnConfig:
    raw = {
        "origins": {
            "media": {"kind": "media", "url": origin_url, "options": {"part_seconds": 0.25, "segment_seconds": 1.0}}
        },
        "edges": {name: {"listen": f"127.0.0.1:{free_port()}", **body} for name, body in edges.items()},
        "distributions": {"live": {"kind": "streaming", "domains": ["127.0.0.1", "localhost"], "origin": "media"}},
    }
    return parse_config(raw)


@pytest.fixture
async def make_live() -> AsyncIterator[Callable[..., Awaitable[LiveRig]]]:
    rigs: list[LiveRig] = []

    async def make(
        edges: dict[str, dict[str, Any]] | None = None, streams: dict[str, Any] | None = None, **options: Any
    ) -> LiveRig:
        settings = MediaOriginSettings.from_options({**SMALL, **options, "streams": streams or PATTERN}, where="test")
        origin = CountingOrigin(build_media_origin_app(settings))
        server = await start_server(origin, "127.0.0.1:0", name="media")
        rig = LiveRig(origin, server, live_config(server.url, edges or {"edge-a": {}}))
        rigs.append(rig)
        for name in rig.config.edges:
            await rig.start_edge(name)
        return rig

    yield make
    for rig in rigs:
        for client in rig.clients:
            await client.aclose()
        for name in list(rig.edges):
            await rig.edges.pop(name).stop()
        await rig.origin_server.stop()
