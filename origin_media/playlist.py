"""HLS playlist rendering (RFC 8216bis, with the Low-Latency extensions). Pure functions.

The window hands us plain values; we never look at media here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

VERSION = 9  # EXT-X-SKIP (delta updates) needs 9


@dataclass(frozen=True)
class PlaylistPart:
    uri: str
    duration: float
    independent: bool


@dataclass(frozen=True)
class PlaylistSegment:
    msn: int
    uri: str
    duration: float | None  # None: still being produced (only its finished parts are listed)
    program_date_time: float
    discontinuity: bool
    map_uri: str
    parts: tuple[PlaylistPart, ...] = ()
    independent: bool = True  # starts with a keyframe


@dataclass(frozen=True)
class MediaPlaylist:
    target_duration: int
    part_target: float
    discontinuity_sequence: int
    segments: tuple[PlaylistSegment, ...]
    preload_hint_uri: str | None
    ended: bool
    independent_segments: bool = True
    skip_until: float = 0.0  # CAN-SKIP-UNTIL; 0: no delta updates
    skipped: int = 0  # a delta update: this many segments before `segments` are left out
    first_msn: int | None = None  # EXT-X-MEDIA-SEQUENCE (default: the first listed segment)


@dataclass(frozen=True)
class VariantStream:
    uri: str
    bandwidth: int
    codecs: str
    width: int = 0
    height: int = 0
    frame_rate: float = 0.0


def part_hold_back(part_target: float) -> float:
    """Three part targets: the spec asks for at least two, Apple recommends three."""
    return round(3 * part_target, 3)


def format_date(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def render_media(playlist: MediaPlaylist) -> str:
    lines = _media_header(playlist)
    current_map = ""
    for segment in playlist.segments:
        lines += _segment_lines(segment, segment.map_uri != current_map)
        current_map = segment.map_uri
    if playlist.ended:
        lines.append("#EXT-X-ENDLIST")
    elif playlist.preload_hint_uri:
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{playlist.preload_hint_uri}"')
    return "\n".join(lines) + "\n"


def _media_header(playlist: MediaPlaylist) -> list[str]:
    first = playlist.first_msn
    if first is None:
        first = playlist.segments[0].msn if playlist.segments else 0
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{playlist.target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{playlist.discontinuity_sequence}",
    ]
    if playlist.independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if playlist.part_target > 0:
        skip = f",CAN-SKIP-UNTIL={_num(playlist.skip_until)}" if playlist.skip_until else ""
        lines += [
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES{skip},"
            f"PART-HOLD-BACK={_num(part_hold_back(playlist.part_target))}",
            f"#EXT-X-PART-INF:PART-TARGET={_num(playlist.part_target)}",
        ]
    if playlist.skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={playlist.skipped}")
    return lines


def _segment_lines(segment: PlaylistSegment, new_map: bool) -> list[str]:
    lines = []
    if segment.discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    if new_map or segment.discontinuity:
        lines.append(f'#EXT-X-MAP:URI="{segment.map_uri}"')
    lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_date(segment.program_date_time)}")
    for part in segment.parts:
        independent = ",INDEPENDENT=YES" if part.independent else ""
        lines.append(f'#EXT-X-PART:DURATION={_num(part.duration)},URI="{part.uri}"{independent}')
    if segment.duration is not None:
        lines += [f"#EXTINF:{_num(segment.duration)},", segment.uri]
    return lines


def render_multivariant(variants: Sequence[VariantStream]) -> str:
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in variants:
        attrs = [f"BANDWIDTH={variant.bandwidth}", f'CODECS="{variant.codecs}"']
        if variant.width and variant.height:
            attrs.append(f"RESOLUTION={variant.width}x{variant.height}")
        if variant.frame_rate:
            attrs.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        lines += [f"#EXT-X-STREAM-INF:{','.join(attrs)}", variant.uri]
    return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    """Decimal without float noise: 0.32, 2, 1.5."""
    text = f"{value:.5f}".rstrip("0").rstrip(".")
    return text or "0"
