"""RTMP session start and the cost of the WebRTC TS feed, at the media origin (issue 14).

    .venv/bin/python -m bench.rtmp_start [--seconds 6]

For audio+video, video-only and audio-only publishers (PyAV, as tests/origin_media does): how
long after the publisher's first packet left the first part is listed (a stream should start
within its first keyframe plus one part: 0.25 s parts here, keyframe first), and how far the
first segment's EXT-X-PROGRAM-DATE-TIME is from that moment. Then, for a publisher with
B-frames, the origin's CPU (% of one core, this process) with no TS reader and with one: the
feed (AAC -> Opus, H.264 re-encode without B-frames) is encoded only while it is read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

import httpx

from bench.procs import cpu_seconds
from origin_media.app import MediaOriginSettings, build_media_origin_app
from streaming.playlist import parse_media
from web_dist.server import start_server

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {
    "segment_seconds": 1.0,
    "part_seconds": 0.25,
    "window_seconds": 6.0,
    "rtmp_listen": "127.0.0.1:0",
    "reconnect_grace_seconds": 0.5,
    "streams": {"cam": {"source": "rtmp", "key": "k"}},
}


async def publisher(port: int, seconds: float, tracks: str, bframes: int = 0) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.origin_media.publisher",
        f"rtmp://127.0.0.1:{port}/live/k",
        str(seconds),
        str(bframes),
        "25",
        tracks,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def start_figures(http: httpx.AsyncClient, port: int, tracks: str) -> tuple[float, float]:
    """(seconds from the first packet sent to the first listed part, PDT minus that moment)."""
    process = await publisher(port, 3, tracks)
    assert process.stdout is not None
    sent = float((await process.stdout.readline()).split()[1])
    while True:
        response = await http.get("/live/cam/source/index.m3u8")
        text = response.text
        if response.status_code == 200 and "#EXT-X-PART:" in text and "#EXT-X-ENDLIST" not in text:
            listed = time.time()
            break
        await asyncio.sleep(0.005)
    pdt = parse_media(text).segments[0].program_date_time or 0.0
    await process.wait()
    await asyncio.sleep(1.0)  # past the reconnect grace: the next run is a new playlist
    return listed - sent, pdt - sent


async def cpu_percent(seconds: float) -> float:
    before, started = cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds() - before) / (time.monotonic() - started)


async def ts_figures(http: httpx.AsyncClient, port: int, seconds: float) -> tuple[float, float]:
    process = await publisher(port, 3 * seconds + 4, "av", bframes=2)
    for _ in range(300):
        if (await http.get("/live/cam/source/index.m3u8")).status_code == 200:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    idle = await cpu_percent(seconds)

    async def read() -> None:
        async with http.stream("GET", "/live/cam/stream.ts") as response:
            async for _ in response.aiter_raw():
                pass

    reader = asyncio.create_task(read())
    read_cpu = await cpu_percent(seconds)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
        await reader
    process.kill()
    await process.wait()
    return idle, read_cpu


async def main(seconds: float) -> None:
    settings = MediaOriginSettings.from_options(OPTIONS, where="bench")
    app = build_media_origin_app(settings)
    server = await start_server(app, "127.0.0.1:0", name="media")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
            port = int(app.state.rtmp.port)
            for tracks in ("av", "v", "a"):
                start, pdt = await start_figures(http, port, tracks)
                print(
                    f"{tracks:>2}: first part listed {start:.3f} s after the first packet left; "
                    f"PDT {pdt:+.3f} s from it",
                    flush=True,
                )
            idle, reading = await ts_figures(http, port, seconds)
            print(f"B-frames source: origin CPU {idle:.1f} % without a TS reader, {reading:.1f} % with one", flush=True)
    finally:
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="each CPU measurement")
    asyncio.run(main(parser.parse_args().seconds))
