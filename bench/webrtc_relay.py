"""WebRTC relay at the edge: CPU per WHEP viewer and glass-to-glass latency.

    .venv/bin/python -m bench.webrtc_relay [--viewers 1,5,20] [--seconds 10] [--size 640x360]

A media origin (test pattern, H.264 + Opus) and an edge run as child processes from one
config, as `cdn origin` and `cdn edge`. For each viewer count, that many aiortc WHEP viewers
(in this process) connect to the edge and play audio and video; once all are receiving, the
edge's CPU time is read from /proc over `--seconds`. Latency is glass to glass: the test
pattern burns the wall clock at capture into every frame, and each decoded frame's clock is
read back (seven-segment glyphs, sampled) and subtracted from the wall clock at arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench import results_dir
from bench.procs import Children, free_port, machine_load, progress, wait_http
from bench.procs import group_cpu_seconds as cpu_seconds
from bench.stack import BIN
from edge.whep_offer import pin_host_addresses
from origin_media.sources.testpattern import _GLYPHS, clock_text

SEGMENTS = {frozenset(strokes): digit for digit, strokes in _GLYPHS.items()}


# ---- the burned-in clock ---------------------------------------------------------------------


def read_clock(frame: Any) -> float | None:
    """Seconds since midnight UTC burned into a test-pattern frame, or None if unreadable.

    Mirrors `testpattern.Canvas.text`: scale s = width // 80, text at (s, s), digits 4s
    apart, ':' and '.' 2s; each stroke is sampled at its centre in the Y plane."""
    plane = frame.planes[0]
    pixels, stride = bytes(plane), plane.line_size
    s = max(2, frame.width // 80)
    w, t, half = 3 * s, max(1, s // 2 + 1), 3 * s
    centres = {
        "a": (w // 2, t // 2),
        "g": (w // 2, half + t // 2),
        "d": (w // 2, 2 * half - t // 2 - 1),
        "f": (t // 2, half // 2),
        "b": (w - t // 2 - 1, half // 2),
        "e": (t // 2, half + half // 2),
        "c": (w - t // 2 - 1, half + half // 2),
    }
    x, text = s, ""
    for char in "00:00:00.000":
        if char in ":.":
            text, x = text + char, x + 2 * s
            continue
        lit = frozenset(k for k, (dx, dy) in centres.items() if pixels[(s + dy) * stride + x + dx] > 128)
        digit = SEGMENTS.get(lit)
        if digit is None or digit == "-":
            return None
        text, x = text + digit, x + 4 * s
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def self_check(width: int, height: int) -> None:
    """The reader must read what the pattern writes (it fails loudly if the glyphs change)."""
    from origin_media.sources.testpattern import TestPattern, TestPatternSettings

    wall = 1_700_000_123.456
    frame = TestPattern(TestPatternSettings(width, height)).video_frame(7, wall)
    hours, minutes, seconds = clock_text(wall).split(":")
    want = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    got = read_clock(frame)
    if got is None or abs(got - want) > 0.0005:
        raise RuntimeError(f"burned-in clock reader is broken: wrote {want}, read {got}")


def since_midnight(now: float) -> float:
    return now % 86400


# ---- viewers -----------------------------------------------------------------------------------


class Viewer:
    """One WHEP viewer: plays both tracks, reads the clock of every `sample`-th frame."""

    def __init__(self, http: httpx.AsyncClient, sample: int) -> None:
        self.http = http
        self.sample = sample
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location = ""
        self.frames = 0
        self.audio_frames = 0
        self.latencies: list[float] = []
        self.first_frame = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        for kind in ("video", "audio"):
            self.pc.addTransceiver(kind, "recvonly")
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        response = await self.http.post(
            "/whep/demo", content=self.pc.localDescription.sdp, headers={"content-type": "application/sdp"}
        )
        if response.status_code != 201:
            raise RuntimeError(f"WHEP offer refused: {response.status_code} {response.text}")
        self.location = response.headers["location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._play(track)))

    async def _play(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "audio":
                    self.audio_frames += 1
                    continue
                arrived = since_midnight(time.time())
                self.frames += 1
                self.first_frame.set()
                if self.frames % self.sample == 0 and (burned := read_clock(frame)) is not None:
                    self.latencies.append((arrived - burned) % 86400)
        except MediaStreamError:
            pass

    async def close(self) -> None:
        if self.location:
            await self.http.delete(self.location)
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


async def measure(edge_url: str, edge_pgid: int, count: int, seconds: float) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as http:
        viewers = [Viewer(http, sample=1 if count <= 5 else 5) for _ in range(count)]
        try:
            await asyncio.gather(*(v.connect() for v in viewers))
            await asyncio.wait_for(asyncio.gather(*(v.first_frame.wait() for v in viewers)), 30)
            await asyncio.sleep(2)  # settle: joins happened at the next keyframe
            for viewer in viewers:
                viewer.latencies.clear()
            frames0 = sum(v.frames for v in viewers)
            cpu0, wall0 = cpu_seconds(edge_pgid), time.monotonic()
            await asyncio.sleep(seconds)
            cpu = cpu_seconds(edge_pgid) - cpu0
            elapsed = time.monotonic() - wall0
            frames = sum(v.frames for v in viewers) - frames0
        finally:
            await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
    latencies = sorted(x for v in viewers for x in v.latencies)
    return {
        "viewers": count,
        "edge_cpu_percent": round(100 * cpu / elapsed, 1),
        "edge_cpu_percent_per_viewer": round(100 * cpu / elapsed / count, 2),
        "fps_per_viewer": round(frames / elapsed / count, 1),
        "latency_median_ms": round(1000 * statistics.median(latencies)) if latencies else None,
        "latency_p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))]) if latencies else None,
        "latency_samples": len(latencies),
    }


def write_config(folder: Path, origin_port: int, edge_port: int, width: int, height: int) -> Path:
    config = folder / "cdn.toml"
    config.write_text(f"""
[origins.media]
kind = "media"
listen = "127.0.0.1:{origin_port}"
[origins.media.options]
segment_seconds = 1.0
part_seconds = 0.25
rtmp_listen = "127.0.0.1:{free_port()}"
[origins.media.options.streams.demo]
source = "test"
width = {width}
height = {height}
fps = 25
bitrate = 800000

[edges.bench-edge]
listen = "127.0.0.1:{edge_port}"

[distributions.live]
kind = "streaming"
domains = ["127.0.0.1"]
origin = "media"
""")
    return config


async def run(counts: Sequence[int], seconds: float, width: int, height: int) -> dict[str, Any]:
    self_check(width, height)
    unpin = pin_host_addresses(("127.0.0.1",))  # the viewers' candidates, like the edge's
    load_start = machine_load()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cdn-bench-") as tmp, Children(Path(tmp)) as children:
        origin_port, edge_port = free_port(), free_port()
        config = write_config(Path(tmp), origin_port, edge_port, width, height)
        origin = children.spawn("origin", [str(BIN / "cdn"), "origin", "--config", str(config), "--name", "media"])
        wait_http(origin, origin_port, "/streams")
        edge = children.spawn("edge", [str(BIN / "cdn"), "edge", "--config", str(config), "--name", "bench-edge"])
        wait_http(edge, edge_port, "/_cdn/health")
        for count in counts:
            progress(f"{count} WebRTC viewer(s), {width}x{height}, measuring {seconds:g} s")
            rows.append(await measure(f"http://127.0.0.1:{edge_port}", edge.pid, count, seconds))
            progress(json.dumps(rows[-1]))
            await asyncio.sleep(1)
    unpin()
    return {
        "size": f"{width}x{height}",
        "seconds": seconds,
        "load_start": load_start,
        "load_end": machine_load(),
        "cores": os.cpu_count(),
        "rows": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"WebRTC (WHEP) through one edge, test pattern {report['size']} 25 fps ~800 kb/s + Opus, "
        f"{report['cores']} cores, load {report['load_start']} -> {report['load_end']}",
        "viewers  edge CPU %  CPU %/viewer  fps/viewer  glass-to-glass median / p95 ms",
    ]
    for row in report["rows"]:
        lines.append(
            f"{row['viewers']:>7}  {row['edge_cpu_percent']:>10}  {row['edge_cpu_percent_per_viewer']:>12}"
            f"  {row['fps_per_viewer']:>10}  {row['latency_median_ms']} / {row['latency_p95_ms']}"
            f" ({row['latency_samples']} frames)"
        )
    rows = report["rows"]
    if len(rows) >= 2 and rows[-1]["viewers"] > rows[0]["viewers"]:
        slope = (rows[-1]["edge_cpu_percent"] - rows[0]["edge_cpu_percent"]) / (
            rows[-1]["viewers"] - rows[0]["viewers"]
        )
        lines.append(f"marginal edge CPU per added viewer: {slope:.2f} % of a core")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webrtc_relay", description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", default="1,5,20", help="viewer counts, comma-separated (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per count (default %(default)s)")
    parser.add_argument("--size", default="640x360", help="test pattern size (default %(default)s)")
    parser.add_argument("--out", type=Path, default=results_dir() / "webrtc_relay.json")
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.split("x"))
    report = asyncio.run(run([int(n) for n in args.viewers.split(",")], args.seconds, width, height))
    print(format_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
