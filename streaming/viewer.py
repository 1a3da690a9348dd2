"""One virtual viewer: plays a live HLS / LL-HLS stream the way a player does, over HTTP only.

It fetches the multivariant playlist, picks a rendition (and moves between renditions by
measured throughput when there are several), follows the media playlist (part by part with
blocking reload `_HLS_msn`/`_HLS_part` when the playlist offers EXT-X-PART and
CAN-BLOCK-RELOAD, else segment by segment with reloads every target duration), and keeps a
`PlaybackBuffer`. At the live edge of an LL-HLS playlist it also asks for the part named by
EXT-X-PRELOAD-HINT at once, beside the blocking reload, as Apple's players do: the server holds
that request until the part exists and streams it as it is made, so the part is there when the
playlist lists it. Startup time runs from the first request to the first playable media;
latency behind live is wall-clock time minus the program date-time at the playhead.

The clocks, the sleep and the HTTP fetch are passed in: the load test gives real ones.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from urllib.parse import urljoin, urlsplit

from streaming.buffer import PlaybackBuffer
from streaming.playlist import (
    MediaPlaylist,
    PlaylistError,
    Variant,
    blocking_directive,
    parse_media,
    parse_multivariant,
    start_position,
)
from streaming.tally import Tally

SAFETY = 0.7  # a rendition is chosen when its BANDWIDTH fits in this share of the estimate
EWMA = 0.3  # weight of a new throughput sample
RETRY_SECONDS = 0.5
MAX_BUFFER = 30.0  # seconds of media a player keeps ahead (hls.js's maxBufferLength)
MAX_HINTS = 2  # preload-hinted requests in flight per viewer; older ones are given up


@dataclass(frozen=True)
class FetchResult:
    status: int  # 0: no HTTP answer
    body: bytes
    url: str  # after redirects: relative URIs resolve against it
    seconds: float
    error: str | None = None  # "connect", "timeout", "reset", ... when status is 0
    cache_status: str = ""  # the Cache-Status header, if any
    transfer_seconds: float = 0.0  # from the response head to the last byte

    @property
    def edge(self) -> str:
        """Who answered: the edge its Cache-Status names first, else the URL's host and port."""
        name = self.cache_status.split(";", 1)[0].split(",", 1)[0].strip()
        return name or urlsplit(self.url).netloc


Fetch = Callable[[str], Awaitable[FetchResult]]


@dataclass(frozen=True)
class MediaUnit:
    """A part or a whole segment to fetch next."""

    url: str
    duration: float
    date_end: float | None  # program date-time at its end
    map_url: str | None
    after: tuple[int, int]  # the position that follows it


@dataclass
class Hint:
    """A request for a preload-hinted part, sent before any playlist lists the part."""

    task: asyncio.Task[FetchResult]
    sent_at: float


class Viewer:
    def __init__(
        self,
        master_url: str,
        fetch: Fetch,
        tally: Tally,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.master_url = master_url
        self.fetch = fetch
        self.tally = tally
        self.clock, self.wall, self.sleep = clock, wall, sleep
        self.buffer = PlaybackBuffer()
        self.requested_at: float | None = None
        self.startup: float | None = None
        self.host = ""  # where the multivariant playlist finally came from (edge, after a 302)
        self.variants: list[Variant] = []
        self.rendition = 0
        self.switches = 0
        self.estimate: float | None = None  # bits per second
        self.playlist: MediaPlaylist | None = None
        self.playlist_url = ""
        self.position: tuple[int, int] | None = None
        self.low_latency = False  # the last playlist offered parts and blocking reload
        self.init_url: str | None = None
        self.ended = False
        self._reloaded_at = -1e9
        self._last_status = 0
        self._refused = False  # the last blocking reload got a 4xx: ask once without directives
        self._listed_at = 0.0  # when the current playlist arrived
        self._hints: dict[str, Hint] = {}  # by absolute URL, oldest first

    # -- the player loop ---------------------------------------------------------------------
    async def run(self) -> None:
        """Plays until the stream ends or the task is cancelled (the load test's deadline)."""
        self.requested_at = self.clock()
        try:
            while not self.variants:
                await self._open()
            while not self.ended:
                await self._step()
        finally:
            self._drop_hints()
        now = self.clock()
        left = self.buffer.buffered(now)
        self.buffer.finish(now + left)
        await self.sleep(left)  # watching what is buffered

    async def _open(self) -> None:
        result = await self._get(self.master_url)
        if result is None:
            return await self.sleep(RETRY_SECONDS)
        self.host = urlsplit(result.url).netloc
        try:
            variants = parse_multivariant(result.body.decode("utf-8", "replace"))
        except PlaylistError:
            self._fault("bad playlist")
            return await self.sleep(RETRY_SECONDS)
        if not variants:  # a media playlist given directly
            variants = [Variant(result.url, 0)]
        self.variants = [Variant(absolute(result.url, v.uri), v.bandwidth, v.resolution) for v in variants]
        self.rendition = 0  # the first listed, as hls.js does before it has measured anything

    async def _step(self) -> None:
        if self.playlist is None:
            return await self._reload()
        if self.position is None:
            self.position = start_position(self.playlist)
        unit = self._next_unit(self.playlist, self.position)
        if unit is None:
            if self.playlist.ended and self.position[0] >= self.playlist.next_msn():
                self.ended = True
                return None
            self._request_hint(self.playlist)  # at the live edge: what comes next, held for us
            return await self._reload()
        ahead = self.buffer.buffered(self.clock()) - MAX_BUFFER
        if ahead > 0:  # on demand: no further ahead than a player buffers
            await self.sleep(ahead)
        if unit.map_url is not None and unit.map_url != self.init_url:
            if await self._get(unit.map_url) is None:
                return await self.sleep(RETRY_SECONDS)
            self.init_url = unit.map_url
        await self._fetch_media(unit)

    def _next_unit(self, playlist: MediaPlaylist, position: tuple[int, int]) -> MediaUnit | None:
        msn, part = position
        if msn < playlist.media_sequence:  # fell out of the live window: rejoin at the live edge
            self.tally.error("fell behind the live window")
            self.position = msn, part = start_position(playlist)
        segment = playlist.segment(msn)
        if segment is None:
            return None
        base, date = self.playlist_url, segment.program_date_time
        if playlist.low_latency and part < len(segment.parts):
            done = sum(p.duration for p in segment.parts[: part + 1])
            return MediaUnit(
                absolute(base, segment.parts[part].uri),
                segment.parts[part].duration,
                None if date is None else date + done,
                _join(base, segment.map_uri),
                (msn, part + 1),
            )
        if segment.uri is None:
            return None  # its next part is not out yet
        if part > 0:  # every part of a finished segment played: on to the next
            self.position = (msn + 1, 0)
            return self._next_unit(playlist, self.position)
        return MediaUnit(
            absolute(base, segment.uri),
            segment.duration,
            None if date is None else date + segment.duration,
            _join(base, segment.map_uri),
            (msn + 1, 0),
        )

    async def _reload(self) -> None:
        variant = self.variants[self.rendition]
        url = variant.uri
        if self.low_latency and self.position is not None and not self._refused:
            msn, part = self.position
            if self.playlist is not None:
                msn, part = blocking_directive(self.playlist, msn, part)
            url += ("&" if "?" in url else "?") + f"_HLS_msn={msn}&_HLS_part={part}"
        elif self.playlist is not None:  # classic HLS: no sooner than a (half) target duration
            wait = self._reloaded_at + self.playlist.target_duration / 2 - self.clock()
            if wait > 0:
                await self.sleep(wait)
        self._reloaded_at = self.clock()
        result = await self._get(url)
        self._refused = result is None and self._last_status // 100 == 4 and "_HLS_msn=" in url
        if result is None:  # refused: at once without directives, else after a pause
            return None if self._refused else await self.sleep(RETRY_SECONDS)
        try:
            playlist = parsed_media(result.body)
        except PlaylistError:
            self._fault("bad playlist")
            return await self.sleep(RETRY_SECONDS)
        self.playlist, self.playlist_url = playlist, result.url
        self.low_latency = playlist.low_latency
        self._listed_at = self.clock()

    async def _fetch_media(self, unit: MediaUnit) -> None:
        hinted = await self._hinted(unit.url)
        result = hinted or await self._get(unit.url)
        if result is None:
            return await self.sleep(RETRY_SECONDS)
        now = self.clock()
        self.buffer.append(unit.duration, now)
        self.position = unit.after
        if self.startup is None and self.requested_at is not None:
            self.startup = now - self.requested_at
        # a hinted part's wait is what is left after the playlist listed it; its transfer
        # (bytes as the encoder makes them) measures the encoder, not the network
        self.tally.media(result.seconds, unit.duration)
        if unit.date_end is not None:
            self.tally.latency(self.wall() - unit.date_end + self.buffer.buffered(now))
        if hinted is None:
            self._adapt(len(result.body), result.transfer_seconds)

    # -- preload hints -----------------------------------------------------------------------
    def _request_hint(self, playlist: MediaPlaylist) -> None:
        if not playlist.low_latency or playlist.ended or playlist.preload_hint is None:
            return
        url = absolute(self.playlist_url, playlist.preload_hint)
        if url in self._hints:
            return
        while len(self._hints) >= MAX_HINTS:  # never listed (a restart, a gap): give it up
            self._drop_hint(next(iter(self._hints)))
        self._hints[url] = Hint(asyncio.ensure_future(self._get_hinted(url)), self.clock())

    async def _get_hinted(self, url: str) -> FetchResult:
        result = await self.fetch(url)
        self.tally.request(len(result.body))
        return result

    async def _hinted(self, url: str) -> FetchResult | None:
        """The answer to an earlier hinted request for `url`, with `seconds` counted from when
        the playlist listed the part; None if there was none or it failed (fetched again then)."""
        hint = self._hints.pop(url, None)
        if hint is None:
            return None
        result = await hint.task
        if result.status != 200:
            self.tally.hint(used=False)
            return None
        self.tally.hint(used=True)
        waited = max(0.0, hint.sent_at + result.seconds - max(self._listed_at, hint.sent_at))
        return replace(result, seconds=waited)

    def _drop_hint(self, url: str) -> None:
        self._hints.pop(url).task.cancel()
        self.tally.hint(used=False)

    def _drop_hints(self) -> None:
        """At the end of play or on a rendition switch. Requests still held are cancelled and
        not counted: the viewer left before the part could exist."""
        for hint in self._hints.values():
            hint.task.cancel()
        self._hints.clear()

    # -- rendition choice --------------------------------------------------------------------
    def _adapt(self, size: int, seconds: float) -> None:
        """Throughput from the body's transfer time: the wait for the head of a small part is
        mostly latency (and queueing in a busy load tester), not bandwidth."""
        if len(self.variants) < 2:
            return
        sample = size * 8 / max(seconds, 1e-3)
        self.estimate = sample if self.estimate is None else EWMA * sample + (1 - EWMA) * self.estimate
        choice = choose_rendition(self.variants, self.estimate)
        at_boundary = self._at_segment_boundary()  # a switch lands where the next segment starts
        if choice != self.rendition and at_boundary:
            self.rendition = choice
            self.switches += 1
            self.playlist = None  # the new rendition's playlist, asked for at our position
            self._drop_hints()

    def _at_segment_boundary(self) -> bool:
        """Is the next unit the start of a segment? (msn, 0), or every part of a finished
        segment played: LL-HLS positions stay (msn, parts) until the next segment is asked for."""
        if self.position is None or self.position[1] == 0:
            return True
        segment = None if self.playlist is None else self.playlist.segment(self.position[0])
        return segment is not None and segment.uri is not None and self.position[1] >= len(segment.parts)

    # -- HTTP --------------------------------------------------------------------------------
    async def _get(self, url: str) -> FetchResult | None:
        result = await self.fetch(url)
        self._last_status = result.status
        self.tally.request(len(result.body))
        if result.status == 200:
            return result
        self.tally.error(result.error or f"http {result.status}", result.url, result.edge)
        return None

    def _fault(self, kind: str) -> None:
        self.tally.error(kind)


# Every viewer resolves the same few URIs against the same few bases: join each pair once.
absolute = functools.lru_cache(maxsize=8192)(urljoin)


@functools.lru_cache(maxsize=64)
def parsed_media(body: bytes) -> MediaPlaylist:
    """Viewers of one stream get the same playlist bytes from the edge: parse each once.
    (Viewers only read a MediaPlaylist, so sharing one is safe.)"""
    return parse_media(body.decode("utf-8", "replace"))


def choose_rendition(variants: list[Variant], estimate: float) -> int:
    """The index of the highest-bandwidth variant that fits SAFETY x estimate (else the lowest)."""
    ranked = sorted(range(len(variants)), key=lambda i: variants[i].bandwidth)
    best = ranked[0]
    for index in ranked:
        if variants[index].bandwidth <= SAFETY * estimate:
            best = index
    return best


def _join(base: str, uri: str | None) -> str | None:
    return None if uri is None else absolute(base, uri)
