"""The load tester plays a recording (its multivariant playlist, VOD once closed) through an
edge to its end, every rendition of the ladder recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.app import build_edge_app
from origin_media.app import MediaOriginSettings, build_media_origin_app
from streaming.buffer import PlaybackBuffer
from streaming.loadtest import LoadPlan, run_load
from streaming.report import summarize
from tests.origin_media.conftest import finish, start_publisher
from web_dist.server import RunningServer, start_server

from .conftest import LIVE, streaming_config

KEY = "rec-load-key"
LADDER = [{"name": "90p", "width": 160, "height": 90, "bitrate": 120_000}]


@pytest.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, dict[str, Any]]]:
    """An edge before a media origin holding one closed recording of an RTMP push (source + 90p)."""
    stream = {"source": "rtmp", "key": KEY, "renditions": LADDER, "record": True, "record_reconnect_seconds": 0.5}
    settings = MediaOriginSettings.from_options(
        {**LIVE, "recordings_dir": str(tmp_path), "streams": {"demo": stream}}, where="test"
    )
    app = build_media_origin_app(settings)
    origin = await start_server(app, name="media")
    edge = await start_server(build_edge_app(streaming_config(origin.url), "edge-0"), name="edge-0")
    try:
        url = f"rtmp://127.0.0.1:{app.state.rtmp.port}/live/{KEY}"
        assert await finish(await start_publisher(url, 4.5)) == 0
        deadline = time.monotonic() + 15
        async with httpx.AsyncClient(base_url=origin.url) as http:
            while True:
                found = (await http.get("/recordings/demo")).json()["recordings"]
                if found and found[0]["closed"]:
                    break
                assert time.monotonic() < deadline, "the recording did not close"
                await asyncio.sleep(0.1)
        yield edge, found[0]
    finally:
        await edge.stop()
        await origin.stop()


async def test_viewers_play_a_closed_recording_to_its_end(recorded: tuple[RunningServer, dict[str, Any]]) -> None:
    edge, recording = recorded
    assert list(recording["renditions"]) == ["source", "90p"]
    plan = LoadPlan((edge.url,), recording["playlist"], viewers=4, duration=30, ramp=20)
    started = time.monotonic()
    run = await run_load(plan, progress=None)
    figures = summarize(run)
    assert figures["errors"] == {} and figures["stalls"] == 0, figures
    assert figures["startup"]["never_started"] == 0
    assert all(v.ended for v in run.viewers), "each viewer reached EXT-X-ENDLIST"
    # on demand: fetched as fast as the edge serves it, then watched; well inside the deadline
    assert time.monotonic() - started < 20
    fetched = sum(d for _, d in run.tally.fetches.items)
    assert fetched == pytest.approx(4 * recording["duration"], rel=0.05)


@pytest.mark.parametrize("start", [0.1, 17.3, 1000.7, 1e6 + 0.3])
def test_playing_to_the_end_of_what_was_fetched_is_no_stall(start: float) -> None:
    """(t + left) - t is not always `left` in floating point: the end of a VOD is no stall."""
    buffer = PlaybackBuffer()
    buffer.append(2.0, start)
    buffer.append(0.48, start + 0.03)
    now = start + 0.07
    buffer.finish(now + buffer.buffered(now))
    buffer.advance(now + 10)
    assert buffer.stalls == 0 and buffer.total_stall(now + 10) == 0
