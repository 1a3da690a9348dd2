"""One live stream: the bridge from an ingest thread to the event loop.

The ingest thread calls `start` / `packet` / `end` (the `SessionSink` protocol); transcoding
(the ABR ladder of a passthrough source), packaging (one packager and window per rendition) and
TS encoding run right there, off the loop, and their results are handed to the loop with
`call_soon_threadsafe`. Everything read by HTTP handlers (windows, TS hub, state) is only
touched on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import av

from web_dist.config.media import PASSTHROUGH_SOURCES, SOURCE_RENDITION, StreamSettings

from .ladder import LadderTranscoder
from .media import MediaPacket, SessionStart
from .packager import CmafPackager, PackagerEvent
from .recording import Recorder
from .tsout import TsChunk, TsEncoder, TsHub
from .window import LiveWindow

log = logging.getLogger(__name__)

BITRATE_SECONDS = 5.0  # bitrate reported by /streams: bytes over this many seconds
AUDIO_BITRATE = 96_000  # added to a rung's video bitrate for its nominal BANDWIDTH


@dataclass(frozen=True)
class WindowSettings:
    segment_seconds: float
    part_seconds: float
    window_seconds: float
    # a publisher back within this many seconds continues the playlist (EXT-X-DISCONTINUITY);
    # later, the ended playlist (EXT-X-ENDLIST) is replaced by a new one
    grace_seconds: float = 10.0


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while value:
        value, rest = divmod(value, 36)
        text = digits[rest] + text
    return text or "0"


@dataclass
class Rendition:
    """One entry of the multivariant playlist: its own packager and live window."""

    name: str
    window: LiveWindow
    packager: CmafPackager
    nominal_bitrate: int | None  # BANDWIDTH floor (configured); None: a passthrough source
    tracks: tuple[int, ...] = ()  # the current session's track indexes it carries, video first


class LiveStream:
    def __init__(
        self,
        config: StreamSettings,
        window: WindowSettings,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float] = time.time,
        recorder: Recorder | None = None,
    ) -> None:
        self.name = config.name
        self.recorder = recorder  # fed every rendition's events, on the ingest thread
        self.source = config.source
        # in every media URI, so objects cached by a CDN never outlive this origin process
        self.epoch = _base36(int(clock() * 1000))
        self._playlists = 1
        self._loop = loop
        self._clock = clock
        self._settings = window
        # only passthrough sources are transcoded here; the others encode their own ladder
        self._ladder = config.renditions if config.source in PASSTHROUGH_SOURCES else ()
        nominal = {r.name: r.bitrate + AUDIO_BITRATE for r in config.renditions}
        own = None if config.source in PASSTHROUGH_SOURCES else config.bitrate + AUDIO_BITRATE
        self.renditions = {
            name: Rendition(
                name,
                LiveWindow(window.segment_seconds, window.part_seconds, window.window_seconds, f"{self.epoch}/"),
                self._packager(name),
                nominal.get(name, own),
            )
            for name in config.rendition_names
        }
        self.ts = TsHub()
        self._transcoder: LadderTranscoder | None = None
        self._ts_encoder: TsEncoder | None = None
        self._ts_rendition: Rendition | None = None
        self._ts_session: SessionStart | None = None  # what a TS encoder is made from, on demand
        self._ts_failed = False  # this session's TS encoder could not be made: not retried
        self._ts_end = 0
        self._lock = threading.Lock()  # one publisher at a time
        self.publishing = False
        self._in_session = False  # under _lock: between start() and end()
        self._playlist_over = False  # under _lock: ENDLIST is out; the next session starts anew
        self._grace: asyncio.TimerHandle | None = None  # loop side
        # read on the loop
        self.state = "idle"  # idle -> live -> ended -> live ...
        self.protocol: str | None = None
        self.started_at: float | None = None
        self.sessions = 0
        self._arrivals: deque[tuple[float, int]] = deque()

    def _packager(self, rendition: str) -> CmafPackager:
        return CmafPackager(self._settings.segment_seconds, self._settings.part_seconds, f"{self.name}/{rendition}")

    @property
    def window(self) -> LiveWindow:
        """The first rendition's window (the only one without a ladder)."""
        return next(iter(self.renditions.values())).window

    # ---- ingest thread side ----------------------------------------------------------------

    def claim(self) -> bool:
        """Reserve the stream for one publisher; False if another one is publishing."""
        with self._lock:
            if self.publishing:
                return False
            self.publishing = True
            return True

    def release(self) -> None:
        """Give up a claim that never became a session."""
        with self._lock:
            self.publishing = False

    def start(self, start: SessionStart) -> None:
        with self._lock:
            self.publishing = self._in_session = True
            anew, self._playlist_over = self._playlist_over, False
        if anew:
            self._new_playlist()
        start = self._with_ladder(start)
        mapping = start.renditions or {SOURCE_RENDITION: tuple(range(len(start.tracks)))}
        self._ts_rendition = None
        for rendition in self.renditions.values():
            rendition.tracks = tuple(mapping.get(rendition.name, ()))
            if rendition.tracks:
                own = replace(start, tracks=tuple(start.tracks[i] for i in rendition.tracks), renditions=None)
                self._post_events(rendition, rendition.packager.start_session(own))
                if self._ts_rendition is None:
                    self._ts_rendition, self._ts_session, self._ts_failed = rendition, own, False
        self._loop.call_soon_threadsafe(self._on_start, start.protocol)

    def _new_playlist(self) -> None:
        """After ENDLIST: new packagers (media sequence from 0) and new URIs, and the windows
        emptied on the loop before any of this session's events reach them."""
        self._playlists += 1
        epoch = f"{self.epoch.split('-')[0]}-{self._playlists}"
        for rendition in self.renditions.values():
            rendition.packager = self._packager(rendition.name)
        self._loop.call_soon_threadsafe(self._restart_windows, epoch)

    def _restart_windows(self, epoch: str) -> None:
        self.epoch = epoch
        for rendition in self.renditions.values():
            rendition.window.restart(f"{epoch}/")

    def _with_ladder(self, start: SessionStart) -> SessionStart:
        self._transcoder = None
        if not self._ladder or start.renditions is not None:
            return start
        try:
            self._transcoder = LadderTranscoder(start, self._ladder)
        except (av.FFmpegError, ValueError) as exc:
            log.warning("stream %s: no transcoded renditions this session: %s", self.name, exc)
            return start
        return self._transcoder.session

    def _start_ts(self, start: SessionStart) -> None:
        try:
            self._ts_encoder = TsEncoder(start, self._ts_end)
            log.info("stream %s: TS feed encoding (an edge reads it)", self.name)
        except (OSError, ValueError) as exc:  # no TS feed is better than no stream
            log.warning("stream %s: no TS feed: %s", self.name, exc)
            self._ts_encoder, self._ts_failed = None, True

    def _stop_ts(self) -> list[TsChunk]:
        assert self._ts_encoder is not None
        chunks = self._ts_encoder.close()
        self._ts_end = self._ts_encoder.end_time + 90_000  # the TS clock runs on
        self._ts_encoder = None
        return chunks

    def packet(self, packet: MediaPacket) -> None:
        self._route(packet)
        for made in self._transcode(lambda t: t.push(packet)):
            self._route(made)
        self._loop.call_soon_threadsafe(self._count, len(packet.data))

    def _transcode(self, step: Callable[[LadderTranscoder], list[MediaPacket]]) -> list[MediaPacket]:
        if self._transcoder is None:
            return []
        try:
            return step(self._transcoder)
        except Exception:  # whatever goes wrong there, the source rendition must carry on
            log.exception("stream %s: transcoding stopped for this session", self.name)
            self._transcoder = None
            return []

    def _route(self, packet: MediaPacket) -> None:
        for rendition in self.renditions.values():
            if packet.track not in rendition.tracks:
                continue
            own = replace(packet, track=rendition.tracks.index(packet.track))
            self._post_events(rendition, rendition.packager.push(own))
            if rendition is self._ts_rendition:
                self._push_ts(own)

    def _push_ts(self, packet: MediaPacket) -> None:
        """The TS feed costs an AAC -> Opus (and, with B-frames, an H.264) encode: done only
        while an edge reads it (`TsHub.wanted`, set on the loop), from the next keyframe."""
        if self._ts_encoder is None:
            if not self.ts.wanted or self._ts_failed or self._ts_session is None:
                return
            self._start_ts(self._ts_session)
        elif not self.ts.wanted:
            self._stop_ts()
            log.info("stream %s: TS feed stopped (no reader)", self.name)
        if self._ts_encoder is None:
            return
        try:
            chunks = self._ts_encoder.push(packet)
        except (av.FFmpegError, ValueError) as exc:  # the HLS output must not die with it
            log.warning("stream %s: TS feed stopped for this session: %s", self.name, exc)
            self._ts_encoder, self._ts_failed, chunks = None, True, []
        if chunks:
            self._loop.call_soon_threadsafe(self.ts.publish, chunks)

    def end(self) -> None:
        try:
            for made in self._transcode(lambda t: t.close()):
                self._route(made)
            events = [(r.window, r.packager.end_session()) for r in self.renditions.values()]
            if self.recorder is not None:
                for rendition, (_, ended) in zip(self.renditions.values(), events, strict=True):
                    self.recorder.apply(rendition.name, ended)
            chunks: list[TsChunk] = []
            if self._ts_encoder is not None:
                chunks = self._stop_ts()
            # one callback: readers never see the playlist ended but the stream still live
            self._loop.call_soon_threadsafe(self._on_end, events, chunks)
        finally:
            self._ts_encoder = self._transcoder = self._ts_session = None
            with self._lock:
                self.publishing = self._in_session = False

    def _post_events(self, rendition: Rendition, events: list[PackagerEvent]) -> None:
        if events and self.recorder is not None:
            self.recorder.apply(rendition.name, events)
        if events:
            self._loop.call_soon_threadsafe(rendition.window.apply, events)

    # ---- loop side -------------------------------------------------------------------------

    def _on_start(self, protocol: str) -> None:
        if self._grace is not None:  # back within the grace period: the playlist goes on
            self._grace.cancel()
            self._grace = None
        self.state, self.protocol = "live", protocol
        self.sessions += 1
        if self.started_at is None:
            self.started_at = self._clock()
        log.info("stream %s: %s publisher started (session %d)", self.name, protocol, self.sessions)

    def _on_end(self, events: list[tuple[LiveWindow, list[PackagerEvent]]], chunks: list[TsChunk]) -> None:
        for window, window_events in events:
            window.apply(window_events)
        self.ts.publish(chunks)
        self.ts.close_all()
        self.state = "ended"
        log.info("stream %s: publisher ended", self.name)
        if self._grace is not None:
            self._grace.cancel()
        self._grace = self._loop.call_later(self._settings.grace_seconds, self._end_playlist)

    def _end_playlist(self) -> None:
        """The grace period passed without a publisher: EXT-X-ENDLIST."""
        self._grace = None
        with self._lock:
            if self._in_session:
                return  # a publisher came back just now; its _on_start is on its way
            self._playlist_over = True
        for rendition in self.renditions.values():
            rendition.window.end()
        log.info("stream %s: playlist ended (no publisher for %.0f s)", self.name, self._settings.grace_seconds)

    def _count(self, size: int) -> None:
        now = self._clock()
        self._arrivals.append((now, size))
        while self._arrivals and self._arrivals[0][0] < now - BITRATE_SECONDS:
            self._arrivals.popleft()

    def bitrate(self) -> int:
        """Ingest bits per second over the last few seconds."""
        if self.state != "live" or not self._arrivals:
            return 0
        return int(sum(size for _, size in self._arrivals) * 8 / BITRATE_SECONDS)

    def describe(self) -> dict[str, object]:
        age = self._clock() - self.started_at if self.started_at is not None else None
        return {
            "name": self.name,
            "state": self.state,
            "source": self.source,
            "protocol": self.protocol,
            "bitrate": self.bitrate(),
            "age_seconds": None if age is None else round(age, 1),
            "sessions": self.sessions,
            "media_sequence": self.window.segments[-1].msn if self.window.segments else None,
            "renditions": list(self.renditions),
            "ts_readers": self.ts.reader_count,
            "ts_encoding": self._ts_encoder is not None,
            "warnings": sorted({r.packager.warning for r in self.renditions.values() if r.packager.warning}),
        }
