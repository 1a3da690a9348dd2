"""An edge holds many requests at once: one per live viewer waiting on a blocking playlist
reload or a preload-hinted part. None may queue behind the others in the HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from edge.app import build_edge_app

from .conftest import ScriptedOrigin, edge_config

HELD = 1100  # more than granian's default limit of 1,024 requests at once


class Counting:
    """The edge app as it is, counting the requests it is inside at once."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inside = 0
        self.most = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.inside += 1
        self.most = max(self.most, self.inside)
        try:
            await self.app(scope, receive, send)
        finally:
            self.inside -= 1


async def test_more_than_a_thousand_held_requests_are_all_inside_the_edge_at_once(serve: Callable[..., Any]) -> None:
    origin = ScriptedOrigin()
    gate = asyncio.Event()
    origin.set("/live/part.m4s", b"part", gate=gate)
    origin_srv = await serve(origin, name="origin")
    counting = Counting(build_edge_app(edge_config(origin_srv.url, read_timeout=60.0), "edge-test"))
    edge = await serve(counting, name="edge", engine="granian")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def viewer() -> tuple[int, bytes]:
            async with http.get(edge.url + "/live/part.m4s") as response:
                return response.status, await response.read()

        viewers = [asyncio.create_task(viewer()) for _ in range(HELD)]
        for _ in range(300):  # every viewer's request reaches the edge while the origin holds
            if counting.inside >= HELD:
                break
            await asyncio.sleep(0.05)
        held = counting.inside
        gate.set()
        answers = await asyncio.gather(*viewers)
    assert held == HELD, f"only {held} of {HELD} requests were let in at once"
    assert answers == [(200, b"part")] * HELD
    assert origin.hits["/live/part.m4s"] == 1  # and they were one origin request


async def _held_then_repeated(
    serve: Callable[..., Any], path: str, hold: float, max_age: int
) -> tuple[aiohttp.ClientResponse, aiohttp.ClientResponse]:
    """The origin holds the first request `hold` seconds; the edge (real clock) is asked again at once."""
    origin = ScriptedOrigin()
    gate = asyncio.Event()
    origin.set(path.split("?")[0], b"#EXTM3U\n", gate=gate, headers={"cache-control": f"max-age={max_age}"})
    origin_srv = await serve(origin, name="origin")
    config = edge_config(origin_srv.url, default_behavior={"default_ttl": 60, "query_keys": "all"})
    edge = await serve(build_edge_app(config, "edge-test"), name="edge", engine="granian")
    async with aiohttp.ClientSession() as http:
        first = asyncio.create_task(http.get(edge.url + path))
        await origin.arrived.wait()
        asyncio.get_running_loop().call_later(hold, gate.set)
        held = await first
        await held.read()
        again = await http.get(edge.url + path)
        await again.read()
    assert origin.hits[path] == 1, "the repeat went to the origin: the held answer arrived already expired"
    return held, again


async def test_a_blocking_playlist_reload_held_by_the_origin_is_fresh_when_it_arrives(
    serve: Callable[..., Any],
) -> None:
    held, again = await _held_then_repeated(serve, "/live/index.m3u8?_HLS_msn=5", 1.5, 1)
    assert held.headers["age"] == "0"
    assert again.headers["x-cache"].startswith("Hit")


async def test_a_held_part_ages_from_the_origins_date_not_from_the_request(serve: Callable[..., Any]) -> None:
    _, again = await _held_then_repeated(serve, "/live/part7.m4s", 2.2, 2)
    assert again.headers["x-cache"].startswith("Hit")
