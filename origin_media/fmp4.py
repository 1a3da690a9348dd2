"""CMAF / fragmented MP4 boxes (ISO 14496-12), written by hand.

Why not PyAV's mp4 muxer: it interleaves and buffers packets internally and offers no public
"flush this fragment now", so part boundaries would be its choice, not ours. The boxes below
are a few fixed layouts; every function here is pure.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from .media import Track

VIDEO_TIMESCALE = 90_000
SYNC_SAMPLE = 0x02000000  # sample_depends_on = 2: depends on no other sample
NON_SYNC_SAMPLE = 0x01010000  # depends on others, sample_is_non_sync_sample = 1
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def timescale(track: Track) -> int:
    return VIDEO_TIMESCALE if track.kind == "video" else track.sample_rate


# ---- init segment -------------------------------------------------------------------------


def init_segment(tracks: Sequence[Track]) -> bytes:
    """ftyp + moov with an mvex, tracks numbered 1..n in order."""
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6cmfcisomavc1mp41")
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, 1000, 0),
        struct.pack(">IH", 0x10000, 0x100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", len(tracks) + 1),
    )
    traks = [_trak(track, number) for number, track in enumerate(tracks, start=1)]
    trexs = [full_box(b"trex", 0, 0, struct.pack(">5I", n, 1, 0, 0, 0)) for n in range(1, len(tracks) + 1)]
    return ftyp + box(b"moov", mvhd, *traks, box(b"mvex", *trexs))


def _trak(track: Track, number: int) -> bytes:
    video = track.kind == "video"
    tkhd = full_box(
        b"tkhd",
        0,
        3,
        struct.pack(">IIIII", 0, 0, number, 0, 0),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if video else 0x100, 0),
        _MATRIX,
        struct.pack(">II", track.width << 16, track.height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale(track), 0, 0x55C4, 0))
    handler = b"vide" if video else b"soun"
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), b"media\x00")
    header = full_box(b"vmhd", 0, 1, bytes(8)) if video else full_box(b"smhd", 0, 0, bytes(4))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), _sample_entry(track)),
        full_box(b"stts", 0, 0, bytes(4)),
        full_box(b"stsc", 0, 0, bytes(4)),
        full_box(b"stsz", 0, 0, bytes(8)),
        full_box(b"stco", 0, 0, bytes(4)),
    )
    minf = box(b"minf", header, dinf, stbl)
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))


def _sample_entry(track: Track) -> bytes:
    if track.codec == "h264":
        return box(
            b"avc1",
            bytes(6),
            struct.pack(">H", 1),
            bytes(16),
            struct.pack(">HHIIIH", track.width, track.height, 0x480000, 0x480000, 0, 1),
            bytes(32),
            struct.pack(">Hh", 0x18, -1),
            box(b"avcC", track.extradata),
        )
    if track.codec == "aac":
        return box(
            b"mp4a",
            bytes(6),
            struct.pack(">H", 1),
            bytes(8),
            struct.pack(">HHHHI", track.channels, 16, 0, 0, track.sample_rate << 16),
            full_box(b"esds", 0, 0, _es_descriptor(track.extradata)),
        )
    raise ValueError(f"cannot package {track.codec} in fMP4")


def _descriptor(tag: int, body: bytes) -> bytes:
    return bytes([tag, len(body)]) + body


def _es_descriptor(audio_specific_config: bytes) -> bytes:
    decoder_specific = _descriptor(5, audio_specific_config)
    # objectTypeIndication 0x40 = MPEG-4 audio; streamType 5 (audio) << 2 | upstream 0 | 1
    decoder_config = _descriptor(4, bytes([0x40, 0x15]) + bytes(11) + decoder_specific)
    return _descriptor(3, struct.pack(">HB", 0, 0) + decoder_config + _descriptor(6, b"\x02"))


# ---- fragments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One access unit placed on its track's timescale."""

    decode_time: int
    duration: int
    composition_offset: int
    sync: bool
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class TrackRun:
    track_id: int
    samples: tuple[Sample, ...]


def fragment(sequence: int, runs: Sequence[TrackRun]) -> bytes:
    """moof + mdat carrying `runs` (tracks with no samples left out)."""
    runs = [run for run in runs if run.samples]
    sizes = [sum(len(s.data) for s in run.samples) for run in runs]
    moof_size = len(_moof(sequence, runs, [0] * len(runs)))
    offsets, at = [], moof_size + 8
    for size in sizes:
        offsets.append(at)
        at += size
    payload = b"".join(s.data for run in runs for s in run.samples)
    return _moof(sequence, runs, offsets) + box(b"mdat", payload)


def _moof(sequence: int, runs: Sequence[TrackRun], offsets: Sequence[int]) -> bytes:
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
    return box(b"moof", mfhd, *(_traf(run, off) for run, off in zip(runs, offsets, strict=True)))


def _traf(run: TrackRun, data_offset: int) -> bytes:
    tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", run.track_id))  # default-base-is-moof
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", run.samples[0].decode_time))
    entries = b"".join(
        struct.pack(">IIIi", s.duration, len(s.data), SYNC_SAMPLE if s.sync else NON_SYNC_SAMPLE, s.composition_offset)
        for s in run.samples
    )
    # flags: data-offset, duration, size, flags, composition offset (version 1: signed)
    trun = full_box(b"trun", 1, 0xF01, struct.pack(">Ii", len(run.samples), data_offset), entries)
    return box(b"traf", tfhd, tfdt, trun)
