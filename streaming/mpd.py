"""Reading an MPEG-DASH MPD (ISO/IEC 23009-1) as a player does: the periods, and for each
Representation the segments its SegmentTemplate + SegmentTimeline expand to. Pure.

What the load tester's DASH viewer needs, no more: `$Number$` / `$RepresentationID$` /
`$Time$` templates with a SegmentTimeline (the live profile's usual form, and the media
origin's), on one AdaptationSet per content type.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class MpdError(ValueError):
    """Not an MPD this player can play; the message says why."""


@dataclass(frozen=True)
class DashSegment:
    number: int
    start: int  # on the representation's timescale
    duration: int
    url: str  # as the template makes it (relative to the MPD)


@dataclass(frozen=True)
class Representation:
    id: str
    kind: str  # "video" or "audio"
    bandwidth: int
    width: int
    height: int
    timescale: int
    presentation_time_offset: int
    initialization: str
    segments: tuple[DashSegment, ...]

    def seconds(self, ticks: int) -> float:
        return (ticks - self.presentation_time_offset) / self.timescale

    def segment(self, number: int) -> DashSegment | None:
        first = self.segments[0].number if self.segments else 0
        index = number - first
        return self.segments[index] if 0 <= index < len(self.segments) else None


@dataclass(frozen=True)
class Period:
    id: str
    start: float  # seconds after availabilityStartTime
    representations: tuple[Representation, ...]

    def of_kind(self, kind: str) -> list[Representation]:
        return [r for r in self.representations if r.kind == kind]


@dataclass(frozen=True)
class Mpd:
    dynamic: bool
    availability_start: float  # unix seconds (0 for a static MPD without one)
    minimum_update_period: float
    suggested_presentation_delay: float | None
    periods: tuple[Period, ...]


def parse_duration(text: str) -> float:
    """xs:duration (PT1.5S, PT1M, P1DT2H) in seconds."""
    match = _DURATION.match(text.strip())
    if match is None or text.strip() in ("P", "PT"):
        raise MpdError(f"not a duration: {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)


def parse_datetime(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise MpdError(f"not a date and time: {text!r}") from None


def parse_mpd(text: str) -> Mpd:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise MpdError(f"not XML: {exc}") from None
    if root.tag != f"{{{NS['d']}}}MPD":
        raise MpdError("not an MPD (no urn:mpeg:dash:schema:mpd:2011 MPD element)")
    delay = root.get("suggestedPresentationDelay")
    start = root.get("availabilityStartTime")
    return Mpd(
        dynamic=root.get("type", "static") == "dynamic",
        availability_start=parse_datetime(start) if start else 0.0,
        minimum_update_period=parse_duration(root.get("minimumUpdatePeriod", "PT2S")),
        suggested_presentation_delay=parse_duration(delay) if delay else None,
        periods=tuple(_period(p) for p in root.iterfind("d:Period", NS)),
    )


def _period(period: ET.Element) -> Period:
    representations = []
    for adaptation in period.iterfind("d:AdaptationSet", NS):
        for rep in adaptation.iterfind("d:Representation", NS):
            representations.append(_representation(adaptation, rep))
    return Period(period.get("id", ""), parse_duration(period.get("start", "PT0S")), tuple(representations))


def _representation(adaptation: ET.Element, rep: ET.Element) -> Representation:
    template = rep.find("d:SegmentTemplate", NS)
    if template is None:
        template = adaptation.find("d:SegmentTemplate", NS)
    if template is None or template.find("d:SegmentTimeline", NS) is None:
        raise MpdError(f"representation {rep.get('id')!r}: no SegmentTemplate with a SegmentTimeline")
    mime = rep.get("mimeType") or adaptation.get("mimeType") or ""
    content = adaptation.get("contentType") or mime.split("/", 1)[0]
    rep_id = rep.get("id", "")
    media = template.get("media", "")
    number = _int(template, "startNumber", 1)
    segments, time = [], 0
    for s in template.iterfind("d:SegmentTimeline/d:S", NS):
        time = _int(s, "t", time)
        duration = _int(s, "d", 0)
        for _ in range(_int(s, "r", 0) + 1):  # r = -1 (to the next t) is not used in live MPDs here
            segments.append(DashSegment(number, time, duration, _fill(media, rep_id, number, time)))
            time += duration
            number += 1
    return Representation(
        id=rep_id,
        kind=content,
        bandwidth=_int(rep, "bandwidth", 0),
        width=_int(rep, "width", 0),
        height=_int(rep, "height", 0),
        timescale=_int(template, "timescale", 1),
        presentation_time_offset=_int(template, "presentationTimeOffset", 0),
        initialization=_fill(template.get("initialization", ""), rep_id, 0, 0),
        segments=tuple(segments),
    )


def _fill(template: str, rep_id: str, number: int, time: int) -> str:
    return (
        template.replace("$RepresentationID$", rep_id)
        .replace("$Number$", str(number))
        .replace("$Time$", str(time))
        .replace("$$", "$")
    )


def _int(element: ET.Element, name: str, default: int) -> int:
    raw = element.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise MpdError(f"{name}={raw!r} is not an integer") from None
