"""SRT push ingest end to end: Debian's ffmpeg CLI pushing MPEG-TS over SRT -> origin -> LL-HLS."""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import datetime

import pytest

from . import hls
from .conftest import Origin, decode, finish

KEY = "srt-key"
SECRET = "a-long-passphrase"
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg (make deps)")


async def push(origin: Origin, stream_id: str, seconds: float, extra: str = "") -> asyncio.subprocess.Process:
    port = origin.app.state.srt.port
    return await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x180:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        str(seconds),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "25",
        "-bf",
        "0",
        "-c:a",
        "aac",
        "-f",
        "mpegts",
        f"srt://127.0.0.1:{port}?streamid={stream_id}{extra}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def origin(make_origin) -> Origin:  # type: ignore[no-untyped-def]
    return await make_origin(
        {
            "cam": {"source": "srt", "key": KEY},
            "vault": {"source": "srt", "key": KEY, "passphrase": SECRET, "pbkeylen": 32},
        },
        srt_listen="127.0.0.1:0",
        srt_latency_ms=200,
    )


async def test_an_srt_push_becomes_decodable_segments(origin: Origin) -> None:
    publisher = await push(origin, f"publish:cam:{KEY}", 3.5)
    first = await origin.http.get("/live/cam/source/index.m3u8?_HLS_msn=0", timeout=15)
    while first.status_code != 200:  # no playlist before the publisher's first segment
        await asyncio.sleep(0.05)
        first = await origin.http.get("/live/cam/source/index.m3u8?_HLS_msn=0")
    listed_at = time.time()
    assert await finish(publisher) == 0
    # PROGRAM-DATE-TIME is when the media came in (not when the TS demuxer finished probing):
    # a segment cannot end after the moment it was listed
    segment = hls.parse(first.text).full_segments[0]
    pdt = datetime.fromisoformat((segment.program_date_time or "").replace("Z", "+00:00")).timestamp()
    assert pdt + (segment.duration or 0) <= listed_at + 0.05

    async def ended() -> bool:
        response = await origin.http.get("/live/cam/source/index.m3u8")
        return response.status_code == 200 and hls.parse(response.text).ended

    await origin.wait_for(ended)
    playlist = await origin.playlist("cam")
    assert len(playlist.full_segments) >= 2
    segment = playlist.full_segments[0]
    init = await origin.fetch("cam", segment.map_uri or "")
    frames, packets, audio = decode(init, await origin.fetch("cam", segment.uri or ""))
    assert packets[0].is_keyframe and len(frames) == 25 and audio
    assert (await origin.stream_info("cam"))["protocol"] == "srt"


async def test_a_wrong_key_or_stream_is_refused_and_logged(origin: Origin, caplog: pytest.LogCaptureFixture) -> None:
    for stream_id in ("publish:cam:wrong", f"publish:nope:{KEY}", "cam"):
        publisher = await push(origin, stream_id, 1.0)
        assert await finish(publisher, 15) != 0, stream_id
    assert origin.app.state.srt.refused == 3
    assert "SRT caller refused" in caplog.text and "wrong" not in caplog.text
    assert (await origin.stream_info("cam"))["state"] == "idle"


async def test_an_encrypted_stream_takes_only_callers_with_its_passphrase(origin: Origin) -> None:
    wrong = await push(origin, f"publish:vault:{KEY}", 1.0, "&passphrase=not-the-secret&pbkeylen=32")
    assert await finish(wrong, 15) != 0
    right = await push(origin, f"publish:vault:{KEY}", 2.5, f"&passphrase={SECRET}&pbkeylen=32&latency=200000")
    assert await finish(right) == 0

    async def segments() -> bool:
        response = await origin.http.get("/live/vault/source/index.m3u8")
        return response.status_code == 200 and len(hls.parse(response.text).full_segments) >= 2

    await origin.wait_for(segments)


async def test_a_publisher_that_comes_back_continues_the_stream(make_origin) -> None:  # type: ignore[no-untyped-def]
    origin = await make_origin(
        {"cam": {"source": "srt", "key": KEY}},
        srt_listen="127.0.0.1:0",
        srt_latency_ms=200,
        reconnect_grace_seconds=10.0,
    )
    for _ in range(2):  # back within the grace period: one playlist, no ENDLIST in between
        assert await finish(await push(origin, f"publish:cam:{KEY}", 2.0)) == 0
        assert not await _ended(origin)
    playlist = await origin.playlist("cam")
    assert [s.discontinuity for s in playlist.full_segments].count(True) == 1
    assert (await origin.stream_info("cam"))["sessions"] == 2


async def _ended(origin: Origin) -> bool:
    response = await origin.http.get("/live/cam/source/index.m3u8")
    return response.status_code == 200 and hls.parse(response.text).ended
