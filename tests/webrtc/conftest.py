"""A media origin with a test pattern (counting its feed readers), an edge with a streaming
distribution in front of it, and WHEP viewers made with aiortc."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edge.app import build_edge_app
from origin_media.app import MediaOriginSettings, build_media_origin_app
from web_dist.config import parse_config
from web_dist.server import RunningServer, start_server

ORIGIN_OPTIONS = {"segment_seconds": 1.0, "part_seconds": 0.25, "window_seconds": 6.0, "rtmp_listen": "127.0.0.1:0"}


class FeedCounter:
    """Wraps the media origin: counts requests for stream.ts feeds and those still open."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests = 0
        self.open = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/stream.ts"):
            await self.app(scope, receive, send)
            return
        self.requests += 1
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1


@dataclass
class Viewer:
    """An aiortc WHEP client: the tracks it got and the session's Location."""

    pc: RTCPeerConnection
    location: str
    tracks: dict[str, MediaStreamTrack] = field(default_factory=dict)

    async def frames(self, kind: str, count: int, limit: float = 20.0) -> list[Any]:
        track = self.tracks[kind]
        return [await asyncio.wait_for(track.recv(), limit) for _ in range(count)]

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class Stack:
    origin: RunningServer
    feeds: FeedCounter
    edge: RunningServer
    edge_app: Any
    http: httpx.AsyncClient
    viewers: list[Viewer] = field(default_factory=list)

    async def offer_sdp(self, kinds: tuple[str, ...] = ("video", "audio")) -> tuple[RTCPeerConnection, str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        for kind in kinds:
            pc.addTransceiver(kind, "recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        return pc, pc.localDescription.sdp

    async def watch(self, stream: str = "demo", kinds: tuple[str, ...] = ("video", "audio")) -> Viewer:
        """POST an offer to the edge's WHEP endpoint and connect."""
        pc, sdp = await self.offer_sdp(kinds)
        tracks: dict[str, MediaStreamTrack] = {}
        pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
        response = await self.http.post(f"/whep/{stream}", content=sdp, headers={"content-type": "application/sdp"})
        assert response.status_code == 201, response.text
        assert response.headers["content-type"].startswith("application/sdp")
        await pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
        viewer = Viewer(pc, response.headers["location"], tracks)
        self.viewers.append(viewer)
        return viewer


async def next_frame(track: MediaStreamTrack, limit: float = 20.0) -> Any:
    try:
        return await asyncio.wait_for(track.recv(), limit)
    except MediaStreamError:
        return None


@pytest.fixture
async def make_stack() -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    stacks: list[Stack] = []

    async def make(grace: float = 0.3, **edge_options: Any) -> Stack:
        settings = MediaOriginSettings.from_options(
            {**ORIGIN_OPTIONS, "streams": {"demo": {"source": "test", "width": 320, "height": 180}}}, where="test"
        )
        feeds = FeedCounter(build_media_origin_app(settings))
        origin = await start_server(feeds, "127.0.0.1:0", name="media")
        async with httpx.AsyncClient(base_url=origin.url) as client:
            deadline = time.monotonic() + 20
            while (await client.get("/streams")).json()["streams"][0]["state"] != "live":
                assert time.monotonic() < deadline, "the test pattern did not go live"
                await asyncio.sleep(0.05)
        config = parse_config(
            {
                "origins": {"media": {"kind": "media", "url": origin.url}},
                "edges": {"edge-a": {"listen": "127.0.0.1:1", "webrtc_grace": grace, **edge_options}},
                "distributions": {"live": {"kind": "streaming", "domains": ["127.0.0.1"], "origin": "media"}},
            },
            Path("test.toml"),
        )
        app = build_edge_app(config, "edge-a")
        edge = await start_server(app, "127.0.0.1:0", name="edge-a")
        stack = Stack(origin, feeds, edge, app, httpx.AsyncClient(base_url=edge.url, timeout=30))
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        for viewer in stack.viewers:
            await viewer.close()
        await stack.http.aclose()
        await stack.edge.stop()
        await stack.origin.stop()
