"""PyAV demuxed packets -> our `Track` / `MediaPacket`, for the RTMP and file sources.

Passthrough only takes H.264 and AAC; other codecs are left out with a warning (transcoding
them is future work).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import av
from av.container import InputContainer

from .. import h264
from ..media import MediaPacket, Track

log = logging.getLogger(__name__)
PASSTHROUGH = {"h264", "aac"}


@dataclass(frozen=True)
class TrackMap:
    tracks: tuple[Track, ...]
    by_stream: dict[int, int]  # container stream index -> our track index
    annexb: frozenset[int]  # our track indexes whose H.264 payloads need converting
    adts: frozenset[int] = frozenset()  # our AAC track indexes whose frames carry ADTS headers


def map_tracks(container: InputContainer) -> TrackMap:
    tracks: list[Track] = []
    by_stream: dict[int, int] = {}
    annexb: set[int] = set()
    adts: set[int] = set()
    for stream in container.streams:
        track = _track(stream)
        if track is None:
            continue
        if track.codec == "h264" and not h264.is_avcc_config(bytes(stream.codec_context.extradata or b"")):
            annexb.add(len(tracks))
        if track.codec == "aac" and not track.extradata:  # MPEG-TS: ADTS, no AudioSpecificConfig
            adts.add(len(tracks))
            track = replace(track, extradata=audio_specific_config(track.sample_rate, track.channels))
        by_stream[stream.index] = len(tracks)
        tracks.append(track)
    return TrackMap(tuple(tracks), by_stream, frozenset(annexb), frozenset(adts))


def _track(stream: av.stream.Stream) -> Track | None:
    ctx: Any = stream.codec_context  # a video or audio context, by stream.type
    name = ctx.name if ctx is not None else ""
    if stream.type not in ("video", "audio") or name not in PASSTHROUGH:
        if stream.type in ("video", "audio"):
            log.warning("stream %d: %s cannot pass through, left out", stream.index, name)
        return None
    extradata = bytes(ctx.extradata or b"")
    time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000)
    if stream.type == "video":
        return Track("video", "h264", time_base, h264.normalize_config(extradata), width=ctx.width, height=ctx.height)
    return Track("audio", "aac", time_base, extradata, sample_rate=ctx.sample_rate, channels=ctx.layout.nb_channels)


def to_media_packet(packet: av.Packet[Any], mapping: TrackMap, shift: int = 0) -> MediaPacket | None:
    """Our packet for `packet`, or None for streams we left out and empty packets."""
    track = mapping.by_stream.get(packet.stream.index)
    if track is None or packet.size == 0 or packet.dts is None:
        return None
    data = bytes(packet)
    if track in mapping.annexb:
        data = h264.annexb_to_avcc(data)
    elif track in mapping.adts:
        data = strip_adts(data)
    pts = packet.pts if packet.pts is not None else packet.dts
    return MediaPacket(track, pts + shift, packet.dts + shift, packet.is_keyframe, data)


ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def audio_specific_config(sample_rate: int, channels: int) -> bytes:
    """ISO 14496-3 AudioSpecificConfig of AAC-LC (object type 2) at this rate and layout."""
    index = ADTS_RATES.index(sample_rate) if sample_rate in ADTS_RATES else 4
    return (2 << 11 | index << 7 | min(channels, 7) << 3).to_bytes(2, "big")


def strip_adts(frame: bytes) -> bytes:
    """A raw AAC frame from an ADTS one (7-byte header, 9 with its CRC)."""
    if len(frame) < 7 or frame[0] != 0xFF or frame[1] & 0xF0 != 0xF0:
        return frame
    return frame[7 if frame[1] & 1 else 9 :]
