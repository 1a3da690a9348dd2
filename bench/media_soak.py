"""Soak benchmark of the media origin: one live test stream for a while, memory printed.

    .venv/bin/python -m bench.media_soak [--seconds 600] [--every 30] [--size 640x360]
                                         [--renditions 360p,180p]

A simulated LL-HLS player follows the stream with blocking playlist reloads and fetches every
new part, so the HTTP side is exercised too. Every `--every` seconds it prints the process
RSS, CPU used (test source encode + packaging + HTTP, as % of one core), segments held in the
window, and the origin-side latency of the newest part: wall clock when its playlist came
back minus the wall-clock time at which its last frame was captured (from PROGRAM-DATE-TIME).
RSS should stay flat once the window is full. With `--renditions` the test stream is an ABR
ladder (each rung encoded from the same frames) and the player follows the first rung.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.procs import cpu_seconds
from origin_media.app import MediaOriginSettings, build_media_origin_app
from streaming.playlist import parse_media
from web_dist.server import start_server


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Player:
    """Follows the live edge part by part; records how late each part became available."""

    def __init__(self, http: httpx.AsyncClient, rendition: str) -> None:
        self.http = http
        self.base = f"/live/soak/{rendition}"
        self.latencies: list[float] = []
        self.parts = 0
        self.segments_listed = 0

    async def run(self, until: float) -> None:
        want: tuple[int, int] | None = None
        while time.monotonic() < until:
            query = "" if want is None else f"?_HLS_msn={want[0]}&_HLS_part={want[1]}"
            response = await self.http.get(f"{self.base}/index.m3u8{query}")
            if response.status_code != 200:
                want = None
                await asyncio.sleep(0.1)
                continue
            want = self._on_playlist(response.text, time.time())

    def _on_playlist(self, text: str, now: float) -> tuple[int, int]:
        """Note the newest part's latency, fetch it in the background, ask for the next."""
        msn, index, uri, captured = _newest_part(text)
        self.segments_listed = text.count("#EXTINF")
        if uri:  # a playlist with no part yet
            self.latencies.append(now - captured)
            asyncio.ensure_future(self._fetch(uri))
        return (msn, index + 1)

    async def _fetch(self, uri: str) -> None:
        response = await self.http.get(f"{self.base}/{uri}")
        if response.status_code == 200:
            self.parts += 1


def _newest_part(text: str) -> tuple[int, int, str, float]:
    """(msn, part index, URI, end time by its program date-time) of the newest listed part."""
    segment = next(s for s in reversed(parse_media(text).segments) if s.parts)
    end = (segment.program_date_time or 0.0) + sum(p.duration for p in segment.parts)
    return segment.msn, len(segment.parts) - 1, segment.parts[-1].uri, end


async def soak(seconds: float, every: float, width: int, height: int, renditions: list[str]) -> None:
    stream: dict[str, Any] = {"source": "test", "width": width, "height": height}
    if renditions:
        stream["renditions"] = renditions
    settings = MediaOriginSettings.from_options(
        {
            "segment_seconds": 2.0,
            "part_seconds": 0.5,
            "window_seconds": 12.0,
            "streams": {"soak": stream},
        },
        where="bench",
    )
    app = build_media_origin_app(settings)
    server = await start_server(app, "127.0.0.1:0", name="media-soak")
    start, cpu0 = time.monotonic(), cpu_seconds()
    ladder = f", renditions {'/'.join(renditions)}" if renditions else ""
    print(f"media soak: {width}x{height} test stream{ladder} for {seconds:.0f}s, RSS every {every:.0f}s")
    print(f"{'t (s)':>6} {'RSS MiB':>8} {'CPU %':>6} {'segs':>5} {'parts got':>9} {'latency ms p50/max':>19}")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        player = Player(http, settings.streams[0].rendition_names[0])
        task = asyncio.create_task(player.run(start + seconds))
        rows: list[dict[str, Any]] = []
        try:
            while (elapsed := time.monotonic() - start) < seconds:
                await asyncio.sleep(min(every, seconds - elapsed))
                rows.append(_report(start, cpu0, player))
        finally:
            await task
    await server.stop()
    first, last = rows[min(1, len(rows) - 1)], rows[-1]
    print(f"RSS from {first['rss']:.1f} to {last['rss']:.1f} MiB after the window filled")


def _report(start: float, cpu0: float, player: Player) -> dict[str, Any]:
    elapsed = time.monotonic() - start
    recent = player.latencies[-100:] or [0.0]
    row = {"t": elapsed, "rss": rss_mib(), "cpu": 100 * (cpu_seconds() - cpu0) / elapsed}
    print(
        f"{row['t']:6.0f} {row['rss']:8.1f} {row['cpu']:6.1f} {player.segments_listed:5d} "
        f"{player.parts:9d} {1000 * statistics.median(recent):9.0f}/{1000 * max(recent):<9.0f}",
        flush=True,
    )
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--renditions", default="", help="ladder presets, e.g. 360p,180p")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    renditions = [r for r in args.renditions.split(",") if r]
    asyncio.run(soak(args.seconds, args.every, width, height, renditions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
