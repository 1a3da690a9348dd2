"""PyAV encoders set up the way live packaging needs them, and their output as our packets.

H.264 is always encoded without B-frames (`tune=zerolatency`, `bf=0`): WebRTC viewers downstream
cannot take them, and no look-ahead keeps latency at one frame. GOP length is fixed with scene
cut off, so keyframes land exactly on segment boundaries.
"""

from __future__ import annotations

from fractions import Fraction

import av
from av.audio.codeccontext import AudioCodecContext
from av.codec.context import CodecContext, Flags
from av.video.codeccontext import VideoCodecContext

from . import h264
from .media import MediaPacket, Track


def h264_encoder(
    width: int,
    height: int,
    fps: int,
    gop: int,
    bitrate: int,
    *,
    time_base: Fraction | None = None,
    global_header: bool = True,
) -> VideoCodecContext:
    """`global_header`: SPS/PPS in extradata (for an avcC) rather than before each keyframe
    (for MPEG-TS, which has nowhere else to put them)."""
    enc = CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = time_base or Fraction(1, fps)
    enc.framerate = Fraction(fps)  # rate control budgets bits per frame from this
    enc.bit_rate = bitrate
    if global_header:
        enc.flags |= int(Flags.global_header)
    enc.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "bf": "0",
        "g": str(gop),
        "keyint_min": str(gop),
        "sc_threshold": "0",
        "threads": "1",  # one stream per thread already; sliced threads only add overhead
    }
    enc.open()
    return enc


def aac_encoder(sample_rate: int, channels: int, bitrate: int = 96_000) -> AudioCodecContext:
    enc = CodecContext.create("aac", "w")
    enc.sample_rate = sample_rate
    enc.layout = "mono" if channels == 1 else "stereo"
    enc.format = "fltp"
    enc.bit_rate = bitrate
    enc.time_base = Fraction(1, sample_rate)
    enc.open()
    return enc


def video_track(enc: VideoCodecContext) -> Track:
    return Track(
        "video",
        "h264",
        enc.time_base,
        h264.normalize_config(bytes(enc.extradata or b"")),
        width=enc.width,
        height=enc.height,
    )


def audio_track(enc: AudioCodecContext) -> Track:
    return Track(
        "audio",
        "aac",
        Fraction(1, enc.sample_rate),
        bytes(enc.extradata or b""),
        sample_rate=enc.sample_rate,
        channels=enc.layout.nb_channels,
    )


def video_packets(enc: VideoCodecContext, frame: av.VideoFrame | None, track: int) -> list[MediaPacket]:
    """Encode one frame (None flushes) into AVCC packets."""
    return [
        MediaPacket(track, p.pts, p.dts, p.is_keyframe, h264.annexb_to_avcc(bytes(p)))
        for p in enc.encode(frame)
        if p.pts is not None and p.dts is not None
    ]


def audio_packets(enc: AudioCodecContext, frame: av.AudioFrame | None, track: int) -> list[MediaPacket]:
    return [
        MediaPacket(track, p.pts, p.dts, True, bytes(p))
        for p in enc.encode(frame)
        if p.pts is not None and p.dts is not None
    ]
