"""Packets in, CMAF init / parts / segments out: the LL-HLS cutting rules.

`CmafPackager` is synchronous and does no I/O: every call returns the events it produced, and
the caller (the ingest thread) hands them to the event loop. Rules:
- a segment starts on a keyframe of the lead track (video, else the first track), once the
  open one has reached its configured length; a GOP longer than the target duration (fixed:
  the configured length rounded up) is split, so a segment never outgrows EXT-X-TARGETDURATION
  (such a segment starts with a part that is not independent, and a warning is logged);
- a part is closed before a sample that would carry it past the part target, so every part
  but a segment's last is within (PART-TARGET - one frame, PART-TARGET];
- each lead sample becomes its own moof+mdat chunk (with the other tracks' queued samples), so a
  part in progress can be streamed out frame by frame to a client holding its preload hint.
A lead sample is emitted when the next one arrives, because only then is its duration known.
Timestamps are shifted so that every session continues the previous one's timeline.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

from . import fmp4
from .media import MediaPacket, SessionStart, Track

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitReady:
    init_id: int
    data: bytes = field(repr=False)
    tracks: tuple[Track, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class SegmentOpened:
    msn: int
    init_id: int
    discontinuity: bool
    program_date_time: float
    independent: bool = True  # starts on a keyframe (False: a long GOP split)


@dataclass(frozen=True)
class PartOpened:
    msn: int
    index: int
    independent: bool


@dataclass(frozen=True)
class ChunkReady:
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class PartClosed:
    duration: float


@dataclass(frozen=True)
class SegmentClosed:
    duration: float
    frames: int = 0  # lead samples in it


@dataclass(frozen=True)
class SessionEnded:
    pass


PackagerEvent = InitReady | SegmentOpened | PartOpened | ChunkReady | PartClosed | SegmentClosed | SessionEnded

_AUDIO_RESYNC_SECONDS = 0.1  # audio timestamps further off than this are a real gap


@dataclass
class _Pending:
    time: int
    offset: int
    sync: bool
    data: bytes


def _frame_ticks(track: Track) -> int:
    """One audio frame (1024 AAC samples) in the track's fMP4 timescale."""
    scale = fmp4.timescale(track)
    return track.frame_samples * scale // (track.sample_rate or scale)


def _follow_count(actual: int, expected: int, track: Track) -> int:
    """Audio durations are exact sample counts; source timestamps (FLV: milliseconds) are
    not, so follow our own count unless the source really jumped."""
    close = abs(actual - expected) <= _AUDIO_RESYNC_SECONDS * fmp4.timescale(track)
    return expected if close else actual


def target_seconds(segment_seconds: float) -> int:
    """EXT-X-TARGETDURATION, fixed for the life of a playlist: the configured length rounded
    up (a keyframe-aligned cut may end a segment up to half a frame early, never later)."""
    return max(1, math.ceil(segment_seconds - 1e-9))


def keyframe_cuts(elapsed: float, duration: int, segment_ticks: float, target_ticks: int) -> bool:
    """Whether a keyframe `elapsed` ticks into the open segment, lasting `duration` ticks, opens the
    next one: once the segment has its length (within half a frame), or when keeping this frame
    in it would carry it past the target duration. An encoder that places keyframes (WHIP's)
    asks the same question, so its keyframes are the ones cut."""
    return elapsed >= segment_ticks - duration / 2 or elapsed + duration > target_ticks + 1


class CmafPackager:
    """Cuts one rendition; one instance lives as long as the live stream (across sessions)."""

    def __init__(self, segment_seconds: float, part_seconds: float, name: str = "") -> None:
        self.segment_seconds = segment_seconds
        self.part_seconds = part_seconds
        self.target_seconds = target_seconds(segment_seconds)
        self.name = name  # for the log
        self.warning: str | None = None  # why this source does not fit the targets, if it does not
        self._sessions = 0
        self._msn = -1
        self._sequence = 0
        self._next_time: dict[int, int] = {}  # per track index: end of the last sample
        self._reset_session()

    def _reset_session(self) -> None:
        self._tracks: tuple[Track, ...] = ()
        self._lead = 0
        self._shift: float | None = None  # seconds added to source time to reach our timeline
        self._pending: _Pending | None = None
        self._queued: dict[int, list[fmp4.Sample]] = {}
        self._segment_start: int | None = None
        self._part_start = 0
        self._part_index = 0
        self._last_duration = 0
        self._origin = 0
        self._wall_clock = 0.0
        self._clock_source: float | None = None
        self._frames = 0
        self._warned: set[str] = set()
        self._session_next: dict[int, int] = {}  # per non-lead track: end of its last sample

    # ---- session lifecycle -----------------------------------------------------------------

    def start_session(self, start: SessionStart) -> list[PackagerEvent]:
        self._reset_session()
        self._sessions += 1
        self.warning = None  # about this session's source
        self._tracks = start.tracks
        self._lead = next((i for i, t in enumerate(start.tracks) if t.kind == "video"), 0)
        self._queued = {i: [] for i in range(len(start.tracks)) if i != self._lead}
        self._wall_clock = start.wall_clock
        self._clock_source = start.clock_source
        return [InitReady(self._sessions, fmp4.init_segment(start.tracks), start.tracks)]

    def end_session(self) -> list[PackagerEvent]:
        events: list[PackagerEvent] = []
        if self._pending is not None:
            self._place(self._pending, self._last_duration or self._default_duration(), events)
            self._pending = None
        if self._segment_start is not None:
            self._flush_queued(events)
            self._close_segment(events)
        self._segment_start = None
        events.append(SessionEnded())
        return events

    # ---- packets ---------------------------------------------------------------------------

    def push(self, packet: MediaPacket) -> list[PackagerEvent]:
        events: list[PackagerEvent] = []
        if packet.track == self._lead:
            self._push_lead(packet, events)
        elif self._shift is not None and packet.track in self._queued:
            self._push_other(packet)
        return events

    def _push_lead(self, packet: MediaPacket, events: list[PackagerEvent]) -> None:
        if self._tracks[self._lead].kind == "audio" and not packet.keyframe:
            packet = replace(packet, keyframe=True)  # every audio frame stands on its own
        if self._shift is None:
            if not packet.keyframe:
                return  # a stream can only start at a keyframe
            self._anchor(packet)
        time, offset = self._map(packet)
        pending = self._pending
        lead = self._tracks[self._lead]
        if pending is not None and lead.kind == "audio":  # audio only: on the sample count
            time = _follow_count(time, pending.time + _frame_ticks(lead), lead)
        if pending is not None:
            duration = time - pending.time
            if duration <= 0:  # broken timestamps: keep the timeline moving anyway
                duration = self._last_duration or self._default_duration()
                time = pending.time + duration
            self._place(pending, duration, events)
        self._pending = _Pending(time, offset, packet.keyframe, packet.data)

    def _push_other(self, packet: MediaPacket) -> None:
        track = self._tracks[packet.track]
        actual = self._scaled(packet.dts, track)
        # this session's own count: a new session's audio starts where its timestamps say,
        # not snapped to the end of the previous session's audio
        expected = self._session_next.get(packet.track)
        time = actual if expected is None else _follow_count(actual, expected, track)
        if time < self._next_time.get(packet.track, 0):
            return  # overlaps what is already out (e.g. audio from before the first keyframe)
        duration = _frame_ticks(track)
        self._queued[packet.track].append(fmp4.Sample(time, duration, 0, True, packet.data))
        self._next_time[packet.track] = self._session_next[packet.track] = time + duration

    # ---- timeline --------------------------------------------------------------------------

    def _anchor(self, first: MediaPacket) -> None:
        """Choose the shift that puts this session right after the previous one."""
        lead = self._tracks[self._lead]
        source_seconds = float(first.dts * lead.time_base)
        resume_seconds = max(
            (end / fmp4.timescale(self._tracks[i]) for i, end in self._next_time.items() if i < len(self._tracks)),
            default=0.0,
        )
        self._shift = resume_seconds - source_seconds
        self._origin = self._scaled(first.dts, lead)
        if self._clock_source is not None:  # the wall clock at this first packet
            self._wall_clock += source_seconds - self._clock_source

    def _scaled(self, ticks: int, track: Track) -> int:
        assert self._shift is not None
        return round((float(ticks * track.time_base) + self._shift) * fmp4.timescale(track))

    def _map(self, packet: MediaPacket) -> tuple[int, int]:
        lead = self._tracks[self._lead]
        time = self._scaled(packet.dts, lead)
        return time, self._scaled(packet.pts, lead) - time

    def _default_duration(self) -> int:
        lead = self._tracks[self._lead]
        return _frame_ticks(lead) if lead.kind == "audio" else fmp4.timescale(lead) // 25

    # ---- cutting ---------------------------------------------------------------------------

    def _place(self, sample: _Pending, duration: int, events: list[PackagerEvent]) -> None:
        scale = fmp4.timescale(self._tracks[self._lead])
        if duration > self.part_seconds * scale + 1:
            self._warn(
                "frame", f"frames of {duration / scale:.3f} s are longer than the part target ({self.part_seconds} s)"
            )
        start = self._segment_start
        too_long = start is not None and sample.time + duration - start > self.target_seconds * scale + 1
        if start is None:
            self._open_segment(sample.time, events)
        elif sample.sync and keyframe_cuts(
            sample.time - start, duration, self.segment_seconds * scale, self.target_seconds * scale
        ):
            self._flush_queued(events)
            self._close_segment(events)
            self._open_segment(sample.time, events)
        elif too_long:
            self._warn(
                "gop",
                f"keyframe interval longer than the target duration "
                f"({self.target_seconds} s): segments split between keyframes",
            )
            self._flush_queued(events)
            self._close_segment(events)
            self._open_segment(sample.time, events, independent=sample.sync)
        elif sample.time + duration - self._part_start > self.part_seconds * scale + 1:
            self._flush_queued(events)
            self._close_part(sample.time, events)
            self._open_part(sample.time, sample.sync, events)
        self._last_duration = duration
        self._frames += 1
        self._next_time[self._lead] = sample.time + duration
        lead = fmp4.Sample(sample.time, duration, sample.offset, sample.sync, sample.data)
        self._emit_chunk([fmp4.TrackRun(self._lead + 1, (lead,)), *self._drain_queued()], events)

    def _warn(self, kind: str, text: str) -> None:
        if kind not in self._warned:  # once per session and kind
            self._warned.add(kind)
            self.warning = text
            log.warning("stream %s: %s", self.name or "?", text)

    def _open_segment(self, time: int, events: list[PackagerEvent], independent: bool = True) -> None:
        scale = fmp4.timescale(self._tracks[self._lead])
        self._msn += 1
        self._segment_start = time
        self._frames = 0
        pdt = self._wall_clock + (time - self._origin) / scale
        discontinuity = self._sessions > 1 and time == self._origin
        events.append(SegmentOpened(self._msn, self._sessions, discontinuity, pdt, independent))
        self._part_index = -1
        self._open_part(time, independent, events)

    def _open_part(self, time: int, independent: bool, events: list[PackagerEvent]) -> None:
        self._part_index += 1
        self._part_start = time
        events.append(PartOpened(self._msn, self._part_index, independent))

    def _close_part(self, time: int, events: list[PackagerEvent]) -> None:
        scale = fmp4.timescale(self._tracks[self._lead])
        events.append(PartClosed((time - self._part_start) / scale))

    def _close_segment(self, events: list[PackagerEvent]) -> None:
        assert self._segment_start is not None
        end = self._next_time[self._lead]
        self._close_part(end, events)
        scale = fmp4.timescale(self._tracks[self._lead])
        events.append(SegmentClosed((end - self._segment_start) / scale, self._frames))

    def _drain_queued(self) -> list[fmp4.TrackRun]:
        runs = [fmp4.TrackRun(i + 1, tuple(samples)) for i, samples in self._queued.items() if samples]
        for samples in self._queued.values():
            samples.clear()
        return runs

    def _flush_queued(self, events: list[PackagerEvent]) -> None:
        """Queued audio belongs before the boundary about to be cut."""
        runs = self._drain_queued()
        if runs:
            self._emit_chunk(runs, events)

    def _emit_chunk(self, runs: list[fmp4.TrackRun], events: list[PackagerEvent]) -> None:
        self._sequence += 1
        events.append(ChunkReady(fmp4.fragment(self._sequence, runs)))
