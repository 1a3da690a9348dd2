"""Fixtures: a media origin on loopback (HTTP + RTMP) and RTMP publishers as processes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from origin_media.app import MediaOriginSettings, build_media_origin_app
from web_dist.server import RunningServer, start_server

from . import hls

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"segment_seconds": 1.0, "part_seconds": 0.25, "window_seconds": 6.0,
         "rtmp_listen": "127.0.0.1:0", "reconnect_grace_seconds": 2.0}


class Origin:
    def __init__(self, server: RunningServer, app: Any) -> None:
        self.server = server
        self.app = app
        self.http = httpx.AsyncClient(base_url=server.url, timeout=15)

    @property
    def rtmp_port(self) -> int:
        return int(self.app.state.rtmp.port)

    def rtmp_url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{key}"

    async def playlist(self, stream: str, query: str = "") -> hls.Playlist:
        response = await self.http.get(f"/live/{stream}/source/index.m3u8{query}")
        assert response.status_code == 200, response.text
        return hls.parse(response.text)

    async def stream_info(self, name: str) -> dict[str, Any]:
        body = (await self.http.get("/streams")).json()
        return next(s for s in body["streams"] if s["name"] == name)

    async def wait_for(self, check: Callable[[], Awaitable[bool]], limit: float = 10.0) -> None:
        """Poll `check` until true, failing after `limit` seconds (never a fixed sleep)."""
        deadline = time.monotonic() + limit
        while not await check():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.05)

    async def fetch(self, stream: str, uri: str) -> bytes:
        response = await self.http.get(f"/live/{stream}/source/{uri}")
        assert response.status_code == 200, (uri, response.status_code)
        return response.content


@pytest.fixture
async def make_origin() -> AsyncIterator[Callable[..., Awaitable[Origin]]]:
    started: list[Origin] = []

    async def make(streams: dict[str, dict[str, Any]], **options: Any) -> Origin:
        settings = MediaOriginSettings.from_options({**SMALL, **options, "streams": streams},
                                                    where="test")
        app = build_media_origin_app(settings)
        origin = Origin(await start_server(app, "127.0.0.1:0", name="media"), app)
        started.append(origin)
        return origin

    yield make
    for origin in started:
        await origin.http.aclose()
        await origin.server.stop()


async def start_publisher(url: str, seconds: float, bframes: int = 0, gop: int = 25,
                          tracks: str = "av", stdout: int = asyncio.subprocess.DEVNULL,
                          ) -> asyncio.subprocess.Process:
    """A publisher process; with `stdout=PIPE`, its first line is "first-packet UNIX_TIME"."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.origin_media.publisher", url, str(seconds), str(bframes),
        str(gop), tracks, cwd=ROOT, stdout=stdout, stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process, limit: float = 30) -> int:
    with contextlib.suppress(ProcessLookupError):
        await asyncio.wait_for(process.wait(), limit)
    return process.returncode if process.returncode is not None else -1


def decode(init: bytes, segment: bytes) -> tuple[list[av.VideoFrame], list[Any], list[Any]]:
    """(video frames, video packets, audio frames) of init + segment, decoded by PyAV."""
    with av.open(io.BytesIO(init + segment)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    with av.open(io.BytesIO(init + segment)) as container:
        frames = list(container.decode(video=0))
    with av.open(io.BytesIO(init + segment)) as container:
        audio = list(container.decode(audio=0)) if container.streams.audio else []
    return frames, packets, audio
