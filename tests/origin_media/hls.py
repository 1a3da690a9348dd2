"""A small HLS media playlist parser for the tests (the tags the origin writes)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Part:
    uri: str
    duration: float
    independent: bool


@dataclass
class Segment:
    uri: str | None
    duration: float | None
    msn: int
    discontinuity: bool = False
    map_uri: str | None = None
    program_date_time: str | None = None
    parts: list[Part] = field(default_factory=list)


@dataclass
class Playlist:
    tags: dict[str, str]
    segments: list[Segment]
    preload_hint: str | None
    ended: bool

    @property
    def media_sequence(self) -> int:
        return int(self.tags["EXT-X-MEDIA-SEQUENCE"])

    @property
    def full_segments(self) -> list[Segment]:
        return [s for s in self.segments if s.uri is not None]

    def last_part(self) -> tuple[int, int]:
        for segment in reversed(self.segments):
            if segment.parts:
                return segment.msn, len(segment.parts) - 1
        return -1, -1


def attributes(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)}


def parse(text: str) -> Playlist:
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U", "not a playlist"
    tags: dict[str, str] = {}
    segments: list[Segment] = []
    hint, ended, current_map, msn = None, False, None, None
    pending: Segment | None = None
    for line in lines[1:]:
        name, _, value = line[1:].partition(":") if line.startswith("#") else ("", "", line)
        if name == "EXT-X-MEDIA-SEQUENCE":
            msn = int(value)
        if name == "EXT-X-SKIP":  # a delta update: the first segments are left out
            msn = (msn or 0) + int(attributes(value)["SKIPPED-SEGMENTS"])
        if pending is None and name in (
            "EXT-X-DISCONTINUITY",
            "EXT-X-MAP",
            "EXT-X-PART",
            "EXT-X-PROGRAM-DATE-TIME",
            "EXTINF",
        ):
            assert msn is not None, "segment before EXT-X-MEDIA-SEQUENCE"
            pending = Segment(None, None, msn, map_uri=current_map)
        if name == "EXT-X-DISCONTINUITY":
            pending.discontinuity = True  # type: ignore[union-attr]
        elif name == "EXT-X-MAP":
            current_map = attributes(value)["URI"]
            pending.map_uri = current_map  # type: ignore[union-attr]
        elif name == "EXT-X-PROGRAM-DATE-TIME":
            pending.program_date_time = value  # type: ignore[union-attr]
        elif name == "EXT-X-PART":
            a = attributes(value)
            pending.parts.append(Part(a["URI"], float(a["DURATION"]), a.get("INDEPENDENT") == "YES"))  # type: ignore[union-attr]
        elif name == "EXTINF":
            pending.duration = float(value.rstrip(",").split(",")[0])  # type: ignore[union-attr]
        elif name == "" and line.strip():
            assert pending is not None and pending.duration is not None, f"URI without EXTINF: {line}"
            pending.uri = line.strip()
            segments.append(pending)
            pending, msn = None, msn + 1  # type: ignore[operator]
        elif name == "EXT-X-PRELOAD-HINT":
            hint = attributes(value)["URI"]
        elif name == "EXT-X-ENDLIST":
            ended = True
        elif name and name not in ("EXT-X-PART", "EXTINF"):
            tags[name] = value
    if pending is not None:
        segments.append(pending)
    return Playlist(tags, segments, hint, ended)


def check_rules(playlist: Playlist, target: int, part_target: float) -> None:
    """What every reload must satisfy (RFC 8216bis 4.4.3.1, 4.4.4.9, 6.2.2): a full (not delta)
    playlist with at least three target durations once segments are being removed."""
    assert int(playlist.tags["EXT-X-TARGETDURATION"]) == target, "EXT-X-TARGETDURATION changed"
    for segment in playlist.segments:
        if segment.duration is not None:
            assert round(segment.duration) <= target, f"EXTINF {segment.duration} > {target}"
        for part in segment.parts:
            assert part.duration <= part_target + 1e-6, f"part {part.uri}: {part.duration}"
    listed = sum(s.duration or 0.0 for s in playlist.full_segments)
    if playlist.media_sequence > 0:
        assert listed >= 3 * target - 1e-6, f"only {listed:.2f} s listed"
