"""The ABR ladder: video frames encoded once per rendition, with keyframes at the same frames.

Every rung gets the same frames with the same timestamps, and keyframes are forced on the same
ones (the encoders never choose their own), so each rung's packager cuts segments and parts at
the same instants and a player switching rendition finds matching boundaries.

`LadderEncoder` serves sources that have raw frames (the test pattern, WHIP);
`LadderTranscoder` first decodes a passthrough source's H.264 (RTMP, file) and forces keyframes
where the source has them. Both run in the ingest thread, never on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction

import av
from av.codec.context import CodecContext
from av.video.frame import PictureType

from web_dist.config.media import SOURCE_RENDITION, RenditionSettings

from . import encoders
from .media import MediaPacket, SessionStart, Track

log = logging.getLogger(__name__)

NO_AUTO_KEYFRAMES = 100_000  # GOP length given to x264: keyframes only come when forced
PASSTHROUGH_FPS = 30  # rate-control hint when the source does not say


class LadderEncoder:
    """One H.264 encoder per rung; their tracks are numbered from `first_track` on."""

    def __init__(self, rungs: Sequence[RenditionSettings], fps: int, time_base: Fraction, first_track: int = 0) -> None:
        self.rungs = tuple(rungs)
        self.first_track = first_track
        self._encoders = [
            encoders.h264_encoder(r.width, r.height, fps, NO_AUTO_KEYFRAMES, r.bitrate, time_base=time_base)
            for r in self.rungs
        ]

    def tracks(self) -> tuple[Track, ...]:
        return tuple(encoders.video_track(enc) for enc in self._encoders)

    def encode(self, frame: av.VideoFrame, keyframe: bool) -> list[MediaPacket]:
        packets: list[MediaPacket] = []
        for index, (rung, enc) in enumerate(zip(self.rungs, self._encoders, strict=True)):
            scaled = _scaled(frame, rung.width, rung.height)
            # a decoded frame keeps its source picture type, which x264 would obey: reset it
            scaled.pict_type = PictureType.I if keyframe else PictureType.NONE
            packets += encoders.video_packets(enc, scaled, self.first_track + index)
        return packets

    def flush(self) -> list[MediaPacket]:
        packets: list[MediaPacket] = []
        for index, enc in enumerate(self._encoders):
            packets += encoders.video_packets(enc, None, self.first_track + index)
        return packets


def _scaled(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    if (frame.width, frame.height) == (width, height) and frame.format.name == "yuv420p":
        return frame
    scaled = frame.reformat(width=width, height=height, format="yuv420p")
    scaled.pts = frame.pts
    if frame.time_base is not None:  # frames flushed out of a decoder have none
        scaled.time_base = frame.time_base
    return scaled


def ladder_session(
    rungs: Sequence[RenditionSettings],
    ladder: LadderEncoder,
    other_tracks: Sequence[Track],
    protocol: str,
    wall_clock: float,
) -> SessionStart:
    """A session whose tracks are the rungs' videos followed by `other_tracks` (audio), which
    every rendition shares."""
    videos = ladder.tracks()
    shared = tuple(range(len(videos), len(videos) + len(other_tracks)))
    renditions = {rung.name: (index, *shared) for index, rung in enumerate(rungs)}
    return SessionStart((*videos, *other_tracks), protocol, wall_clock, renditions)


class LadderTranscoder:
    """A passthrough session plus its ladder: `session` lists the source's tracks (served as
    "source") and one more video track per rung; `push` turns source packets into rung packets."""

    def __init__(self, start: SessionStart, rungs: Sequence[RenditionSettings]) -> None:
        tracks = start.tracks
        self.video = next((i for i, t in enumerate(tracks) if t.kind == "video"), None)
        audio = tuple(i for i, t in enumerate(tracks) if t.kind == "audio")
        if self.video is None:
            raise ValueError("no video to transcode")
        source = tracks[self.video]
        self._decoder = CodecContext.create("h264", "r")
        self._decoder.extradata = source.extradata
        self._decoder.thread_count = 1  # frame threads would add frames of delay
        self._time_base = source.time_base
        self._ladder = LadderEncoder(rungs, PASSTHROUGH_FPS, source.time_base, len(tracks))
        self._keyframes: set[int] = set()  # pts of source keyframes not decoded yet
        self._started = False
        # The source's composition delay (B-frames), given to the rungs' timestamps too: each
        # packager anchors its timeline on the first keyframe's dts, so the renditions'
        # timelines coincide only if their first keyframes have the same pts - dts.
        self._delay: int | None = None
        renditions = {SOURCE_RENDITION: tuple(range(len(tracks)))}
        for index, rung in enumerate(rungs):
            renditions[rung.name] = (len(tracks) + index, *audio)
        self.session = SessionStart(
            (*tracks, *self._ladder.tracks()), start.protocol, start.wall_clock, renditions, start.clock_source
        )

    def push(self, packet: MediaPacket) -> list[MediaPacket]:
        if packet.track != self.video:
            return []
        if packet.keyframe:
            self._keyframes.add(packet.pts)
            if self._delay is None:
                self._delay = packet.pts - packet.dts
        source = av.Packet(packet.data)
        source.pts, source.dts, source.time_base = packet.pts, packet.dts, self._time_base
        return self._encode(self._decoder.decode(source))

    def close(self) -> list[MediaPacket]:
        packets = self._encode(self._decoder.decode(None))
        return packets + self._delayed(self._ladder.flush())

    def _encode(self, frames: list[av.VideoFrame]) -> list[MediaPacket]:
        packets: list[MediaPacket] = []
        for frame in frames:
            if frame.pts is None:
                continue
            keyframe = frame.pts in self._keyframes
            self._keyframes = {pts for pts in self._keyframes if pts > frame.pts}
            self._started = self._started or keyframe
            if self._started:  # the rungs start where the source's first segment does
                packets += self._delayed(self._ladder.encode(frame, keyframe))
        return packets

    def _delayed(self, packets: list[MediaPacket]) -> list[MediaPacket]:
        delay = self._delay or 0
        return [replace(p, dts=p.dts - delay) for p in packets] if delay else packets
