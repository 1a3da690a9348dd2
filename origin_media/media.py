"""What every source hands the packager: track descriptions and timestamped packets.

Our own small types rather than PyAV objects, so the packaging logic is plain data in, bytes
out, and can be tested without a codec. H.264 payloads are always AVCC (length-prefixed NAL
units) with an avcC `extradata`; sources convert at their edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

TrackKind = Literal["video", "audio"]


@dataclass(frozen=True)
class Track:
    """One elementary stream of a publishing session."""

    kind: TrackKind
    codec: str  # "h264", "aac", "opus"
    time_base: Fraction
    extradata: bytes = field(default=b"", repr=False)
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0

    @property
    def frame_samples(self) -> int:
        """Samples per audio packet; fixed for the codecs we package."""
        return {"aac": 1024, "opus": 960}.get(self.codec, 1024)


@dataclass(frozen=True)
class MediaPacket:
    """One encoded access unit; `pts`/`dts` count `tracks[track].time_base` ticks."""

    track: int
    pts: int
    dts: int
    keyframe: bool
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class SessionStart:
    """A publisher began sending: the tracks every following packet refers to."""

    tracks: tuple[Track, ...]
    protocol: str  # "rtmp", "whip", "test", "file"
    wall_clock: float  # time.time() at the first packet: anchors EXT-X-PROGRAM-DATE-TIME
    # rendition name -> indexes into `tracks` (its video first); None: all tracks are "source"
    renditions: Mapping[str, tuple[int, ...]] | None = None
    # source time (seconds) of the packet that arrived at `wall_clock`; None: the first
    # packet packaged did (see CmafPackager._anchor)
    clock_source: float | None = None
