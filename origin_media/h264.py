"""H.264 bitstream framing: Annex B (start codes) <-> AVCC (length prefixes), and avcC.

Encoders (libx264) and MPEG-TS speak Annex B; MP4/FLV speak AVCC. Pure byte functions.
"""

from __future__ import annotations

import functools
import struct

NAL_SPS = 7
NAL_PPS = 8


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units between 3- or 4-byte start codes (a 4-byte code is 0 + a 3-byte one)."""
    units: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt < 0 else nxt
        unit = data[begin:end].rstrip(b"\x00") if nxt >= 0 else data[begin:end]
        if unit:
            units.append(unit)
        start = nxt
    return units


def split_avcc(data: bytes, length_size: int = 4) -> list[bytes]:
    units: list[bytes] = []
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        units.append(data[pos : pos + size])
        pos += size
    return units


def join_avcc(units: list[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(u)) + u for u in units)


def join_annexb(units: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + u for u in units)


def is_avcc_config(extradata: bytes) -> bool:
    return len(extradata) >= 7 and extradata[0] == 1


def avcc_config(sps: list[bytes], pps: list[bytes]) -> bytes:
    """An AVCDecoderConfigurationRecord (ISO 14496-15 5.3.3.1) with 4-byte NAL lengths."""
    first = sps[0]
    out = bytearray([1, first[1], first[2], first[3], 0xFF, 0xE0 | len(sps)])
    for unit in sps:
        out += struct.pack(">H", len(unit)) + unit
    out.append(len(pps))
    for unit in pps:
        out += struct.pack(">H", len(unit)) + unit
    return bytes(out)


def parse_avcc_config(config: bytes) -> tuple[list[bytes], list[bytes], int]:
    """(SPS list, PPS list, NAL length size) from an avcC record."""
    length_size = (config[4] & 0x03) + 1
    pos, sps, pps = 6, [], []
    for _ in range(config[5] & 0x1F):
        size = int.from_bytes(config[pos : pos + 2], "big")
        sps.append(config[pos + 2 : pos + 2 + size])
        pos += 2 + size
    count = config[pos]
    pos += 1
    for _ in range(count):
        size = int.from_bytes(config[pos : pos + 2], "big")
        pps.append(config[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return sps, pps, length_size


def config_from_units(units: list[bytes]) -> bytes | None:
    """avcC built from the SPS/PPS found among `units`, or None when either is missing."""
    sps = [u for u in units if u[0] & 0x1F == NAL_SPS]
    pps = [u for u in units if u[0] & 0x1F == NAL_PPS]
    return avcc_config(sps, pps) if sps and pps else None


def normalize_config(extradata: bytes) -> bytes:
    """avcC whatever the encoder gave (Annex B SPS/PPS or avcC already)."""
    if is_avcc_config(extradata):
        return extradata
    config = config_from_units(split_annexb(extradata))
    if config is None:
        raise ValueError("H.264 extradata has no SPS/PPS")
    return config


def annexb_to_avcc(data: bytes) -> bytes:
    """Length-prefixed access unit, without in-band SPS/PPS/AUD (the avcC carries them)."""
    units = [u for u in split_annexb(data) if u[0] & 0x1F not in (NAL_SPS, NAL_PPS, 9)]
    return join_avcc(units)


def avcc_to_annexb(data: bytes, config: bytes, keyframe: bool) -> bytes:
    """Annex B access unit; keyframes get SPS/PPS in front so a TS viewer can join there."""
    sps, pps, length_size = _parameters(config)
    units = split_avcc(data, length_size)
    if keyframe:
        units = [*sps, *pps, *units]
    return join_annexb(units)


@functools.lru_cache(maxsize=16)
def _parameters(config: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...], int]:
    """`parse_avcc_config`, once per session's avcC rather than once per video packet."""
    sps, pps, length_size = parse_avcc_config(config)
    return tuple(sps), tuple(pps), length_size
