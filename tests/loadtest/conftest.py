"""A live stack on loopback for the load tester: a media origin with a test stream, and an edge
(public port + admin port with /metrics.json) in front of it, all real servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from edge.app import build_admin_app, build_edge_app
from origin_media.app import MediaOriginSettings, build_media_origin_app
from web_dist.config import CdnConfig, parse_config
from web_dist.router import Router, build_router_app
from web_dist.server import RunningServer, start_server

STREAM = {"source": "test", "width": 320, "height": 180}
# parts of 0.5 s: a player starts 1.5 s (PART-HOLD-BACK) behind live, which a busy CI machine
# does not eat up by accident
LIVE = {"segment_seconds": 2.0, "part_seconds": 0.5, "window_seconds": 12.0, "rtmp_listen": "127.0.0.1:0"}
MASTER = "/live/demo/master.m3u8"


def streaming_config(origin_url: str, edges: int = 1, router: dict[str, Any] | None = None) -> CdnConfig:
    """A streaming distribution: playlists keyed by the blocking-reload query, media for a day."""
    extra = {"router": router} if router else {}
    return parse_config(
        {
            **extra,
            "origins": {"media": {"kind": "media", "url": origin_url, "read_timeout": 10.0}},
            "edges": {f"edge-{i}": {"listen": "127.0.0.1:0"} for i in range(edges)},
            "distributions": {
                "live": {
                    "kind": "streaming",
                    "domains": ["127.0.0.1", "localhost"],
                    "origin": "media",
                    "behaviors": [
                        {
                            "path": "/live/*.m3u8",
                            "query_keys": ["_HLS_msn", "_HLS_part"],
                            "min_ttl": 0,
                            "default_ttl": 1,
                            "max_ttl": 1,
                        }
                    ],
                    "default_behavior": {"default_ttl": 86400},
                }
            },
        }
    )


ADMIN_TOKEN = "admin-token-for-tests-0123"


@dataclass
class Edge:
    public: RunningServer
    admin: RunningServer

    @property
    def url(self) -> str:
        return self.public.url

    @property
    def metrics(self) -> str:
        return self.admin.url + f"/metrics.json?token={ADMIN_TOKEN}"


@dataclass
class Stack:
    origin: RunningServer
    edges: list[Edge]
    router: RunningServer | None = None


async def wait_for_stream(url: str, limit: float = 30.0) -> None:
    """Until the stream's playlist lists a whole segment (polled, never a fixed sleep)."""
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            response = await http.get(url + MASTER)
            if response.status_code == 200:
                media_uri = next(line for line in response.text.splitlines() if line and not line.startswith("#"))
                media = await http.get(url + "/live/demo/" + media_uri)
                if media.status_code == 200 and media.text.count("#EXTINF") >= 1:
                    return
            assert time.monotonic() < deadline, "the test stream did not start"
            await asyncio.sleep(0.1)


@pytest.fixture
async def make_stack() -> AsyncIterator[Callable[..., Any]]:
    servers: list[RunningServer] = []

    async def make(
        edges: int = 1, stream: dict[str, Any] | None = None, router: bool | dict[str, Any] = False
    ) -> Stack:
        settings = MediaOriginSettings.from_options({**LIVE, "streams": {"demo": stream or STREAM}}, where="test")
        origin = await start_server(build_media_origin_app(settings), name="media")
        servers.append(origin)
        config = streaming_config(origin.url, edges)
        started = []
        for name in config.edges:
            app = build_edge_app(config, name)
            admin = await start_server(build_admin_app(app.flow, token=ADMIN_TOKEN), name=f"{name}-admin")
            public = await start_server(app, name=name)
            servers.extend([admin, public])
            started.append(Edge(public, admin))
        await wait_for_stream(origin.url)
        stack = Stack(origin, started)
        if router:  # told where the edges ended up listening
            addresses = {name: e.url.removeprefix("http://") for name, e in zip(config.edges, started, strict=True)}
            more = router if isinstance(router, dict) else {}
            routed = streaming_config(origin.url, edges, {"listen": "127.0.0.1:0", "addresses": addresses, **more})
            stack.router = await start_server(build_router_app(Router(routed)), name="router")
            servers.append(stack.router)
        return stack

    yield make
    for server in reversed(servers):
        await server.stop()
