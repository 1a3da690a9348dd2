"""Live relay benchmark: what a live stream costs the origin behind one edge, and how late
LL-HLS parts reach viewers through it.

    .venv/bin/python -m bench.live_relay [--viewers 1,10,500] [--seconds 12] [--ll-viewers 10]

A media origin (test pattern, 320x180, 2 s segments, 0.5 s parts, wrapped in a layer that
counts its requests and shows them at /_bench/counts) and one edge (as `cdn edge` starts it)
run as child processes. The viewers run here, each from its own loopback address (127.1.x.y)
so the edge counts them as distinct clients.

1. HLS viewers (1, 10, 500 at once) follow the stream as a classic player does: reload the
   playlist (every half target duration while it has not changed), fetch each new segment.
   Origin requests per segment = requests the origin received for segments / distinct
   segments, counted at the origin; the edge's own counters (`/metrics.json` "live" on its
   admin port) are printed beside them.
2. LL-HLS viewers follow with blocking reloads (`_HLS_msn`/`_HLS_part`), fetch every part and
   request the preload hint before the part exists. Glass-to-glass for each part: the wall
   clock when the viewer has it, minus the capture time of the part's first frame
   (EXT-X-PROGRAM-DATE-TIME of its segment plus the parts before it; the test source stamps
   frames with the wall clock when it draws them). Reported for the part's first bytes (via
   the hint) and for the whole part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import Children, cpu_seconds, free_port, progress, wait_http
from streaming.playlist import parse_media

STREAM = "/live/bench"
PLAYLIST = f"{STREAM}/source/index.m3u8"
CDN = [sys.executable, "-m", "web_dist.cli", "--log-level", "warning"]
COUNTS = "/_bench/counts"


class CountingOrigin:
    """The media origin's app, counting requests per path; GET /_bench/counts shows them."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.hits: dict[str, int] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == COUNTS:
            body = json.dumps(self.hits).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http":
            self.hits[scope["path"]] = self.hits.get(scope["path"], 0) + 1
        await self.app(scope, receive, send)


ADMIN_TOKEN = "bench-admin-token-0123456789"  # the edge's admin listener needs one


def serve_origin(config_path: str) -> int:
    """The child process: the config's media origin, counted."""
    import signal

    from web_dist.cli import build_origin
    from web_dist.config import load_config
    from web_dist.server import start_server

    config = load_config(config_path)
    origin = config.origins["media"]
    listen = origin.listen
    assert listen is not None

    async def serve() -> None:
        server = await start_server(CountingOrigin(build_origin(origin, config)), listen, name="origin")
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(serve())
    return 0


def origin_objects(base: str, prefix: str) -> dict[str, int]:
    """Requests the origin has received so far per path whose file name starts with `prefix`."""
    with urllib.request.urlopen(base + COUNTS, timeout=10) as response:
        hits: dict[str, int] = json.loads(response.read())
    return {path: n for path, n in hits.items() if path.rsplit("/", 1)[-1].startswith(prefix)}


def origin_delta(base: str, prefix: str, before: dict[str, int]) -> tuple[int, int]:
    """(requests, distinct objects) at the origin since `before`."""
    counts = {p: n - before.get(p, 0) for p, n in origin_objects(base, prefix).items() if n > before.get(p, 0)}
    return sum(counts.values()), len(counts)


# -- a playlist, as much as a viewer needs -------------------------------------------------------
@dataclass
class Part:
    msn: int
    index: int
    uri: str
    start: float  # capture time of its first frame (PROGRAM-DATE-TIME based)


@dataclass
class Playlist:
    target: float = 2.0
    segments: list[tuple[int, str]] = field(default_factory=list)  # (msn, uri) of full segments
    parts: list[Part] = field(default_factory=list)
    init: str | None = None
    hint: str | None = None


def parse(text: str) -> Playlist:
    """What a viewer here follows of a media playlist, read by the load tester's parser."""
    media = parse_media(text)
    out = Playlist(target=media.target_duration, hint=media.preload_hint)
    for segment in media.segments:
        out.init = segment.map_uri or out.init
        clock = segment.program_date_time or 0.0
        for index, part in enumerate(segment.parts):
            out.parts.append(Part(segment.msn, index, part.uri, clock))
            clock += part.duration
        if segment.uri is not None:
            out.segments.append((segment.msn, segment.uri))
    return out


def _attr(value: str, key: str) -> str:
    for item in value.split(","):
        k, _, v = item.partition("=")
        if k == key:
            return v.strip('"')
    raise ValueError(f"no {key} in {value!r}")


# -- viewers ---------------------------------------------------------------------------------------
def _session(n: int) -> aiohttp.ClientSession:
    """Viewer n's own client, from its own loopback address."""
    address = f"127.1.{n // 250}.{n % 250 + 1}"
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=4)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def hls_viewer(n: int, base: str, until: float, errors: list[str]) -> int:
    """A classic HLS player: reload, fetch new segments; returns the segments it got."""
    folder = base + PLAYLIST.rsplit("/", 1)[0] + "/"
    got, last = 0, None
    async with _session(n) as http:
        while time.monotonic() < until:
            try:
                async with http.get(base + PLAYLIST) as response:
                    playlist = parse(await response.text())
                new = [(m, u) for m, u in playlist.segments if last is None or m > last]
                if last is None:
                    new = new[-1:]
                for msn, uri in new:
                    async with http.get(folder + uri) as response:
                        await response.read()
                        if response.status != 200:
                            errors.append(f"{uri}: {response.status}")
                    got, last = got + 1, msn
            except aiohttp.ClientError as exc:
                errors.append(repr(exc))
            await asyncio.sleep(playlist.target / (1 if new else 2))
    return got


@dataclass
class Arrival:
    start: float = 0.0  # capture time of the part's first frame
    first: float | None = None  # wall clock of the first bytes (parts asked for by their hint)
    done: float | None = None  # wall clock of the last byte


async def ll_viewer(n: int, base: str, until: float, arrivals: list[Arrival], errors: list[str]) -> None:
    """An LL-HLS player: blocking reloads, every part, the preload hint asked for early."""
    folder = base + PLAYLIST.rsplit("/", 1)[0] + "/"
    hinted: dict[str, asyncio.Task[Arrival]] = {}
    last: tuple[int, int] | None = None
    async with _session(n) as http:

        async def fetch(uri: str, hint: bool) -> Arrival:
            seen = Arrival()
            async with http.get(folder + uri) as response:
                async for _ in response.content.iter_any():
                    if hint and seen.first is None:
                        seen.first = time.time()
                if response.status != 200:
                    errors.append(f"{uri}: {response.status}")
            seen.done = time.time()
            return seen

        while time.monotonic() < until:
            query = "" if last is None else f"?_HLS_msn={last[0]}&_HLS_part={last[1] + 1}"
            async with http.get(base + PLAYLIST + query) as response:
                text, status = await response.text(), response.status
            if status != 200:
                errors.append(f"playlist: {status}")
                await asyncio.sleep(0.2)
                continue
            playlist = parse(text)
            if last is None and playlist.parts:
                last = (playlist.parts[-1].msn, playlist.parts[-1].index - 1)
            for part in playlist.parts:
                if last is not None and (part.msn, part.index) > last:
                    task = hinted.pop(part.uri, None)
                    arrival = await task if task is not None else await fetch(part.uri, False)
                    arrival.start = part.start
                    arrivals.append(arrival)
                    last = (part.msn, part.index)
            if playlist.hint and playlist.hint not in hinted:
                hinted[playlist.hint] = asyncio.create_task(fetch(playlist.hint, True))
        for task in hinted.values():
            task.cancel()


# -- the stack -------------------------------------------------------------------------------------
def write_config(folder: Path, origin_port: int, edge_port: int, admin_port: int) -> Path:
    config = folder / "live.toml"
    config.write_text(f"""\
[origins.media]
kind = "media"
listen = "127.0.0.1:{origin_port}"

[origins.media.options]
segment_seconds = 2.0
part_seconds = 0.5
window_seconds = 12.0
rtmp_listen = "127.0.0.1:{free_port()}"

[origins.media.options.streams.bench]
source = "test"
width = 320
height = 180
fps = 25
bitrate = 300000

[edges.bench-edge]
listen = "127.0.0.1:{edge_port}"
admin_listen = "127.0.0.1:{admin_port}"
admin_token = "{ADMIN_TOKEN}"

[distributions.live]
kind = "streaming"
domains = ["127.0.0.1", "localhost"]
origin = "media"
""")
    return config


def live_counters(admin: str) -> dict[str, Any]:
    with urllib.request.urlopen(admin + f"/metrics.json?token={ADMIN_TOKEN}", timeout=10) as response:
        body: dict[str, Any] = json.loads(response.read())
    live: dict[str, Any] = body["live"].get(STREAM, {})
    return live


def delta(after: dict[str, Any], before: dict[str, Any], field_name: str, kind: str) -> int:
    return int(after.get(field_name, {}).get(kind, 0) - before.get(field_name, {}).get(kind, 0))


async def run_hls(base: str, admin: str, origin: str, viewers: int, seconds: float) -> dict[str, Any]:
    before, at_origin = live_counters(admin), origin_objects(origin, "seg")
    errors: list[str] = []
    until = time.monotonic() + seconds
    got = await asyncio.gather(*(hls_viewer(n, base, until, errors) for n in range(viewers)))
    after = live_counters(admin)
    requests, distinct = origin_delta(origin, "seg", at_origin)
    return {
        "viewers": viewers,
        "segments_served": sum(got),
        "origin_segment_requests": requests,
        "distinct_segments": distinct,
        "per_segment": requests / distinct if distinct else float("nan"),
        "edge_says_per_segment": round(
            delta(after, before, "origin_requests", "segment")
            / max(1, delta(after, before, "objects_fetched", "segment")),
            3,
        ),
        "playlist_requests": delta(after, before, "origin_requests", "playlist"),
        "edge_counted_viewers": after.get("viewers", 0),
        "errors": len(errors),
        "first_error": errors[:1],
    }


async def run_ll(base: str, admin: str, origin: str, viewers: int, seconds: float) -> dict[str, Any]:
    at_origin = origin_objects(origin, "part")
    errors: list[str] = []
    arrivals: list[Arrival] = []
    until = time.monotonic() + seconds
    await asyncio.gather(*(ll_viewer(1000 + n, base, until, arrivals, errors) for n in range(viewers)))
    whole = [a.done - a.start for a in arrivals if a.done]
    first = [a.first - a.start for a in arrivals if a.first]
    requests, distinct = origin_delta(origin, "part", at_origin)
    return {
        "viewers": viewers,
        "parts": len(whole),
        "per_part": requests / distinct if distinct else float("nan"),
        "whole_part": _summary(whole),
        "first_bytes": _summary(first),
        "errors": len(errors),
        "first_error": errors[:1],
    }


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    return {
        "median": round(statistics.median(values), 3),
        "p95": round(values[int(0.95 * (len(values) - 1))], 3),
        "max": round(values[-1], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_relay")
    parser.add_argument("--viewers", default="1,10,500", help="HLS viewer counts, comma-separated")
    parser.add_argument("--ll-viewers", default="1,10,100", help="LL-HLS viewer counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each run")
    parser.add_argument("--serve-origin", metavar="CONFIG", help=argparse.SUPPRESS)  # the origin child
    args = parser.parse_args(argv)
    if args.serve_origin:
        return serve_origin(args.serve_origin)
    with tempfile.TemporaryDirectory() as tmp, Children(Path(tmp)) as children:
        ports = free_port(), free_port(), free_port()
        config = write_config(Path(tmp), *ports)
        origin = children.spawn("origin", [sys.executable, "-m", "bench.live_relay", "--serve-origin", str(config)])
        wait_http(origin, ports[0], "/streams")
        edge = children.spawn("edge", [*CDN, "edge", "--config", str(config), "--name", "bench-edge"])
        wait_http(edge, ports[1], "/_cdn/health")
        wait_http(edge, ports[2], "/health")
        base, admin = f"http://127.0.0.1:{ports[1]}", f"http://127.0.0.1:{ports[2]}"
        _wait_live(base)
        runs = [(run_hls, int(v), "HLS") for v in args.viewers.split(",") if v]
        runs += [(run_ll, int(v), "LL-HLS") for v in args.ll_viewers.split(",") if v]
        for run, count, kind in runs:
            progress(f"{count} {kind} viewers for {args.seconds:g} s")
            cpu, started = cpu_seconds(edge.pid), time.monotonic()
            figures = asyncio.run(run(base, admin, f"http://127.0.0.1:{ports[0]}", count, args.seconds))
            figures["edge_cpu_percent"] = round(100 * (cpu_seconds(edge.pid) - cpu) / (time.monotonic() - started), 1)
            print(f"{kind:6s} {json.dumps(figures)}", flush=True)
    return 0


def _wait_live(base: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + PLAYLIST, timeout=5) as response:
                if len(parse(response.read().decode()).segments) >= 2:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the test stream did not start")


if __name__ == "__main__":
    sys.exit(main())
