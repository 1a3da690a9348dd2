"""Fixtures: a media origin on loopback (HTTP + RTMP) and RTMP publishers as processes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from origin_media.app import MediaOriginSettings, build_media_origin_app
from tests.conftest import until
from web_dist.server import RunningServer, start_server

from . import hls

ROOT = Path(__file__).resolve().parents[2]
SMALL = {
    "segment_seconds": 1.0,
    "part_seconds": 0.25,
    "window_seconds": 6.0,
    "rtmp_listen": "127.0.0.1:0",
    "reconnect_grace_seconds": 2.0,
}


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
        await until(check, limit)

    async def fetch(self, stream: str, uri: str) -> bytes:
        response = await self.http.get(f"/live/{stream}/source/{uri}")
        assert response.status_code == 200, (uri, response.status_code)
        return response.content


@pytest.fixture
async def make_origin() -> AsyncIterator[Callable[..., Awaitable[Origin]]]:
    started: list[Origin] = []

    async def make(streams: dict[str, dict[str, Any]], **options: Any) -> Origin:
        settings = MediaOriginSettings.from_options({**SMALL, **options, "streams": streams}, where="test")
        app = build_media_origin_app(settings)
        origin = Origin(await start_server(app, "127.0.0.1:0", name="media"), app)
        started.append(origin)
        return origin

    yield make
    for origin in started:
        await origin.http.aclose()
        await origin.server.stop()


async def start_publisher(
    url: str,
    seconds: float,
    bframes: int = 0,
    gop: int = 25,
    tracks: str = "av",
    stdout: int = asyncio.subprocess.DEVNULL,
    *,
    cli: bool = False,
) -> asyncio.subprocess.Process:
    """A publisher process; with `stdout=PIPE`, its first line is "first-packet UNIX_TIME".
    `cli`: Debian's ffmpeg CLI instead (no such line), sending what OBS sends."""
    if cli:
        return await asyncio.create_subprocess_exec(
            *ffmpeg_push(url, seconds, bframes, gop, tracks), stdout=stdout, stderr=asyncio.subprocess.PIPE
        )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.origin_media.publisher",
        url,
        str(seconds),
        str(bframes),
        str(gop),
        tracks,
        cwd=ROOT,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )


def ffmpeg_push(url: str, seconds: float, bframes: int, gop: int, tracks: str) -> list[str]:
    """The ffmpeg command line of a live RTMP push like OBS's: x264 high profile, B-frames, a
    fixed GOP, AAC 48 kHz stereo, in real time (-re), each packet sent as it is muxed."""
    # an input left unused (-vn with a picture input) is not paced by -re in ffmpeg 5.1: the
    # other input then runs at full speed. So each track has its input only when sent.
    picture = ["-f", "lavfi", "-i", "testsrc=size=320x180:rate=25"] if "v" in tracks else []
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"] if "a" in tracks else []
    only = {"av": [], "a": ["-vn"], "v": ["-an"]}[tracks]
    return [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        *picture,
        *tone,
        "-t",
        str(seconds),
        "-c:v",
        "libx264",
        "-profile:v",
        "high",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(gop),
        "-keyint_min",
        str(gop),
        "-sc_threshold",
        "0",
        "-bf",
        str(bframes),
        "-threads",
        "1",
        "-c:a",
        "aac",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-b:a",
        "128k",
        *only,
        "-flush_packets",
        "1",
        "-f",
        "flv",
        url,
    ]


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
