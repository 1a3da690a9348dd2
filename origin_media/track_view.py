"""One track of the muxed CMAF objects, for DASH (dash.js plays only one track per
Representation). Pure.

The packager writes each fragment (moof + mdat) with a `traf` per track. The view of track N
keeps N's `traf` (renumbered to track 1, its data offset moved) and N's sample bytes, and drops
fragments that carry none of N; its init segment is the same `moov` with N's `trak` alone.
Nothing is stored twice: the views are cut on request, and an edge caches them like any other
segment (the cost is in `bench/dash_tracks.py`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

from . import fmp4
from .media import Track

TRUN_DATA_OFFSET = 0x001
TRUN_FIRST_SAMPLE_FLAGS = 0x004
TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_COMPOSITION = 0x100, 0x200, 0x400, 0x800
_TRUN_FIELDS = (TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_COMPOSITION)  # per-sample, in this order


def boxes(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, start of payload, end) of each top-level box; stops at a malformed one."""
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        if size < 8 or at + size > len(data):
            return
        yield kind, at + 8, at + size
        at += size


def track_init(tracks: Sequence[Track], kind: str) -> bytes | None:
    """The init segment of the first track of `kind` ("video" / "audio"), as track 1."""
    track = next((t for t in tracks if t.kind == kind), None)
    return fmp4.init_segment([track]) if track is not None else None


def track_number(tracks: Sequence[Track], kind: str) -> int | None:
    """The fragments' track_ID of the first track of `kind` (tracks are numbered 1..n)."""
    return next((n for n, t in enumerate(tracks, start=1) if t.kind == kind), None)


def track_fragment(fragment: bytes, track_id: int) -> bytes:
    """The moof + mdat of `track_id` alone (b"" when the fragment has none of it)."""
    moof = next(((s, e) for kind, s, e in boxes(fragment) if kind == b"moof"), None)
    if moof is None:
        return b""
    moof_start = moof[0] - 8
    mfhd, traf = b"", None
    for kind, start, end in boxes(fragment[moof[0] : moof[1]]):
        body = fragment[moof[0] + start : moof[0] + end]
        if kind == b"mfhd":
            mfhd = fragment[moof[0] + start - 8 : moof[0] + end]
        elif kind == b"traf" and _traf_track(body) == track_id:
            traf = body
    if traf is None:
        return b""
    parts, (offset_at, data_offset, size) = _renumbered(traf)
    payload = fragment[moof_start + data_offset : moof_start + data_offset + size]
    new_moof = bytearray(fmp4.box(b"moof", mfhd, fmp4.box(b"traf", *parts)))
    # the trun's data offset: in the rebuilt moof, 8 (moof) + len(mfhd) + 8 (traf) + offset_at
    struct.pack_into(">i", new_moof, 16 + len(mfhd) + offset_at, len(new_moof) + 8)
    return bytes(new_moof) + fmp4.box(b"mdat", payload)


def track_fragments(data: bytes, track_id: int) -> bytes:
    """Every fragment (moof + mdat) of a segment, part or chunk, cut to `track_id`."""
    out, moof_at = [], None
    for kind, start, end in boxes(data):
        if kind == b"moof":
            moof_at = start - 8
        elif kind == b"mdat" and moof_at is not None:
            out.append(track_fragment(data[moof_at:end], track_id))
            moof_at = None
    return b"".join(out)


def _traf_track(traf: bytes) -> int | None:
    for kind, start, _ in boxes(traf):
        if kind == b"tfhd":
            return int(struct.unpack_from(">I", traf, start + 4)[0])
    return None


def _renumbered(traf: bytes) -> tuple[list[bytes], tuple[int, int, int]]:
    """The traf's boxes with tfhd's track_ID set to 1, and (where in the new traf payload the
    trun's data offset sits, the old data offset, the run's byte count)."""
    parts: list[bytes] = []
    found: tuple[int, int, int] | None = None
    at = 0
    for kind, start, end in boxes(traf):
        raw = bytearray(traf[start - 8 : end])
        if kind == b"tfhd":
            struct.pack_into(">I", raw, 12, 1)
        elif kind == b"trun":
            found = (at + 16, *_run_extent(raw))
        parts.append(bytes(raw))
        at += len(raw)
    if found is None:
        raise ValueError("traf without trun")
    return parts, found


def _run_extent(trun: bytes | bytearray) -> tuple[int, int]:
    """(data offset, total sample bytes) of a trun (its sample sizes must be present)."""
    flags = int.from_bytes(trun[9:12], "big")
    count = int(struct.unpack_from(">I", trun, 12)[0])
    if not flags & TRUN_DATA_OFFSET or not flags & TRUN_SIZE:
        raise ValueError("trun without data offset or sample sizes")
    offset = int(struct.unpack_from(">i", trun, 16)[0])
    at = 20 + (4 if flags & TRUN_FIRST_SAMPLE_FLAGS else 0)
    fields = [bit for bit in _TRUN_FIELDS if flags & bit]
    size_index = fields.index(TRUN_SIZE)
    total = sum(int(struct.unpack_from(">I", trun, at + 4 * (i * len(fields) + size_index))[0]) for i in range(count))
    return offset, total


def track_timing(data: bytes, track_id: int) -> tuple[int, int] | None:
    """(decode time of the first sample, total duration) of `track_id` in the fragments of
    `data`, on the track's timescale; None when it has no samples there."""
    first: int | None = None
    duration = 0
    for kind, start, end in boxes(data):
        if kind != b"moof":
            continue
        moof = data[start:end]
        for inner, s, e in boxes(moof):
            if inner == b"traf" and _traf_track(moof[s:e]) == track_id:
                traf = moof[s:e]
                first = _tfdt(traf) if first is None else first
                duration += _durations(traf)
    return (first, duration) if first is not None else None


def _tfdt(traf: bytes) -> int:
    for kind, start, _ in boxes(traf):
        if kind == b"tfdt":
            version = traf[start]
            return int(struct.unpack_from(">Q" if version == 1 else ">I", traf, start + 4)[0])
    raise ValueError("traf without tfdt")


def _durations(traf: bytes) -> int:
    for kind, start, end in boxes(traf):
        if kind != b"trun":
            continue
        trun = traf[start - 8 : end]
        flags = int.from_bytes(trun[9:12], "big")
        if not flags & TRUN_DURATION:
            raise ValueError("trun without sample durations")
        count = int(struct.unpack_from(">I", trun, 12)[0])
        at = 16 + (4 if flags & TRUN_DATA_OFFSET else 0) + (4 if flags & TRUN_FIRST_SAMPLE_FLAGS else 0)
        width = 4 * sum(1 for bit in _TRUN_FIELDS if flags & bit)
        return sum(int(struct.unpack_from(">I", trun, at + i * width)[0]) for i in range(count))
    return 0
