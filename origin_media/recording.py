"""Recordings: a stream's CMAF segments written to disk as they are made, replayable as HLS.

`Recorder.apply` takes the packager events of the stream's first rendition on the ingest
thread (so the file writes never run on the event loop) and keeps, per recording, the list of
its segments; the HTTP side reads snapshots under a lock. A recording is bounded by
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import packager as pk
from .playlist import format_date

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedSegment:
    msn: int
    init_id: int
    duration: float
    program_date_time: float
    discontinuity: bool


@dataclass
class Recording:
    id: str
    segments: list[RecordedSegment] = field(default_factory=list)
    trimmed: bool = False  # its oldest segments were deleted (bounded by max_seconds)
    left_at: float | None = None  # when its publisher left; None while one publishes

    @property
    def start(self) -> float:
        return self.segments[0].program_date_time if self.segments else 0.0

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)


@dataclass(frozen=True)
class RecordingView:
    """A snapshot for the HTTP side."""

    id: str
    segments: tuple[RecordedSegment, ...]
    closed: bool
    trimmed: bool

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


class Recorder:
    def __init__(self, folder: Path, max_seconds: float, reconnect_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder = folder
        self.max_seconds = max_seconds
        self.reconnect_seconds = reconnect_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._recordings: list[Recording] = []
        # ingest thread only
        self._current: Recording | None = None
        self._init: tuple[int, bytes] | None = None  # the session's init, written with its first segment
        self._open: tuple[pk.SegmentOpened, bytearray] | None = None
        self._new_session = False

    # ---- ingest thread ---------------------------------------------------------------------

    def apply(self, events: list[pk.PackagerEvent]) -> None:
        try:
            for event in events:
                self._apply_one(event)
        except OSError as exc:  # a full disk stops the recording, never the stream
            log.error("recording in %s stopped: %s", self.folder, exc)

    def _apply_one(self, event: pk.PackagerEvent) -> None:
        match event:
            case pk.InitReady(init_id, data):
                self._init, self._new_session = (init_id, data), True
            case pk.SegmentOpened():
                self._open = (event, bytearray())
            case pk.ChunkReady(data) if self._open is not None:
                self._open[1].extend(data)
            case pk.SegmentClosed(duration) if self._open is not None:
                self._write_segment(self._open[0], bytes(self._open[1]), duration)
                self._open = None
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
        self._current = recording
        return recording, False

    def _write_segment(self, opened: pk.SegmentOpened, data: bytes, duration: float) -> None:
        continues = False
        if self._new_session or self._current is None:
            self._current, continues = self._recording_for_session()
            self._new_session = False
        recording = self._current
        where = self.folder / recording.id
        if self._init is not None and not (where / f"init{self._init[0]}.mp4").exists():
            (where / f"init{self._init[0]}.mp4").write_bytes(self._init[1])
        (where / f"seg{opened.msn}.m4s").write_bytes(data)
        segment = RecordedSegment(opened.msn, opened.init_id, duration, opened.program_date_time,
                                  continues and opened.discontinuity)
        with self._lock:
            recording.segments.append(segment)
        self._trim()

    def _trim(self) -> None:
        """Oldest first, across recordings, until they fit in max_seconds."""
        while True:
            with self._lock:
                total = sum(r.duration for r in self._recordings)
                oldest = next((r for r in self._recordings if r.segments), None)
                if oldest is None or total <= self.max_seconds:
                    return
                gone = oldest.segments.pop(0)
                oldest.trimmed = True
                empty = not oldest.segments and oldest is not self._current
                if empty:
                    self._recordings.remove(oldest)
            self._delete(oldest, gone, empty)

    def _delete(self, recording: Recording, gone: RecordedSegment, empty: bool) -> None:
        where = self.folder / recording.id
        if empty:
            shutil.rmtree(where, ignore_errors=True)
            return
        (where / f"seg{gone.msn}.m4s").unlink(missing_ok=True)
        if all(s.init_id != gone.init_id for s in recording.segments):
            (where / f"init{gone.init_id}.mp4").unlink(missing_ok=True)

    # ---- HTTP side -------------------------------------------------------------------------

    def recordings(self) -> list[RecordingView]:
        now = self._clock()
        with self._lock:
            return [self._view(r, now) for r in self._recordings if r.segments]

    def recording(self, recording_id: str) -> RecordingView | None:
        return next((r for r in self.recordings() if r.id == recording_id), None)

    def _view(self, recording: Recording, now: float) -> RecordingView:
        closed = recording.left_at is not None and now - recording.left_at > self.reconnect_seconds
        return RecordingView(recording.id, tuple(recording.segments), closed, recording.trimmed)

    def path(self, recording_id: str, name: str) -> Path:
        return self.folder / recording_id / name


def _recording_id(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"


def render_recording(view: RecordingView) -> str:
    """The recording's HLS playlist: EVENT while it grows (a plain live playlist once its start
    has been trimmed, as EVENT forbids removing segments), VOD with EXT-X-ENDLIST once closed."""
    longest = max((s.duration for s in view.segments), default=1.0)
    lines = ["#EXTM3U", "#EXT-X-VERSION:6",
             f"#EXT-X-TARGETDURATION:{max(math.ceil(longest - 1e-9), 1)}",  # every EXTINF fits
             f"#EXT-X-MEDIA-SEQUENCE:{view.segments[0].msn if view.segments else 0}"]
    if view.closed:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    elif not view.trimmed:
        lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    current_init = None
    for segment in view.segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if segment.init_id != current_init:
            lines.append(f'#EXT-X-MAP:URI="init{segment.init_id}.mp4"')
            current_init = segment.init_id
        lines += [f"#EXT-X-PROGRAM-DATE-TIME:{format_date(segment.program_date_time)}",
                  f"#EXTINF:{segment.duration:.5f}".rstrip("0").rstrip(".") + ",", f"seg{segment.msn}.m4s"]
    if view.closed:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
