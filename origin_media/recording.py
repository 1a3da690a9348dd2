"""Recordings: a stream's CMAF segments written to disk as they are made, replayable as HLS.

`Recorder.apply` takes the packager events of every rendition of the stream on the ingest
thread (so the file writes never run on the event loop) and keeps, per recording and
rendition, the list of its segments (files in RECORDING/RENDITION/); the HTTP side reads
snapshots under a lock, and a recording's multivariant playlist names every rendition. A recording is bounded by
`max_seconds`: the oldest segments (and the init segments no longer used) are deleted first.
A publisher that comes back within `reconnect_seconds` of leaving continues the recording
after a discontinuity; later, a new recording begins. A recording is closed (its playlist a
VOD one, with EXT-X-ENDLIST) once its publisher has been gone that long.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from . import packager as pk
from .codecs import codec_string
from .media import Track
from .playlist import VariantStream, format_date

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedSegment:
    msn: int
    init_id: int
    duration: float
    program_date_time: float
    discontinuity: bool
    size: int = 0  # bytes: the multivariant playlist's BANDWIDTH


@dataclass
class Recording:
    id: str
    # per rendition, in the stream's order (the first is the recording's clock: start, duration)
    renditions: dict[str, list[RecordedSegment]] = field(default_factory=dict)
    tracks: dict[str, tuple[Track, ...]] = field(default_factory=dict)  # each rendition's, newest
    trimmed: bool = False  # its oldest segments were deleted (bounded by max_seconds)
    left_at: float | None = None  # when its publisher left; None while one publishes

    @property
    def segments(self) -> list[RecordedSegment]:
        return next(iter(self.renditions.values()), [])

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)


@dataclass(frozen=True)
class RecordingView:
    """A snapshot for the HTTP side."""

    id: str
    renditions: Mapping[str, tuple[RecordedSegment, ...]]
    tracks: Mapping[str, tuple[Track, ...]]
    closed: bool
    trimmed: bool

    @property
    def segments(self) -> tuple[RecordedSegment, ...]:
        return next(iter(self.renditions.values()), ())

    @property
    def start(self) -> float:
        return self.segments[0].program_date_time if self.segments else 0.0

    @property
    def end(self) -> float:
        last = self.segments[-1] if self.segments else None
        return last.program_date_time + last.duration if last else 0.0

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)


@dataclass
class _Writer:
    """One rendition's state on the ingest thread."""

    session: int = 0  # publisher sessions seen (one InitReady each)
    init: tuple[int, bytes] | None = None  # the session's init, written with its first segment
    tracks: tuple[Track, ...] = ()
    open: tuple[pk.SegmentOpened, bytearray] | None = None


class Recorder:
    def __init__(
        self, folder: Path, max_seconds: float, reconnect_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.folder = folder
        self.max_seconds = max_seconds
        self.reconnect_seconds = reconnect_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._recordings: list[Recording] = []
        # ingest thread only
        self._current: Recording | None = None
        self._session = 0  # the session `_current` was chosen for
        self._continued = False  # ... and whether it continues an earlier session's recording
        self._writers: dict[str, _Writer] = {}

    # ---- ingest thread ---------------------------------------------------------------------

    def apply(self, rendition: str, events: list[pk.PackagerEvent]) -> None:
        """`events` of the packager of `rendition` (every rendition's, in the stream's order)."""
        writer = self._writers.setdefault(rendition, _Writer())
        try:
            for event in events:
                self._apply_one(rendition, writer, event)
        except OSError as exc:  # a full disk stops the recording, never the stream
            log.error("recording in %s stopped: %s", self.folder, exc)

    def _apply_one(self, rendition: str, writer: _Writer, event: pk.PackagerEvent) -> None:
        match event:
            case pk.InitReady(init_id, data, tracks):
                writer.init, writer.tracks = (init_id, data), tracks
                writer.session += 1
            case pk.SegmentOpened():
                writer.open = (event, bytearray())
            case pk.ChunkReady(data) if writer.open is not None:
                writer.open[1].extend(data)
            case pk.SegmentClosed(duration) if writer.open is not None:
                self._write_segment(rendition, writer, bytes(writer.open[1]), duration)
                writer.open = None
            case pk.SessionEnded():
                with self._lock:
                    if self._current is not None:
                        self._current.left_at = self._clock()

    def _recording_for_session(self) -> tuple[Recording, bool]:
        """(the recording this session writes to, whether it continues an earlier session)."""
        now = self._clock()
        current = self._current
        if current is not None and current.left_at is not None and now - current.left_at <= self.reconnect_seconds:
            current.left_at = None
            return current, True
        recording = Recording(_recording_id(now))
        (self.folder / recording.id).mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._recordings.append(recording)
        return recording, False

    def _write_segment(self, rendition: str, writer: _Writer, data: bytes, duration: float) -> None:
        assert writer.open is not None
        opened = writer.open[0]
        if writer.session > self._session or self._current is None:
            # the first rendition to finish a segment of a new session picks the recording
            self._current, self._continued = self._recording_for_session()
            self._session = writer.session
        recording = self._current
        where = self.folder / recording.id / rendition
        where.mkdir(exist_ok=True)
        if writer.init is not None and not (where / f"init{writer.init[0]}.mp4").exists():
            (where / f"init{writer.init[0]}.mp4").write_bytes(writer.init[1])
        (where / f"seg{opened.msn}.m4s").write_bytes(data)
        segment = RecordedSegment(
            opened.msn,
            opened.init_id,
            duration,
            opened.program_date_time,
            self._continued and opened.discontinuity,
            len(data),
        )
        with self._lock:
            recording.renditions.setdefault(rendition, []).append(segment)
            recording.tracks[rendition] = writer.tracks
        self._trim(rendition)

    def _trim(self, rendition: str) -> None:
        """Oldest first, across recordings, until the rendition's fit in max_seconds."""
        while True:
            with self._lock:
                lists = [(r, r.renditions[rendition]) for r in self._recordings if r.renditions.get(rendition)]
                total = sum(s.duration for _, segments in lists for s in segments)
                if not lists or total <= self.max_seconds:
                    return
                oldest, segments = lists[0]
                gone = segments.pop(0)
                oldest.trimmed = True
                empty = not any(oldest.renditions.values()) and oldest is not self._current
                if empty:
                    self._recordings.remove(oldest)
            self._delete(oldest, rendition, gone, empty)

    def _delete(self, recording: Recording, rendition: str, gone: RecordedSegment, empty: bool) -> None:
        where = self.folder / recording.id
        if empty:
            shutil.rmtree(where, ignore_errors=True)
            return
        (where / rendition / f"seg{gone.msn}.m4s").unlink(missing_ok=True)
        if all(s.init_id != gone.init_id for s in recording.renditions.get(rendition, [])):
            (where / rendition / f"init{gone.init_id}.mp4").unlink(missing_ok=True)

    # ---- HTTP side -------------------------------------------------------------------------

    def recordings(self) -> list[RecordingView]:
        now = self._clock()
        with self._lock:
            return [self._view(r, now) for r in self._recordings if r.segments]

    def recording(self, recording_id: str) -> RecordingView | None:
        return next((r for r in self.recordings() if r.id == recording_id), None)

    def _view(self, recording: Recording, now: float) -> RecordingView:
        closed = recording.left_at is not None and now - recording.left_at > self.reconnect_seconds
        renditions = {name: tuple(segments) for name, segments in recording.renditions.items() if segments}
        return RecordingView(
            recording.id,
            MappingProxyType(renditions),
            MappingProxyType(dict(recording.tracks)),
            closed,
            recording.trimmed,
        )

    def path(self, recording_id: str, rendition: str, name: str) -> Path:
        return self.folder / recording_id / rendition / name


def _recording_id(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"


def render_recording(view: RecordingView, rendition: str) -> str:
    """A rendition's HLS playlist: EVENT while it grows (a plain live playlist once its start
    has been trimmed, as EVENT forbids removing segments), VOD with EXT-X-ENDLIST once closed."""
    segments = view.renditions.get(rendition, ())
    longest = max((s.duration for s in segments), default=1.0)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:6",
        f"#EXT-X-TARGETDURATION:{max(math.ceil(longest - 1e-9), 1)}",  # every EXTINF fits
        f"#EXT-X-MEDIA-SEQUENCE:{segments[0].msn if segments else 0}",
    ]
    if view.closed:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    elif not view.trimmed:
        lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    current_init = None
    for segment in segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if segment.init_id != current_init:
            lines.append(f'#EXT-X-MAP:URI="init{segment.init_id}.mp4"')
            current_init = segment.init_id
        lines += [
            f"#EXT-X-PROGRAM-DATE-TIME:{format_date(segment.program_date_time)}",
            f"#EXTINF:{segment.duration:.5f}".rstrip("0").rstrip(".") + ",",
            f"seg{segment.msn}.m4s",
        ]
    if view.closed:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def recording_variants(view: RecordingView) -> list[VariantStream]:
    """The recording's multivariant playlist: every rendition recorded, BANDWIDTH its peak
    segment bitrate (RFC 8216bis 4.4.6.2), in the stream's order."""
    variants = []
    for name, segments in view.renditions.items():
        tracks = view.tracks.get(name, ())
        video = next((t for t in tracks if t.kind == "video"), None)
        peak = max((s.size * 8 / s.duration for s in segments if s.duration > 0), default=0.0)
        variants.append(
            VariantStream(
                f"{name}/index.m3u8",
                int(peak),
                ",".join(c for c in map(codec_string, tracks) if c),
                video.width if video else 0,
                video.height if video else 0,
            )
        )
    return variants
