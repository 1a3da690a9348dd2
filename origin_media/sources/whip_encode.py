"""Decoded WebRTC frames -> H.264 (each rendition) + AAC packets: one WHIP session of a stream.

aiortc hands us decoded pictures and sound, so the WHIP source encodes again, in its own
thread fed through a bounded queue (a slow encoder drops frames, it never grows memory).
Timestamps: each track's RTP clock spaces its frames, and its first frame's arrival anchors it
on the session clock, since audio and video RTP clocks start at unrelated random values.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction

import av

from web_dist.config.media import SOURCE_RENDITION, RenditionSettings

from .. import encoders
from ..ladder import LadderEncoder, ladder_session
from ..media import Track
from ..packager import keyframe_cuts, target_seconds
from . import Releasable

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AAC_FRAME = 1024
IDLE_SECONDS = 10.0  # no frame for this long: the publisher is gone
FPS_HINT = 30  # rate-control hint; WebRTC frame rates vary


@dataclass(frozen=True)
class Arrival:
    frame: av.VideoFrame | av.AudioFrame
    at: float  # time.monotonic() when it came off the track


class WhipEncoder:
    def __init__(
        self,
        sink: Releasable,
        rungs: tuple[RenditionSettings, ...],
        bitrate: int,
        segment_seconds: float,
        has_audio: bool,
    ) -> None:
        self.sink = sink
        self._configured = rungs
        self._bitrate = bitrate
        self._segment_ticks = round(segment_seconds * VIDEO_CLOCK)
        self._target_ticks = target_seconds(segment_seconds) * VIDEO_CLOCK
        self._has_audio = has_audio
        self._ladder: LadderEncoder | None = None
        self._aac: av.audio.codeccontext.AudioCodecContext | None = None
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE, frame_size=AAC_FRAME)
        self._audio_track = 0
        self._t0: float | None = None
        self._video_base: tuple[int, int] | None = None  # (first RTP pts, its session pts)
        self._audio_base: tuple[int, int] | None = None
        self._last_video = -1
        self._held: av.VideoFrame | None = None  # the last picture: encoded once the next one's time is known
        self._segment_start: int | None = None  # pts of the last keyframe
        self._audio_next: int | None = None
        self.started = False

    def run(self, frames: queue.Queue[Arrival | None], stop: threading.Event) -> None:
        """Encode until `None`, `stop`, or silence (runs in its own thread)."""
        try:
            while not stop.is_set():
                try:
                    item = frames.get(timeout=IDLE_SECONDS)
                except queue.Empty:
                    log.info("WHIP publisher silent for %.0fs: session over", IDLE_SECONDS)
                    break
                if item is None:
                    break
                self._take(item)
            self._flush()
        except (av.FFmpegError, ValueError) as exc:
            log.warning("WHIP session stopped: %s", exc)
        finally:
            if self.started:
                self.sink.end()
            else:
                self.sink.release()

    def _take(self, item: Arrival) -> None:
        if self._t0 is None:
            self._t0 = item.at
        if isinstance(item.frame, av.VideoFrame):
            if not self.started:
                self._start(item.frame)
            self._video(item.frame, item.at)
        elif self.started:  # sound before the first picture has nothing to go with
            self._audio(item.frame, item.at)

    def _start(self, first: av.VideoFrame) -> None:
        """The first picture sets the size of the "source" rendition when there is no ladder."""
        size = (max(2, first.width // 2 * 2), max(2, first.height // 2 * 2))
        rungs = self._configured or (RenditionSettings(SOURCE_RENDITION, *size, self._bitrate),)
        self._ladder = LadderEncoder(rungs, FPS_HINT, Fraction(1, VIDEO_CLOCK))
        others: list[Track] = []
        if self._has_audio:
            self._aac = encoders.aac_encoder(AUDIO_RATE, 2)
            others.append(encoders.audio_track(self._aac))
        self._audio_track = len(rungs)
        self.sink.start(ladder_session(rungs, self._ladder, others, "whip", time.time()))
        self.started = True

    def _session_pts(self, base: tuple[int, int] | None, rtp: int, at: float, rate: int) -> tuple[int, tuple[int, int]]:
        assert self._t0 is not None
        if base is None:
            base = (rtp, round((at - self._t0) * rate))
        return base[1] + rtp - base[0], base

    def _video(self, frame: av.VideoFrame, at: float) -> None:
        assert self._ladder is not None
        rtp = round((frame.pts or 0) * (frame.time_base or Fraction(1, VIDEO_CLOCK)) * VIDEO_CLOCK)
        pts, self._video_base = self._session_pts(self._video_base, rtp, at, VIDEO_CLOCK)
        pts = max(pts, self._last_video + 1)  # x264 wants strictly increasing timestamps
        self._last_video = pts
        frame.pts, frame.time_base = pts, Fraction(1, VIDEO_CLOCK)
        held, self._held = self._held, frame
        if held is not None:
            self._encode(held, pts)

    def _encode(self, frame: av.VideoFrame, next_pts: int | None) -> None:
        """Encode `frame`, as a keyframe where the packager will cut a segment: how long the frame
        lasts (to `next_pts`) decides that. WebRTC frames come at uneven times (29.97 fps, a
        browser's canvas), so a keyframe placed by a fixed grid could land just past the
        target duration, and the packager would split the segment before it."""
        assert self._ladder is not None and frame.pts is not None
        start = self._segment_start
        keyframe = start is None or (
            next_pts is not None
            and keyframe_cuts(frame.pts - start, next_pts - frame.pts, self._segment_ticks, self._target_ticks)
        )
        if keyframe:
            self._segment_start = frame.pts
        for packet in self._ladder.encode(frame, keyframe):
            self.sink.packet(packet)

    def _audio(self, frame: av.AudioFrame, at: float) -> None:
        if self._aac is None:
            return
        rate = frame.sample_rate or AUDIO_RATE
        rtp = round((frame.pts or 0) * (frame.time_base or Fraction(1, rate)) * AUDIO_RATE)
        pts, self._audio_base = self._session_pts(self._audio_base, rtp, at, AUDIO_RATE)
        if self._audio_next is None or abs(pts - self._audio_next) > AUDIO_RATE // 10:
            self._audio_next = pts  # first frame, or a real gap: follow the RTP clock
        frame.pts = None
        for out in self._resampler.resample(frame):
            out.pts, out.time_base = self._audio_next, Fraction(1, AUDIO_RATE)
            self._audio_next += out.samples
            for packet in encoders.audio_packets(self._aac, out, self._audio_track):
                self.sink.packet(packet)

    def _flush(self) -> None:
        if not self.started:
            return
        if self._ladder is not None:
            if self._held is not None:
                self._encode(self._held, None)
                self._held = None
            for packet in self._ladder.flush():
                self.sink.packet(packet)
