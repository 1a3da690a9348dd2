"""One virtual DASH viewer: plays a dynamic (or static) MPD the way dash.js does, over HTTP.

It reloads the MPD (no sooner than half a segment after the last time), starts
`suggestedPresentationDelay` (else three segments) behind the newest segment, fetches the
chosen video Representation's init segment and segments by `$Number$` (moving between
Representations by measured throughput at segment boundaries, as `Viewer` does between HLS
renditions) and the audio Representation's segment of the same number beside each, across
Period boundaries. Latency behind live is wall-clock time minus the segment's end on the MPD's
timeline (availabilityStartTime + Period start + media time).

Same shape as `streaming.viewer.Viewer` (buffer, startup, variants, rendition, switches, host),
so the load test and its report take either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from streaming.buffer import PlaybackBuffer
from streaming.mpd import DashSegment, Mpd, MpdError, Period, Representation, parse_mpd
from streaming.playlist import Variant
from streaming.tally import Tally
from streaming.viewer import (
    EWMA,
    MAX_BUFFER,
    RETRY_SECONDS,
    Fetch,
    FetchResult,
    absolute,
    choose_rendition,
)

START_SEGMENTS = 3  # behind the newest segment, without suggestedPresentationDelay


class DashViewer:
    def __init__(
        self,
        mpd_url: str,
        fetch: Fetch,
        tally: Tally,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.mpd_url = mpd_url
        self.fetch = fetch
        self.tally = tally
        self.clock, self.wall, self.sleep = clock, wall, sleep
        self.buffer = PlaybackBuffer()
        self.requested_at: float | None = None
        self.startup: float | None = None
        self.host = ""
        self.variants: list[Variant] = []  # the video Representations (uri: their id)
        self.rendition = 0
        self.switches = 0
        self.estimate: float | None = None
        self.playlist = None  # the report's HLS-only figures: none here
        self.mpd: Mpd | None = None
        self.base = mpd_url  # what relative URLs resolve against (after redirects)
        self.number: int | None = None  # the next segment to fetch
        self.inits: dict[str, str] = {}  # kind -> init URL fetched last
        self.ended = False
        self._loaded_at = -1e9

    async def run(self) -> None:
        self.requested_at = self.clock()
        while not self.ended:
            await self._step()
        now = self.clock()
        left = self.buffer.buffered(now)
        self.buffer.finish(now + left)
        await self.sleep(left)

    async def _step(self) -> None:
        if self.mpd is None:
            return await self._reload()
        if self.number is None:
            self.number = start_number(self.mpd, self._video_id())
            if self.number is None:
                return await self._reload()
        found = self._find(self.mpd, self.number)
        if found is None:
            if not self.mpd.dynamic:
                self.ended = True
                return None
            return await self._reload()
        period, video, audio = found
        ahead = self.buffer.buffered(self.clock()) - MAX_BUFFER
        if ahead > 0:
            await self.sleep(ahead)
        if not await self._fetch_segment(period, video, audio):
            await self.sleep(RETRY_SECONDS)

    def _video_id(self) -> str | None:
        return self.variants[self.rendition].uri if self.variants else None

    def _find(self, mpd: Mpd, number: int) -> tuple[Period, Representation, Representation | None] | None:
        """The period holding segment `number` of our video Representation, or the first after
        it (a gap between periods is skipped); None: not listed yet."""
        wanted = self._video_id()
        for period in mpd.periods:
            videos = period.of_kind("video") or period.of_kind("audio")
            video = next((r for r in videos if r.id == wanted), videos[0] if videos else None)
            if video is None or not video.segments:
                continue
            if video.segments[0].number > number:  # fell behind, or a later period: move on
                if number < first_number(mpd):
                    self.tally.error("fell behind the live window")
                self.number = number = video.segments[0].number
            if video.segment(number) is not None:
                audios = period.of_kind("audio") if video.kind == "video" else []
                return period, video, audios[0] if audios else None
        return None

    async def _fetch_segment(self, period: Period, video: Representation, audio: Representation | None) -> bool:
        assert self.number is not None
        segment = video.segment(self.number)
        assert segment is not None
        for rep in (video, audio):
            if rep is not None and not await self._init(rep):
                return False
        result = await self._get(absolute(self.base, segment.url))
        if result is None:
            return False
        size, seconds = len(result.body), result.transfer_seconds
        companion = audio.segment(self.number) if audio is not None else None
        if companion is not None:
            sound = await self._get(absolute(self.base, companion.url))
            if sound is None:
                return False
            size += len(sound.body)
        self._played(period, video, segment, result)
        self._adapt(size, seconds)
        return True

    async def _init(self, rep: Representation) -> bool:
        url = absolute(self.base, rep.initialization)
        if self.inits.get(rep.kind) == url:
            return True
        if await self._get(url) is None:
            return False
        self.inits[rep.kind] = url
        return True

    def _played(self, period: Period, rep: Representation, segment: DashSegment, result: FetchResult) -> None:
        now = self.clock()
        duration = segment.duration / rep.timescale
        self.buffer.append(duration, now)
        self.number = segment.number + 1
        if self.startup is None and self.requested_at is not None:
            self.startup = now - self.requested_at
        self.tally.media(result.seconds, duration)
        if self.mpd is not None and self.mpd.dynamic:
            end = self.mpd.availability_start + period.start + rep.seconds(segment.start + segment.duration)
            self.tally.latency(self.wall() - end + self.buffer.buffered(now))

    async def _reload(self) -> None:
        if self.mpd is not None:  # no sooner than half a segment after the last reload
            wait = self._loaded_at + self._segment_seconds() / 2 - self.clock()
            if wait > 0:
                await self.sleep(wait)
        self._loaded_at = self.clock()
        result = await self._get(self.mpd_url)
        if result is None:
            return await self.sleep(RETRY_SECONDS)
        try:
            mpd = parse_mpd(result.body.decode("utf-8", "replace"))
        except MpdError:
            self.tally.error("bad manifest")
            return await self.sleep(RETRY_SECONDS)
        self.host = urlsplit(result.url).netloc
        self.base, self.mpd = result.url, mpd
        if not self.variants and mpd.periods:
            reps = mpd.periods[-1].of_kind("video") or mpd.periods[-1].of_kind("audio")
            self.variants = [Variant(r.id, r.bandwidth, f"{r.width}x{r.height}" if r.width else "") for r in reps]

    def _segment_seconds(self) -> float:
        if self.mpd is None:
            return 2 * RETRY_SECONDS
        for period in reversed(self.mpd.periods):
            for rep in period.representations:
                if rep.segments:
                    return rep.segments[-1].duration / rep.timescale
        return self.mpd.minimum_update_period

    def _adapt(self, size: int, seconds: float) -> None:
        if len(self.variants) < 2:
            return
        sample = size * 8 / max(seconds, 1e-3)
        self.estimate = sample if self.estimate is None else EWMA * sample + (1 - EWMA) * self.estimate
        choice = choose_rendition(self.variants, self.estimate)
        if choice != self.rendition:  # DASH segments are aligned: any boundary will do
            self.rendition = choice
            self.switches += 1

    async def _get(self, url: str) -> FetchResult | None:
        result = await self.fetch(url)
        self.tally.request(len(result.body))
        if result.status == 200:
            return result
        self.tally.error(result.error or f"http {result.status}")
        return None


def is_mpd(path: str) -> bool:
    """Does `path` name a DASH manifest (the load tester then plays it with a DashViewer)?"""
    return path.split("?", 1)[0].endswith(".mpd")


def first_number(mpd: Mpd) -> int:
    numbers = [r.segments[0].number for p in mpd.periods for r in p.representations if r.segments]
    return min(numbers, default=0)


def start_number(mpd: Mpd, rep_id: str | None) -> int | None:
    """Where a player starts: a static MPD at its first segment; a dynamic one
    `suggestedPresentationDelay` (else three segments) behind the end of the newest."""
    if not mpd.periods:
        return None
    period = mpd.periods[-1]
    reps = period.of_kind("video") or period.of_kind("audio")
    rep = next((r for r in reps if r.id == rep_id), reps[0] if reps else None)
    if rep is None or not rep.segments:
        return None
    if not mpd.dynamic:
        return first_number(mpd)
    delay = mpd.suggested_presentation_delay
    budget = delay if delay is not None else START_SEGMENTS * rep.segments[-1].duration / rep.timescale
    chosen = rep.segments[0]
    for segment in reversed(rep.segments):
        chosen = segment
        budget -= segment.duration / rep.timescale
        if budget <= 1e-6:
            break
    return chosen.number
