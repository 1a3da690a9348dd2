"""Classic (non-LL) HLS on demand from a plain web origin: segment by segment, a rendition
chosen by measured throughput, and the end of the stream is no stall."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from streaming.loadtest import LoadPlan, run_load
from streaming.report import summarize
from web_dist.origin import build_origin_app

SEGMENTS = 4


def write_stream(root: Path) -> None:
    # "big" asks for far more than loopback measures, so players move to "small" once they
    # have measured one segment
    (root / "master.m3u8").write_text(
        "#EXTM3U\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=100000000000,RESOLUTION=1920x1080\nbig/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=200000,RESOLUTION=320x180\nsmall/index.m3u8\n"
    )
    for name, size in (("big", 60_000), ("small", 20_000)):
        folder = root / name
        folder.mkdir()
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
        for n in range(SEGMENTS):
            (folder / f"s{n}.ts").write_bytes(bytes(size))
            lines += ["#EXTINF:1.0,", f"s{n}.ts"]
        (folder / "index.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))


async def test_on_demand_plays_to_the_end_switching_to_the_rendition_that_fits(
    serve: Callable[..., Any],
    tmp_path: Path,
) -> None:
    write_stream(tmp_path)
    origin = await serve(build_origin_app(tmp_path, name="vod"), name="vod")
    plan = LoadPlan((origin.url,), "/master.m3u8", viewers=5, duration=30, ramp=50)
    figures = summarize(await run_load(plan, progress=None))
    assert figures["seconds"] < 20, "every viewer reached the end: the run did not wait for the deadline"
    assert figures["errors"] == {} and figures["stalls"] == 0
    assert figures["media_fetches"] == 5 * SEGMENTS
    assert figures["renditions"] == {"320x180": 5} and figures["switches"] == 5
    assert figures["watch_seconds"] == SEGMENTS * 5 and figures["latency_p50"] is None
