"""MPEG-DASH MPD rendering (ISO/IEC 23009-1, DASH-IF live and low-latency guidelines). Pure.

The same CMAF init segments and segments the HLS playlists name, described as a dynamic MPD:
one Period per publisher session (each has its own init segment), every rendition a
Representation with its own SegmentTemplate + SegmentTimeline (`$Number$` is the HLS media
sequence number, so a segment has one URL for both protocols).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import quoteattr

UTC_HTTP_ISO = "urn:mpeg:dash:utc:http-iso:2014"
UTC_DIRECT = "urn:mpeg:dash:utc:direct:2014"
PROFILES = "urn:mpeg:dash:profile:isoff-live:2011"


@dataclass(frozen=True)
class TimelineSegment:
    start: int  # decode time of its first sample, in the representation's timescale
    duration: int


@dataclass(frozen=True)
class DashRepresentation:
    id: str
    bandwidth: int
    codecs: str
    mime_type: str
    timescale: int
    presentation_time_offset: int
    start_number: int
    initialization: str
    media: str  # with $Number$
    segments: tuple[TimelineSegment, ...]
    width: int = 0
    height: int = 0
    audio_sampling_rate: int = 0


@dataclass(frozen=True)
class DashPeriod:
    id: str
    start: float  # seconds after availabilityStartTime
    representations: tuple[DashRepresentation, ...]


@dataclass(frozen=True)
class Manifest:
    availability_start: float  # unix seconds
    publish_time: float
    minimum_update_period: float
    min_buffer_time: float
    time_shift_buffer_depth: float
    suggested_presentation_delay: float
    periods: tuple[DashPeriod, ...]
    utc_timing: tuple[tuple[str, str], ...] = ()  # (scheme, value)
    # seconds before a segment's end it can be requested (streamed as it is made); 0: none
    availability_time_offset: float = 0.0
    target_latency: float = 0.0


def format_datetime(timestamp: float) -> str:
    """xs:dateTime in UTC, millisecond precision."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_duration(seconds: float) -> str:
    """xs:duration: PT1.5S."""
    return f"PT{_num(seconds)}S"


def timeline(segments: Sequence[TimelineSegment]) -> list[str]:
    """`<S>` elements: `t` where the timeline starts or jumps, `r` for runs of equal durations."""
    lines: list[str] = []
    run: list[int] = []  # [t (or -1 when contiguous), d, r]
    expected: int | None = None
    for segment in segments:
        contiguous = segment.start == expected
        if run and contiguous and run[1] == segment.duration:
            run[2] += 1
        else:
            if run:
                lines.append(_s(*run))
            run = [-1 if contiguous else segment.start, segment.duration, 0]
        expected = segment.start + segment.duration
    if run:
        lines.append(_s(*run))
    return lines


def _s(start: int, duration: int, repeat: int) -> str:
    t = f' t="{start}"' if start >= 0 else ""
    r = f' r="{repeat}"' if repeat else ""
    return f'<S{t} d="{duration}"{r}/>'


def render_mpd(manifest: Manifest) -> str:
    low_latency = manifest.availability_time_offset > 0
    profiles = PROFILES + (",http://www.dashif.org/guidelines/low-latency-live-v5" if low_latency else "")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"'
        f' profiles="{profiles}"'
        f' availabilityStartTime="{format_datetime(manifest.availability_start)}"'
        f' publishTime="{format_datetime(manifest.publish_time)}"'
        f' minimumUpdatePeriod="{format_duration(manifest.minimum_update_period)}"'
        f' minBufferTime="{format_duration(manifest.min_buffer_time)}"'
        f' timeShiftBufferDepth="{format_duration(manifest.time_shift_buffer_depth)}"'
        f' suggestedPresentationDelay="{format_duration(manifest.suggested_presentation_delay)}">',
    ]
    if low_latency and manifest.target_latency > 0:
        target = round(manifest.target_latency * 1000)
        lines.append(
            f'  <ServiceDescription id="0"><Latency target="{target}"'
            f' min="{target // 2}" max="{target * 2}"/></ServiceDescription>'
        )
    for period in manifest.periods:
        lines += _period(period, manifest.availability_time_offset)
    for scheme, value in manifest.utc_timing:
        lines.append(f"  <UTCTiming schemeIdUri={quoteattr(scheme)} value={quoteattr(value)}/>")
    lines.append("</MPD>")
    return "\n".join(lines) + "\n"


def _period(period: DashPeriod, offset: float) -> list[str]:
    lines = [f'  <Period id={quoteattr(period.id)} start="{format_duration(period.start)}">']
    by_mime: dict[str, list[DashRepresentation]] = {}
    for representation in period.representations:
        by_mime.setdefault(representation.mime_type, []).append(representation)
    for number, (mime, representations) in enumerate(by_mime.items()):
        lines.append(f'    <AdaptationSet id="{number}" mimeType="{mime}" segmentAlignment="true" startWithSAP="1">')
        for representation in representations:
            lines += _representation(representation, offset)
        lines.append("    </AdaptationSet>")
    lines.append("  </Period>")
    return lines


def _representation(rep: DashRepresentation, offset: float) -> list[str]:
    attrs = [f"id={quoteattr(rep.id)}", f'bandwidth="{rep.bandwidth}"', f"codecs={quoteattr(rep.codecs)}"]
    if rep.width and rep.height:
        attrs += [f'width="{rep.width}"', f'height="{rep.height}"']
    if rep.audio_sampling_rate:
        attrs.append(f'audioSamplingRate="{rep.audio_sampling_rate}"')
    low_latency = f' availabilityTimeOffset="{_num(offset)}" availabilityTimeComplete="false"' if offset > 0 else ""
    return [
        f"      <Representation {' '.join(attrs)}>",
        f'        <SegmentTemplate timescale="{rep.timescale}"'
        f' presentationTimeOffset="{rep.presentation_time_offset}"'
        f' startNumber="{rep.start_number}"'
        f" initialization={quoteattr(rep.initialization)} media={quoteattr(rep.media)}{low_latency}>",
        "          <SegmentTimeline>",
        *(f"            {s}" for s in timeline(rep.segments)),
        "          </SegmentTimeline>",
        "        </SegmentTemplate>",
        "      </Representation>",
    ]


def _num(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"
