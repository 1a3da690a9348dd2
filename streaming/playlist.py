"""HLS playlists as a player reads them (RFC 8216bis with the Low-Latency extensions). Pure.

`parse_multivariant` gives the variant streams of a master playlist; `parse_media` a media
playlist with every segment's media sequence number, program date-time (carried forward
from the last EXT-X-PROGRAM-DATE-TIME when a segment has none), init section and parts.
The segment still being produced (parts listed, no EXTINF yet) is kept with `uri` None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


class PlaylistError(ValueError):
    """Text that is not a playlist this player can follow."""


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    resolution: str = ""
    codecs: str = ""


@dataclass(frozen=True)
class Part:
    uri: str
    duration: float
    independent: bool


@dataclass
class Segment:
    msn: int
    uri: str | None  # None: still being produced
    duration: float  # EXTINF, or the sum of the listed parts while in progress
    program_date_time: float | None  # seconds since the epoch
    map_uri: str | None
    parts: list[Part] = field(default_factory=list)
    discontinuity: bool = False


@dataclass
class MediaPlaylist:
    target_duration: float
    media_sequence: int
    segments: list[Segment]
    part_target: float | None = None
    can_block_reload: bool = False
    part_hold_back: float | None = None
    hold_back: float | None = None
    preload_hint: str | None = None
    ended: bool = False

    @property
    def low_latency(self) -> bool:
        """Parts and blocking reload: follow part by part with _HLS_msn/_HLS_part."""
        return self.part_target is not None and self.can_block_reload

    def segment(self, msn: int) -> Segment | None:
        index = msn - self.media_sequence
        return self.segments[index] if 0 <= index < len(self.segments) else None

    def next_msn(self) -> int:
        """The media sequence number after the last listed segment."""
        return self.media_sequence + len(self.segments)


def attributes(text: str) -> dict[str, str]:
    """An attribute list (`A=1,B="x,y"`) as a dict, quotes removed."""
    return {name: value.strip('"') for name, value in _ATTRIBUTE.findall(text)}


def parse_date(text: str) -> float:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise PlaylistError(f"bad EXT-X-PROGRAM-DATE-TIME {text!r}") from None


def _lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("not a playlist: the first line is not #EXTM3U")
    return lines[1:]


def _tag(line: str) -> tuple[str, str]:
    name, _, value = line[1:].partition(":")
    return name, value


def parse_multivariant(text: str) -> list[Variant]:
    """The variant streams, in playlist order. A media playlist is its own single variant."""
    lines = _lines(text)
    variants: list[Variant] = []
    pending: dict[str, str] | None = None
    for line in lines:
        if line.startswith("#"):
            name, value = _tag(line)
            if name == "EXT-X-STREAM-INF":
                pending = attributes(value)
            elif name in ("EXTINF", "EXT-X-TARGETDURATION"):
                return []  # a media playlist: the caller plays it directly
            continue
        if pending is not None:
            bandwidth = pending.get("BANDWIDTH", "0")
            if not bandwidth.isdigit():
                raise PlaylistError(f"bad BANDWIDTH {bandwidth!r}")
            variants.append(Variant(line, int(bandwidth), pending.get("RESOLUTION", ""), pending.get("CODECS", "")))
            pending = None
    if not variants:
        raise PlaylistError("a multivariant playlist without EXT-X-STREAM-INF")
    return variants


def _number(value: str, tag: str) -> float:
    try:
        return float(value.split(",")[0])
    except ValueError:
        raise PlaylistError(f"bad {tag} value {value!r}") from None


class _MediaReader:
    """Collects a media playlist line by line; one method per kind of tag."""

    def __init__(self) -> None:
        self.playlist = MediaPlaylist(0.0, 0, [])
        self.pending: Segment | None = None
        self.map_uri: str | None = None
        self.next_date: float | None = None

    def current(self) -> Segment:
        if self.pending is None:
            self.pending = Segment(self.playlist.next_msn(), None, 0.0, self.next_date, self.map_uri)
        return self.pending

    def header(self, name: str, value: str) -> bool:
        p = self.playlist
        if name == "EXT-X-TARGETDURATION":
            p.target_duration = _number(value, name)
        elif name == "EXT-X-MEDIA-SEQUENCE":
            p.media_sequence = int(_number(value, name))
        elif name == "EXT-X-PART-INF":
            p.part_target = _number(attributes(value).get("PART-TARGET", ""), name)
        elif name == "EXT-X-SERVER-CONTROL":
            control = attributes(value)
            p.can_block_reload = control.get("CAN-BLOCK-RELOAD") == "YES"
            if "PART-HOLD-BACK" in control:
                p.part_hold_back = _number(control["PART-HOLD-BACK"], name)
            if "HOLD-BACK" in control:
                p.hold_back = _number(control["HOLD-BACK"], name)
        elif name == "EXT-X-PRELOAD-HINT":
            hint = attributes(value)
            if hint.get("TYPE") == "PART" and "BYTERANGE-START" not in hint:  # a whole part
                p.preload_hint = hint.get("URI")
        elif name == "EXT-X-ENDLIST":
            p.ended = True
        else:
            return False
        return True

    def segment_tag(self, name: str, value: str) -> None:
        if name == "EXT-X-MAP":
            self.map_uri = attributes(value).get("URI")
            self.current().map_uri = self.map_uri
        elif name == "EXT-X-PROGRAM-DATE-TIME":
            self.current().program_date_time = parse_date(value)
        elif name == "EXT-X-DISCONTINUITY":
            self.current().discontinuity = True
        elif name == "EXT-X-PART":
            a = attributes(value)
            if "URI" not in a:
                raise PlaylistError("EXT-X-PART without URI")
            part = Part(a["URI"], _number(a.get("DURATION", ""), name), a.get("INDEPENDENT") == "YES")
            segment = self.current()
            segment.parts.append(part)
            segment.duration += part.duration
        elif name == "EXTINF":
            self.current().duration = _number(value, name)

    def uri(self, line: str) -> None:
        segment = self.current()
        segment.uri = line
        self.close(segment)

    def close(self, segment: Segment) -> None:
        self.playlist.segments.append(segment)
        if segment.program_date_time is not None:
            self.next_date = segment.program_date_time + segment.duration
        self.pending = None


def parse_media(text: str) -> MediaPlaylist:
    reader = _MediaReader()
    for line in _lines(text):
        if not line.startswith("#"):
            reader.uri(line)
            continue
        name, value = _tag(line)
        if not reader.header(name, value):
            reader.segment_tag(name, value)
    if reader.pending is not None and reader.pending.parts:
        reader.close(reader.pending)  # the segment in progress
    if reader.playlist.target_duration <= 0:
        raise PlaylistError("a media playlist without EXT-X-TARGETDURATION")
    return reader.playlist


def start_position(playlist: MediaPlaylist) -> tuple[int, int]:
    """Where a player starts: (msn, part index). An ended playlist (on demand): its first segment.

    Live and low-latency: the last independent part at least PART-HOLD-BACK (3 part targets if absent)
    from the live edge. Otherwise the segment three target durations from the end (RFC
    8216bis 6.3.3). Part index 0 with a whole segment means "fetch the segment".
    """
    segments = playlist.segments
    if not segments:
        raise PlaylistError("an empty media playlist")
    if playlist.ended:
        return segments[0].msn, 0
    if playlist.low_latency:
        assert playlist.part_target is not None
        hold = playlist.part_hold_back or 3 * playlist.part_target
        return _independent_part_before(playlist, hold)
    complete = [s for s in segments if s.uri is not None]
    budget, chosen = 3 * playlist.target_duration, complete[0] if complete else segments[0]
    for segment in reversed(complete):
        budget -= segment.duration
        chosen = segment
        if budget <= 0:
            break
    return chosen.msn, 0


def _independent_part_before(playlist: MediaPlaylist, hold: float) -> tuple[int, int]:
    total = sum(s.duration for s in playlist.segments)
    start = 0.0
    best = (playlist.segments[0].msn, 0)
    for segment in playlist.segments:
        offset = start
        for index, part in enumerate(segment.parts):
            if part.independent and offset <= total - hold:
                best = (segment.msn, index)
            offset += part.duration
        if not segment.parts and start <= total - hold:
            best = (segment.msn, 0)
        start += segment.duration
    return best


def blocking_directive(playlist: MediaPlaylist, msn: int, part: int) -> tuple[int, int]:
    """The `_HLS_msn`/`_HLS_part` to ask for when part `part` of segment `msn` is wanted next.

    Once the segment in progress is as long as the last whole one, the next part is part 0 of
    the following segment: RFC 8216bis 6.2.5.2 has servers read a part index past a segment's
    end that way, but asking for it directly also suits servers that refuse such an index.
    """
    segment = playlist.segment(msn)
    if segment is None or segment.uri is not None or part < len(segment.parts):
        return msn, part
    whole = [s.duration for s in playlist.segments if s.uri is not None]
    if whole and segment.duration >= whole[-1] - 0.01:
        return msn + 1, 0
    return msn, part
