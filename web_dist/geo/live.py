"""The live half of the geography: an LL-HLS test stream at the origin, timed from the user's place.

The origin's location runs a media origin (`cdn origin`, a 320x180 test pattern, 1 s segments,
0.25 s parts); the edge serves it as a streaming distribution. From the client's namespace
`python -m web_dist.geo.live measure PLAN` plays it the way an LL-HLS player starts and follows:

- startup: the multivariant playlist, the media playlist, the init segment and the newest
  independent part (where a low-latency player starts), timed from the first request's start
  to the part's last byte, each viewer on new connections;
- latency behind live: the viewer then follows the live edge with blocking playlist reloads
  (`_HLS_msn`/`_HLS_part`) and fetches each new part; a part's latency is the wall clock when
  its last byte arrives minus its EXT-X-PROGRAM-DATE-TIME (all namespaces share one clock),
  so it includes the part's own duration, the time it takes to be made.

Through the edge, a first viewer starts cold and keeps watching while later viewers join one at
a time: they find the init segment and the parts it fetched in the cache (warm). Viewers
straight to the origin are timed in between.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from streaming.playlist import parse_media, parse_multivariant

LIVE_PORT = 8082
LIVE_DOMAIN = "live.cdn.test"
STREAM = "geo"
SEGMENT_SECONDS, PART_SECONDS, FPS = 1.0, 0.25, 24  # 6 frames a part, a key frame a segment
READY_TIMEOUT = 40.0
REQUEST_TIMEOUT = 15.0


def live_config(origin_url: str, listen: str = f"127.0.0.1:{LIVE_PORT}") -> str:
    """The media origin and the streaming distribution, as TOML to add to a CDN config."""
    return f"""
[origins.live]
kind = "media"
listen = "{listen}"
url = "{origin_url}"

[origins.live.options]
segment_seconds = {SEGMENT_SECONDS}
part_seconds = {PART_SECONDS}
window_seconds = 6.0
rtmp_listen = "127.0.0.1:0"

[origins.live.options.streams.{STREAM}]
source = "test"
width = 320
height = 180
fps = {FPS}
bitrate = 250000

[distributions.live]
kind = "streaming"
domains = ["{LIVE_DOMAIN}"]
origin = "live"
"""


# -- reading playlists (pure) ---------------------------------------------------------------------
@dataclass(frozen=True)
class MediaPart:
    msn: int
    index: int
    start: float  # program date-time, seconds since the epoch
    duration: float
    uri: str
    independent: bool
    map_uri: str


@dataclass(frozen=True)
class LivePlaylist:
    parts: tuple[MediaPart, ...]
    next_part: tuple[int, int]  # (msn, part) the next blocking reload asks for
    hint: str | None = None  # the URI of that part, when the playlist gives a preload hint

    def start_part(self) -> MediaPart:
        """Where a low-latency player starts: the newest independent part."""
        for part in reversed(self.parts):
            if part.independent:
                return part
        raise ValueError("the playlist lists no independent part")


def first_variant(text: str) -> str:
    """The URI of the first variant of a multivariant playlist."""
    variants = parse_multivariant(text)
    if not variants:
        raise ValueError("no #EXT-X-STREAM-INF in the multivariant playlist")
    return variants[0].uri


def parse_media_playlist(text: str) -> LivePlaylist:
    """The parts a live LL-HLS media playlist lists, each with its program date-time (read by
    the load tester's parser, streaming/playlist.py: one HLS parser for the project)."""
    playlist = parse_media(text)
    parts: list[MediaPart] = []
    for segment in playlist.segments:
        clock = segment.program_date_time
        if clock is None:
            continue
        for index, part in enumerate(segment.parts):
            parts.append(
                MediaPart(segment.msn, index, clock, part.duration, part.uri, part.independent, segment.map_uri or "")
            )
            clock += part.duration
    last = playlist.segments[-1] if playlist.segments else None
    if last is None:
        following = (playlist.media_sequence, 0)
    elif last.uri is None:  # in progress: its next part
        following = (last.msn, len(last.parts))
    else:
        following = (last.msn + 1, 0)
    return LivePlaylist(tuple(parts), following, playlist.preload_hint)


# -- one viewer (runs in the client's namespace) --------------------------------------------------
class LiveViewer:
    """Starts playback like an LL-HLS player, then follows the live edge part by part."""

    def __init__(self, base: str, host: str | None) -> None:
        self.base, self.host = base, host
        self.startup: float | None = None
        self.cache: list[str] = []  # x-cache of the startup requests (empty: no edge)
        self._session: Any = None
        self._variant = ""
        self._next: tuple[int, int] = (0, 0)
        self._hint: str | None = None
        self._arrived: dict[tuple[int, int], float | None] = {}  # part -> wall clock of its last byte
        self._starts: dict[tuple[int, int], float] = {}  # part -> its program date-time

    async def __aenter__(self) -> LiveViewer:
        import aiohttp  # only the measuring process needs a client

        self._session = aiohttp.ClientSession(
            headers={"Host": self.host} if self.host else {},
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def _get(self, url: str) -> tuple[str, bytes]:
        """The x-cache header and body of a 200; anything else is an OSError naming the URL."""
        import aiohttp

        try:
            async with self._session.get(url) as resp:
                body = await resp.read()
        except aiohttp.ClientError as exc:
            raise OSError(f"GET {url}: {type(exc).__name__} {exc}") from None
        if resp.status != 200:
            raise OSError(f"GET {url}: {resp.status} {body[:200]!r}")
        return str(resp.headers.get("x-cache", "")), body

    async def start(self) -> None:
        started = time.perf_counter()
        master_url = f"{self.base}/live/{STREAM}/master.m3u8"
        cache, body = await self._get(master_url)
        self._variant = urljoin(master_url, first_variant(body.decode()))
        statuses = [cache]
        cache, body = await self._get(self._variant)
        statuses.append(cache)
        playlist = parse_media_playlist(body.decode())
        part = playlist.start_part()
        for uri in (part.map_uri, part.uri):
            cache, _ = await self._get(urljoin(self._variant, uri))
            statuses.append(cache)
        self.startup = time.perf_counter() - started
        self.cache = [status.split()[0].lower() for status in statuses if status]
        self._next, self._hint = playlist.next_part, playlist.hint

    async def follow(self, done: Callable[[], bool]) -> None:
        """Follow the live edge until `done()`, as LL-HLS asks: each blocking reload (for the
        next part) goes out together with a request for that part (the preload hint), which
        the origin holds and streams as the part is made; parts the reload lists that were not
        asked for yet (a viewer that fell behind) are fetched at once, side by side."""
        fetches: set[asyncio.Task[None]] = set()
        try:
            while not done():
                msn, index = self._next
                if self._hint is not None and self._next not in self._arrived:
                    fetches.add(asyncio.create_task(self._fetch_part(self._next, self._hint, hint=True)))
                _, body = await self._get(f"{self._variant}?_HLS_msn={msn}&_HLS_part={index}")
                playlist = parse_media_playlist(body.decode())
                for part in playlist.parts:
                    key = (part.msn, part.index)
                    self._starts[key] = part.start
                    if key >= (msn, index) and key not in self._arrived:
                        fetches.add(asyncio.create_task(self._fetch_part(key, part.uri)))
                self._next, self._hint = max(playlist.next_part, self._next), playlist.hint
                for task in [task for task in fetches if task.done()]:
                    fetches.discard(task)
                    task.result()  # a listed part that could not be fetched fails the viewer
        finally:
            outcomes = await asyncio.gather(*fetches, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _fetch_part(self, key: tuple[int, int], uri: str, *, hint: bool = False) -> None:
        self._arrived[key] = None  # asked for
        try:
            await self._get(urljoin(self._variant, uri))
        except (OSError, TimeoutError):
            if not hint:  # a hinted part may never come (the stream moved on): not a fault
                raise
            del self._arrived[key]
            return
        self._arrived[key] = time.time()

    def sample(self) -> dict[str, Any]:
        latencies = [
            at - self._starts[key]
            for key, at in sorted(self._arrived.items())
            if at is not None and key in self._starts
        ]
        return {"startup": self.startup, "latencies": latencies, "cache": self.cache}


async def wait_for_stream(base: str) -> None:
    """Poll (straight to the origin) until the stream lists an independent part."""
    deadline = time.monotonic() + READY_TIMEOUT
    async with LiveViewer(base, None) as probe:
        while True:
            try:
                _, body = await probe._get(f"{base}/live/{STREAM}/master.m3u8")
                variant = urljoin(f"{base}/live/{STREAM}/master.m3u8", first_variant(body.decode()))
                _, body = await probe._get(variant)
                parse_media_playlist(body.decode()).start_part()
                return
            except (OSError, ValueError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise OSError(
                        f"the live stream at {base} did not start within {READY_TIMEOUT:.0f} s: {exc}"
                    ) from None
            await asyncio.sleep(0.2)


async def _watch(base: str, host: str | None, seconds: float) -> dict[str, Any]:
    async with LiveViewer(base, host) as viewer:
        await viewer.start()
        until = time.monotonic() + seconds
        await viewer.follow(lambda: time.monotonic() >= until)
    return viewer.sample()


async def measure(origin: str, edge: str, repeat: int, follow: float) -> dict[str, list[dict[str, Any]]]:
    """A first viewer through the edge keeps watching while viewers straight to the origin and
    later viewers through the edge take turns; every viewer's startup and latencies."""
    origin_base, edge_base = f"http://{origin}", f"http://{edge}"
    await wait_for_stream(origin_base)
    samples: dict[str, list[dict[str, Any]]] = {"origin": [], "cold": [], "warm": []}
    stop = False
    async with LiveViewer(edge_base, LIVE_DOMAIN) as first:
        await first.start()
        watching = asyncio.create_task(first.follow(lambda: stop))
        try:
            for _ in range(repeat):
                samples["origin"].append(await _watch(origin_base, None, follow))
                samples["warm"].append(await _watch(edge_base, LIVE_DOMAIN, follow))
        finally:
            stop = True
            await watching
        samples["cold"].append(first.sample())
    return samples


# -- the rows of the report -----------------------------------------------------------------------
@dataclass
class LiveRow:
    """One kind of viewer: its startups and the latencies of the parts it got."""

    label: str
    model_startup: float  # what the link delays alone predict, seconds
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def startup(self) -> float:
        return float(statistics.median(s["startup"] for s in self.samples))

    @property
    def latency(self) -> float:
        return float(statistics.median(x for s in self.samples for x in s["latencies"]))

    @property
    def cache(self) -> str:
        """How the edge answered the startup requests, e.g. "miss miss hit hit"."""
        seen = sorted({" ".join(s["cache"]) or "-" for s in self.samples})
        return "; ".join(seen)


def live_rows(
    rtt_client_origin: float, rtt_client_edge: float, rtt_edge_origin: float, edge: str, origin: str
) -> dict[str, LiveRow]:
    """The rows, with models: a new connection and four requests in turn; through the edge,
    the playlists are fetched from the origin (they live a part), init and part too when cold."""
    return {
        "origin": LiveRow(f"live: straight to the origin ({origin})", 5 * rtt_client_origin),
        "cold": LiveRow(f"live via edge {edge}: first viewer (cold)", 5 * rtt_client_edge + 5 * rtt_edge_origin),
        "warm": LiveRow(f"live via edge {edge}: later viewers (warm)", 5 * rtt_client_edge + 2 * rtt_edge_origin),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web_dist.geo.live")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    cmd = sub.add_parser("measure", help="(in the client's namespace) time live viewers")
    cmd.add_argument("--origin", required=True, help="HOST:PORT of the media origin")
    cmd.add_argument("--edge", required=True, help="HOST:PORT of the edge")
    cmd.add_argument("--repeat", type=int, default=3)
    cmd.add_argument("--follow", type=float, default=4.0, help="seconds each viewer follows the live edge")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(asyncio.run(measure(args.origin, args.edge, args.repeat, args.follow))))
    except (OSError, ValueError) as exc:
        print(f"geo_live: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
