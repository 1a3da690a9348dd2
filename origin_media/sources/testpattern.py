"""The built-in live test source: a moving pattern with the wall clock and frame number
burned in, and a 1 kHz beep at every whole second, encoded H.264 + AAC in real time.

FFmpeg's `drawtext` filter is not in PyAV's build (no fonts either), so digits are drawn as
seven-segment glyphs straight into the Y plane; everything is bytes slicing, no numpy.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

import av

from web_dist.config.media import SOURCE_RENDITION, RenditionSettings

from .. import encoders
from ..ladder import LadderEncoder, ladder_session
from . import SessionSink

SAMPLE_RATE = 48_000
AUDIO_FRAME = 1024
BEEP_SECONDS = 0.1

# segments a b c d e f g (top, top-right, bottom-right, bottom, bottom-left, top-left, middle)
_GLYPHS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
    "-": "g",
}


@dataclass(frozen=True)
class TestPatternSettings:
    width: int = 640
    height: int = 360
    fps: int = 25
    gop_seconds: float = 2.0
    bitrate: int = 800_000
    # drawn once at width x height, encoded at each rung's size; none: one "source" rendition
    renditions: tuple[RenditionSettings, ...] = ()

    @property
    def rungs(self) -> tuple[RenditionSettings, ...]:
        own = RenditionSettings(SOURCE_RENDITION, self.width, self.height, self.bitrate)
        return self.renditions or (own,)


class Canvas:
    """A Y plane as a bytearray, with the few drawing operations the pattern needs."""

    def __init__(self, width: int, height: int, stride: int) -> None:
        self.width, self.height, self.stride = width, height, stride
        self.pixels = bytearray(stride * height)

    def fill_rows(self, row: bytes) -> None:
        padded = row + bytes(self.stride - len(row))
        self.pixels[:] = padded * self.height

    def rect(self, x: int, y: int, w: int, h: int, value: int) -> None:
        x, y = max(0, x), max(0, y)
        w, h = min(w, self.width - x), min(h, self.height - y)
        if w <= 0 or h <= 0:
            return
        line = bytes([value]) * w
        for row in range(y, y + h):
            start = row * self.stride + x
            self.pixels[start : start + w] = line

    def text(self, x: int, y: int, text: str, scale: int, value: int = 235) -> int:
        """Draw `text` (digits, ':', '.', '-'); returns the x after it."""
        for char in text:
            x = self._char(x, y, char, scale, value)
        return x

    def _char(self, x: int, y: int, char: str, s: int, value: int) -> int:
        if char in ":.":
            dots = [5 * s] if char == "." else [2 * s, 5 * s]
            for dy in dots:
                self.rect(x, y + dy, s, s, value)
            return x + 2 * s
        w, t = 3 * s, max(1, s // 2 + 1)  # glyph width, stroke thickness
        half = 3 * s
        strokes = {
            "a": (x, y, w, t),
            "g": (x, y + half, w, t),
            "d": (x, y + 2 * half - t, w, t),
            "f": (x, y, t, half),
            "b": (x + w - t, y, t, half),
            "e": (x, y + half, t, half),
            "c": (x + w - t, y + half, t, half),
        }
        for stroke in _GLYPHS.get(char, ""):
            self.rect(*strokes[stroke], value)
        return x + w + s


def clock_text(wall: float) -> str:
    moment = datetime.fromtimestamp(wall, UTC)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


class TestPattern:
    """Frame and audio generators; `run` paces them against the wall clock."""

    def __init__(self, settings: TestPatternSettings) -> None:
        self.settings = settings
        w = settings.width
        bars = [16, 60, 100, 140, 180, 220, 235, 120]
        band = max(1, w // len(bars))
        self._row = bytes(bars[(x // band) % len(bars)] for x in range(2 * w))
        self._scale = max(2, w // 80)
        tone = [math.sin(2 * math.pi * 1000 * i / SAMPLE_RATE) * 0.3 for i in range(3 * AUDIO_FRAME)]
        self._tone = array("f", tone).tobytes()  # 3072 samples: a whole number of 1 kHz periods
        self._tone_twice = self._tone * 2  # a frame may start near the tone's end and wrap
        self._silence = bytes(4 * AUDIO_FRAME)
        self._gray: dict[int, bytes] = {}  # neutral chroma plane, by plane size: made once

    def video_frame(self, index: int, wall: float) -> av.VideoFrame:
        s = self.settings
        frame = av.VideoFrame(s.width, s.height, "yuv420p")
        y_plane = frame.planes[0]
        canvas = Canvas(s.width, s.height, y_plane.line_size)
        shift = (index * 4) % s.width
        canvas.fill_rows(self._row[shift : shift + s.width])
        self._bouncing_box(canvas, index)
        self._overlay(canvas, index, wall)
        y_plane.update(bytes(canvas.pixels))
        for plane in frame.planes[1:]:
            gray = self._gray.get(plane.buffer_size)
            if gray is None:
                gray = self._gray[plane.buffer_size] = bytes([128]) * plane.buffer_size
            plane.update(gray)
        frame.pts = index
        return frame

    def _bouncing_box(self, canvas: Canvas, index: int) -> None:
        size = canvas.height // 5
        span_x, span_y = canvas.width - size, canvas.height - size
        x = abs((index * 6) % (2 * span_x) - span_x)
        y = abs((index * 3) % (2 * span_y) - span_y)
        canvas.rect(x, y, size, size, 235 if (index // 25) % 2 else 40)

    def _overlay(self, canvas: Canvas, index: int, wall: float) -> None:
        s = self._scale
        line_h = 7 * s
        canvas.rect(0, 0, 14 * 4 * s + 2 * s, 2 * line_h + 3 * s, 16)
        canvas.text(s, s, clock_text(wall), s)
        canvas.text(s, 2 * s + line_h, f"{index:08d}", s)

    def audio_frame(self, index: int) -> av.AudioFrame:
        start = index * AUDIO_FRAME
        into_second = (start % SAMPLE_RATE) / SAMPLE_RATE
        frame = av.AudioFrame(format="fltp", layout="mono", samples=AUDIO_FRAME)
        frame.sample_rate = SAMPLE_RATE
        if into_second < BEEP_SECONDS:
            offset = 4 * (start % (3 * AUDIO_FRAME))
            frame.planes[0].update(self._tone_twice[offset : offset + 4 * AUDIO_FRAME])
        else:
            frame.planes[0].update(self._silence)
        frame.pts = start
        return frame

    def run(self, sink: SessionSink, stop: threading.Event) -> None:
        """Publish in real time until `stop` is set (runs in its own thread)."""
        s = self.settings
        gop = max(1, round(s.gop_seconds * s.fps))
        ladder = LadderEncoder(s.rungs, s.fps, Fraction(1, s.fps))
        aenc = encoders.aac_encoder(SAMPLE_RATE, 1)
        audio_track = len(s.rungs)
        wall0, mono0 = time.time(), time.monotonic()
        sink.start(ladder_session(s.rungs, ladder, [encoders.audio_track(aenc)], "test", wall0))
        video_index = audio_index = 0
        try:
            while not stop.is_set():
                video_due = video_index / s.fps
                audio_due = audio_index * AUDIO_FRAME / SAMPLE_RATE
                due = min(video_due, audio_due)
                if stop.wait(max(0.0, mono0 + due - time.monotonic())):
                    break
                if video_due <= audio_due:
                    frame = self.video_frame(video_index, wall0 + video_due)
                    for packet in ladder.encode(frame, video_index % gop == 0):
                        sink.packet(packet)
                    video_index += 1
                else:
                    frame_audio = self.audio_frame(audio_index)
                    for packet in encoders.audio_packets(aenc, frame_audio, audio_track):
                        sink.packet(packet)
                    audio_index += 1
        finally:
            sink.end()
