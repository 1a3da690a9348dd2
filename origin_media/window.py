"""The live window of one rendition: segments and parts in memory, and waiters for them.

Lives on the event loop; the ingest thread sends packager events with `apply`. Readers wait on
a generation event that is replaced at every change, each wait bounded by its caller.
Segments older than the retained window are dropped, so memory is bounded by
(window + a little) x bitrate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from . import packager as pk
from .media import Track
from .playlist import MediaPlaylist, PlaylistPart, PlaylistSegment

ADVANCE_SECONDS = 3.0  # RFC 8216bis 6.2.5.2: the Advance Part Limit is 3 / PART-TARGET parts
PARTS_LISTED_TARGETS = 3  # parts are listed for the last three target durations
RETAIN_EXTRA_SEGMENTS = 2  # kept past the listed window: a player may still be fetching them


@dataclass
class Part:
    msn: int
    index: int
    independent: bool
    chunks: list[bytes] = field(default_factory=list, repr=False)
    duration: float | None = None

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.chunks)


@dataclass
class Segment:
    msn: int
    init_id: int
    discontinuity: bool
    program_date_time: float
    independent: bool = True
    parts: list[Part] = field(default_factory=list)
    duration: float | None = None
    frames: int = 0

    def data(self) -> bytes:
        return b"".join(c for part in self.parts for c in part.chunks)


class LiveWindow:
    def __init__(
        self,
        segment_seconds: float,
        part_seconds: float,
        window_seconds: float,
        prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix = prefix  # put before every media URI in the playlist
        self.segment_seconds = segment_seconds
        self.part_seconds = part_seconds
        self.window_seconds = window_seconds
        self._clock = clock
        self.segments: deque[Segment] = deque()
        self.inits: dict[int, bytes] = {}
        self.init_tracks: dict[int, tuple[Track, ...]] = {}  # what each init segment describes
        self.tracks: tuple[Track, ...] = ()
        self.ended = False  # EXT-X-ENDLIST: once set, never cleared (`restart` makes a new playlist)
        self.between_sessions = False  # the publisher left; it may come back (grace period)
        self.discontinuity_sequence = 0
        self.all_independent = True  # no long GOP split yet in this playlist's life
        self._changed = asyncio.Event()

    def end(self) -> None:
        """The publisher did not come back in time: EXT-X-ENDLIST, for good."""
        self.ended = True
        self._notify()

    def restart(self, prefix: str) -> None:
        """A new playlist at the same URL (after ENDLIST): new media sequence space, new URIs."""
        self.prefix = prefix
        self.segments.clear()
        self.inits.clear()
        self.init_tracks.clear()
        self.ended = self.between_sessions = False
        self.discontinuity_sequence = 0
        self.all_independent = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ---- writing (from the packager) -------------------------------------------------------

    def apply(self, events: list[pk.PackagerEvent]) -> None:
        for event in events:
            self._apply_one(event)
        self._trim()
        self._notify()

    def _apply_one(self, event: pk.PackagerEvent) -> None:
        match event:
            case pk.InitReady(init_id, data, tracks):
                self.inits[init_id] = data
                self.init_tracks[init_id] = self.tracks = tracks
            case pk.SegmentOpened(msn, init_id, discontinuity, pdt, independent):
                assert not self.ended, "an ended playlist never reopens"
                self.between_sessions = False
                self.all_independent = self.all_independent and independent
                self.segments.append(Segment(msn, init_id, discontinuity, pdt, independent))
            case pk.PartOpened(msn, index, independent):
                self.segments[-1].parts.append(Part(msn, index, independent))
            case pk.ChunkReady(data):
                self.segments[-1].parts[-1].chunks.append(data)
            case pk.PartClosed(duration):
                self.segments[-1].parts[-1].duration = duration
            case pk.SegmentClosed(duration, frames):
                self.segments[-1].duration = duration
                self.segments[-1].frames = frames
            case pk.SessionEnded():
                self.between_sessions = True

    def _trim(self) -> None:
        listed = self._listed_segments()
        first = listed[0].msn - RETAIN_EXTRA_SEGMENTS if listed else 0
        while self.segments and self.segments[0].msn < first:
            gone = self.segments.popleft()
            if gone.discontinuity:
                self.discontinuity_sequence += 1
            if gone.init_id not in {s.init_id for s in self.segments}:
                self.inits.pop(gone.init_id, None)
                self.init_tracks.pop(gone.init_id, None)

    # ---- reading ---------------------------------------------------------------------------

    @property
    def target_duration(self) -> int:
        """Fixed for the life of the playlist: the packager never makes a longer segment."""
        return pk.target_seconds(self.segment_seconds)

    @property
    def listed_seconds(self) -> float:
        """At least three target durations, whatever the window (RFC 8216bis 6.2.2)."""
        return max(self.window_seconds, 3 * self.target_duration)

    @property
    def skip_until(self) -> float:
        """CAN-SKIP-UNTIL: six target durations, the least RFC 8216bis 4.4.3.8 allows."""
        return 6.0 * self.target_duration

    def frame_rate(self) -> float:
        """Lead samples per second over the finished segments in the window (0: unknown)."""
        done = [s for s in self.segments if s.duration and s.frames]
        seconds = sum(s.duration or 0.0 for s in done)
        return sum(s.frames for s in done) / seconds if seconds else 0.0

    def last_part(self) -> tuple[int, int]:
        """(msn, index) of the newest finished part, (-1, -1) when none."""
        for segment in reversed(self.segments):
            for part in reversed(segment.parts):
                if part.duration is not None:
                    return part.msn, part.index
        return -1, -1

    def last_full_msn(self) -> int:
        for segment in reversed(self.segments):
            if segment.duration is not None:
                return segment.msn
        return -1

    def open_part(self) -> Part | None:
        if self.ended or not self.segments or not self.segments[-1].parts:
            return None
        part = self.segments[-1].parts[-1]
        return part if part.duration is None else None

    def has(self, msn: int, part: int | None) -> bool:
        """Does the playlist already contain what `_HLS_msn`/`_HLS_part` asked for?"""
        if self.ended:
            return True
        if part is None:
            return self.last_full_msn() >= msn
        return self.last_part() >= (msn, part)

    @property
    def advance_part_limit(self) -> int:
        """How many parts past the last one a blocking reload may ask for (3 / PART-TARGET)."""
        return max(3, math.ceil(ADVANCE_SECONDS / self.part_seconds - 1e-9))

    def too_far_ahead(self, msn: int, part: int | None) -> bool:
        """The 400 rule: more than two segments past the last whole one, or more than the
        Advance Part Limit of parts past the last part."""
        edge_msn = self.last_full_msn()
        if msn > edge_msn + 2:
            return True
        if part is None or msn < edge_msn:
            return False
        last_msn, last_index = self.last_part()
        if msn < last_msn:  # a part of a segment already under way (or one index past its end)
            return False
        if msn == last_msn:
            ahead = part - last_index
        else:  # the rest of the open segment, whole segments between, then `part + 1`
            per_segment = max(1, round(self.segment_seconds / self.part_seconds))
            ahead = max(0, per_segment - 1 - last_index) + (msn - last_msn - 1) * per_segment + part + 1
        return ahead > self.advance_part_limit

    async def wait_until(self, ready: Callable[[], bool], limit: float) -> bool:
        """Wait until `ready()` (re-checked at every change), at most `limit` seconds."""
        deadline = self._clock() + limit
        while not ready():
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return ready()
        return True

    def segment(self, msn: int) -> Segment | None:
        for segment in self.segments:
            if segment.msn == msn:
                return segment
        return None

    def part(self, msn: int, index: int) -> Part | None:
        segment = self.segment(msn)
        if segment is None or index >= len(segment.parts):
            return None
        return segment.parts[index]

    def may_appear(self, msn: int, index: int) -> bool:
        """Is (msn, index) the next part to be opened? Such a request is held, not a 404."""
        if self.ended or not self.segments:
            return False
        last = self.segments[-1]
        return (msn == last.msn and index == len(last.parts)) or (msn == last.msn + 1 and index == 0)

    async def stream_part(self, part: Part, stall_limit: float) -> AsyncIterator[bytes]:
        """The part's bytes, the ones not produced yet as they are produced."""
        sent = 0
        while True:
            while sent < len(part.chunks):
                yield part.chunks[sent]
                sent += 1
            if part.duration is not None or self.ended:
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), stall_limit)
            except TimeoutError:
                return  # the publisher stalled; the client sees a short body and retries

    # ---- playlist --------------------------------------------------------------------------

    def playlist(self, skip: bool = False) -> MediaPlaylist:
        """The media playlist; `skip`: the delta update (`_HLS_skip=YES`), whose oldest
        segments, those wholly before the Skip Boundary, are left out (RFC 8216bis 6.2.5.1)."""
        target = self.target_duration
        listed = self._listed_segments()
        parts_from = self._parts_from_msn(listed, target)
        segments = tuple(self._playlist_segment(s, s.msn >= parts_from) for s in listed)
        # an open segment with no finished part yet has nothing to list
        segments = tuple(s for s in segments if s.duration is not None or s.parts)
        open_part = self.open_part()
        hint = f"{self.prefix}part{open_part.msn}.{open_part.index}.m4s" if open_part else None
        skipped = self._skippable(segments) if skip else 0
        return MediaPlaylist(
            target,
            self.part_seconds,
            self._listed_discontinuities(listed),
            segments[skipped:],
            hint,
            self.ended,
            independent_segments=self.all_independent,
            skip_until=self.skip_until,
            skipped=skipped,
            first_msn=segments[0].msn if segments else 0,
        )

    def _skippable(self, segments: tuple[PlaylistSegment, ...]) -> int:
        """How many leading segments end more than CAN-SKIP-UNTIL before the playlist's end."""
        remaining = sum(s.duration if s.duration is not None else sum(p.duration for p in s.parts) for s in segments)
        count = 0
        for segment in segments:
            if segment.duration is None or remaining - segment.duration < self.skip_until:
                break
            remaining -= segment.duration
            count += 1
        return count

    def _listed_segments(self) -> list[Segment]:
        """The finished segments covering `listed_seconds` back from the newest, and the open one."""
        covered, first = 0.0, None
        for segment in reversed(self.segments):
            if segment.duration is None:
                continue
            first = segment.msn
            covered += segment.duration
            if covered >= self.listed_seconds - 1e-6:
                break
        if first is None:
            return list(self.segments)
        return [s for s in self.segments if s.msn >= first]

    def _listed_discontinuities(self, listed: list[Segment]) -> int:
        """EXT-X-DISCONTINUITY-SEQUENCE: discontinuities no longer listed."""
        first = listed[0].msn if listed else 0
        hidden = sum(1 for s in self.segments if s.msn < first and s.discontinuity)
        return self.discontinuity_sequence + hidden

    def _parts_from_msn(self, listed: list[Segment], target: int) -> int:
        covered = 0.0
        for segment in reversed(listed):
            covered += segment.duration or 0.0
            if covered > PARTS_LISTED_TARGETS * target:
                return segment.msn + 1
        return listed[0].msn if listed else 0

    def _playlist_segment(self, segment: Segment, with_parts: bool) -> PlaylistSegment:
        parts = tuple(
            PlaylistPart(f"{self.prefix}part{p.msn}.{p.index}.m4s", p.duration, p.independent)
            for p in segment.parts
            if with_parts and p.duration is not None
        )
        return PlaylistSegment(
            segment.msn,
            f"{self.prefix}seg{segment.msn}.m4s",
            segment.duration,
            segment.program_date_time,
            segment.discontinuity,
            f"{self.prefix}init{segment.init_id}.mp4",
            parts,
            segment.independent,
        )
