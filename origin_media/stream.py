"""One live stream: the bridge from an ingest thread to the event loop.

The ingest thread calls `start` / `packet` / `end` (the `SessionSink` protocol); packaging and
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
from dataclasses import dataclass

import av

from .media import MediaPacket, SessionStart
from .packager import CmafPackager, PackagerEvent
from .tsout import TsChunk, TsEncoder, TsHub
from .window import LiveWindow

log = logging.getLogger(__name__)

BITRATE_SECONDS = 5.0  # bitrate reported by /streams: bytes over this many seconds


@dataclass(frozen=True)
class WindowSettings:
    segment_seconds: float
    part_seconds: float
    window_seconds: float


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while value:
        value, rest = divmod(value, 36)
        text = digits[rest] + text
    return text or "0"


class LiveStream:
    def __init__(
        self,
        name: str,
        source: str,
        window: WindowSettings,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.source = source
        # in every media URI, so objects cached by a CDN never outlive this origin process
        self.epoch = _base36(int(clock() * 1000))
        self._loop = loop
        self._clock = clock
        self._settings = window
        self.window = LiveWindow(
            window.segment_seconds, window.part_seconds, window.window_seconds, f"{self.epoch}/"
        )
        self.ts = TsHub()
        self._packager = CmafPackager(window.segment_seconds, window.part_seconds)
        self._ts_encoder: TsEncoder | None = None
        self._ts_end = 0
        self._lock = threading.Lock()  # one publisher at a time
        self.publishing = False
        # read on the loop
        self.state = "idle"  # idle -> live -> ended -> live ...
        self.protocol: str | None = None
        self.started_at: float | None = None
        self.sessions = 0
        self._arrivals: deque[tuple[float, int]] = deque()

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
        self.publishing = True
        self._post_events(self._packager.start_session(start))
        try:
            self._ts_encoder = TsEncoder(start, self._ts_end)
        except (OSError, ValueError) as exc:  # no TS feed is better than no stream
            log.warning("stream %s: no TS feed: %s", self.name, exc)
            self._ts_encoder = None
        self._loop.call_soon_threadsafe(self._on_start, start.protocol)

    def packet(self, packet: MediaPacket) -> None:
        self._post_events(self._packager.push(packet))
        if self._ts_encoder is not None:
            try:
                chunks = self._ts_encoder.push(packet)
            except (av.FFmpegError, ValueError) as exc:  # the HLS output must not die with it
                log.warning("stream %s: TS feed stopped for this session: %s", self.name, exc)
                self._ts_encoder, chunks = None, []
            if chunks:
                self._loop.call_soon_threadsafe(self.ts.publish, chunks)
        self._loop.call_soon_threadsafe(self._count, len(packet.data))

    def end(self) -> None:
        try:
            events = self._packager.end_session()
            chunks: list[TsChunk] = []
            if self._ts_encoder is not None:
                chunks = self._ts_encoder.close()
                self._ts_end = self._ts_encoder.end_time + 90_000
            # one callback: readers never see the playlist ended but the stream still live
            self._loop.call_soon_threadsafe(self._on_end, events, chunks)
        finally:
            self._ts_encoder = None
            with self._lock:
                self.publishing = False

    def _post_events(self, events: list[PackagerEvent]) -> None:
        if events:
            self._loop.call_soon_threadsafe(self.window.apply, events)

    # ---- loop side -------------------------------------------------------------------------

    def _on_start(self, protocol: str) -> None:
        self.state, self.protocol = "live", protocol
        self.sessions += 1
        if self.started_at is None:
            self.started_at = self._clock()
        log.info("stream %s: %s publisher started (session %d)", self.name, protocol, self.sessions)

    def _on_end(self, events: list[PackagerEvent], chunks: list[TsChunk]) -> None:
        self.window.apply(events)
        self.ts.publish(chunks)
        self.ts.close_all()
        self.state = "ended"
        log.info("stream %s: publisher ended", self.name)

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
            "ts_readers": self.ts.reader_count,
        }
