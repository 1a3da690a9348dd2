"""The DASH view of a live stream: `/live/STREAM/manifest.mpd` and `/time` (for UTCTiming).

Reads the same live windows the HLS playlists are made from and hands plain values to
`dash.render_mpd`. A segment's start on the timeline is read from its first fragment's `tfdt`
(the packager's timeline runs on across sessions). Each session is a Period whose start is
the wall clock (PROGRAM-DATE-TIME) of the first of its segments this origin listed, remembered
so that the Period stays put while the window slides.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from . import dash, track_view
from .codecs import codec_string
from .fmp4 import timescale
from .media import Track
from .routes import AUDIO_GUESS, _bandwidth, not_found, playlist_cache_control
from .stream import LiveStream, Rendition
from .window import LiveWindow, Segment

MPD = "application/dash+xml"


def first_decode_time(fragment: bytes) -> int | None:
    """baseMediaDecodeTime of the first `traf` of a moof (the lead track's: it comes first)."""
    moof = _child(fragment, b"moof")
    traf = _child(moof, b"traf") if moof is not None else None
    tfdt = _child(traf, b"tfdt") if traf is not None else None
    if tfdt is None or len(tfdt) < 8:
        return None
    version = tfdt[0]
    return int(struct.unpack_from(">Q" if version == 1 else ">I", tfdt, 4)[0])


def _child(data: bytes, kind: bytes) -> bytes | None:
    at = 0
    while at + 8 <= len(data):
        size, name = struct.unpack_from(">I4s", data, at)
        if size < 8:
            return None
        if name == kind:
            return data[at + 8 : at + size]
        at += size
    return None


@dataclass(frozen=True)
class _Listed:
    segment: Segment
    start: int  # tfdt
    duration: int


class DashRoutes:
    def __init__(self, streams: Mapping[str, LiveStream], clock: Callable[[], float] = time.time) -> None:
        self.streams = streams
        self._clock = clock
        # (stream epoch, init id) -> Period start, seconds after availabilityStartTime
        self._period_starts: dict[tuple[str, int], float] = {}
        # (stream epoch, rendition, init id) -> presentationTimeOffset
        self._offsets: dict[tuple[str, str, int], int] = {}
        # (stream epoch, rendition, msn, track id) -> (start, duration) of that track's samples
        self._track_times: dict[tuple[str, str, int, int], tuple[int, int] | None] = {}

    async def time(self, request: Request) -> Response:
        """The wall clock, as `urn:mpeg:dash:utc:http-iso:2014` asks."""
        return PlainTextResponse(
            dash.format_datetime(self._clock()),
            headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"},
        )

    async def manifest(self, request: Request) -> Response:
        stream = self.streams.get(request.path_params["stream"])
        if stream is None or not stream.window.tracks or not stream.window.segments:
            return not_found("stream")
        # relative: a player asks the host it got the MPD from (an edge), never the origin
        manifest = self.build(stream, "/time")
        if not manifest.periods:
            return not_found("stream")
        return Response(
            dash.render_mpd(manifest),
            media_type=MPD,
            headers={
                "Cache-Control": playlist_cache_control(stream.window.part_seconds),
                "Access-Control-Allow-Origin": "*",
            },
        )

    def build(self, stream: LiveStream, time_url: str) -> dash.Manifest:
        window = stream.window
        availability_start = int(stream.epoch, 36) / 1000  # the stream's birth: before any PDT
        renditions = [r for r in stream.renditions.values() if r.window.tracks]
        listed = {r.name: _listed(r.window) for r in renditions}
        init_ids = sorted({item.segment.init_id for items in listed.values() for item in items})
        periods = []
        for init_id in init_ids:
            start = self._period_start(stream, init_id, listed, availability_start)
            representations: list[dash.DashRepresentation] = []
            for r in renditions:
                # one audio Representation: the renditions carry the same sound
                with_audio = not any(rep.mime_type == "audio/mp4" for rep in representations)
                representations += self._representations(
                    stream, r, init_id, listed[r.name], start + availability_start, with_audio
                )
            if representations:
                periods.append(dash.DashPeriod(f"p{init_id}", start, tuple(representations)))
        self._forget(stream.epoch, set(init_ids), {i.segment.msn for items in listed.values() for i in items})
        now = self._clock()
        part = window.part_seconds
        return dash.Manifest(
            availability_start=availability_start,
            publish_time=now,
            minimum_update_period=window.segment_seconds,
            min_buffer_time=max(part, 1.0),
            time_shift_buffer_depth=window.window_seconds,
            suggested_presentation_delay=3 * window.segment_seconds,
            periods=tuple(periods),
            utc_timing=((dash.UTC_HTTP_ISO, time_url), (dash.UTC_DIRECT, dash.format_datetime(now))),
            availability_time_offset=max(0.0, window.segment_seconds - part) if part > 0 else 0.0,
            target_latency=3 * part if part > 0 else 0.0,
        )

    def _period_start(
        self, stream: LiveStream, init_id: int, listed: Mapping[str, list[_Listed]], availability_start: float
    ) -> float:
        key = (stream.epoch, init_id)
        if key not in self._period_starts:
            pdts = [
                i.segment.program_date_time for items in listed.values() for i in items if i.segment.init_id == init_id
            ]
            # whole milliseconds (as the MPD writes it), rounded down: no media before the start
            self._period_starts[key] = math.floor(max(0.0, min(pdts) - availability_start) * 1000) / 1000
        return self._period_starts[key]

    def _representations(
        self,
        stream: LiveStream,
        rendition: Rendition,
        init_id: int,
        listed: list[_Listed],
        period_wall_clock: float,
        with_audio: bool,
    ) -> list[dash.DashRepresentation]:
        """The rendition's video track as a Representation, and its audio track (`with_audio`):
        dash.js plays one track per Representation, so each is the one-track view of the
        muxed segments (`.../EPOCH/video/seg7.m4s`)."""
        items = [i for i in listed if i.segment.init_id == init_id]
        window = rendition.window
        tracks = window.init_tracks.get(init_id, ())
        if not items or not tracks:
            return []
        scale = timescale(tracks[_lead(tracks)])
        key = (stream.epoch, rendition.name, init_id)
        if key not in self._offsets:
            # the media time shown at the Period's start: its first segment lands at its PDT
            first = items[0]
            ahead = first.segment.program_date_time - period_wall_clock
            self._offsets[key] = max(0, first.start - round(ahead * scale))
        offset_seconds = self._offsets[key] / scale
        video = next((t for t in tracks if t.kind == "video"), None)
        audio = next((t for t in tracks if t.kind == "audio"), None)
        prefix = f"{rendition.name}/{window.prefix}"
        common = {"start_number": items[0].segment.msn}
        out = []
        if video is not None:
            out.append(
                dash.DashRepresentation(
                    id=rendition.name,
                    bandwidth=_bandwidth(window, rendition.nominal_bitrate),
                    codecs=codec_string(video),
                    mime_type="video/mp4",
                    timescale=scale,
                    presentation_time_offset=self._offsets[key],
                    initialization=f"{prefix}video/init{init_id}.mp4",
                    media=f"{prefix}video/seg$Number$.m4s",
                    segments=tuple(dash.TimelineSegment(i.start, i.duration) for i in items),
                    width=video.width,
                    height=video.height,
                    **common,
                )
            )
        if audio is not None and (with_audio or video is None):
            number = track_view.track_number(tracks, "audio")
            assert number is not None
            rate = timescale(audio)
            out.append(
                dash.DashRepresentation(
                    id=f"{rendition.name}-audio" if video is not None else rendition.name,
                    bandwidth=AUDIO_GUESS if video is not None else _bandwidth(window, rendition.nominal_bitrate),
                    codecs=codec_string(audio),
                    mime_type="audio/mp4",
                    timescale=rate,
                    presentation_time_offset=round(offset_seconds * rate),
                    initialization=f"{prefix}audio/init{init_id}.mp4",
                    media=f"{prefix}audio/seg$Number$.m4s",
                    segments=self._track_timeline(stream, rendition, items, number),
                    audio_sampling_rate=audio.sample_rate,
                    **common,
                )
            )
        return out

    def _track_timeline(
        self, stream: LiveStream, rendition: Rendition, items: list[_Listed], track_id: int
    ) -> tuple[dash.TimelineSegment, ...]:
        """Where a non-lead track's samples sit in each segment (its own timescale), read from
        the fragments once per finished segment."""
        out = []
        for item in items:
            key = (stream.epoch, rendition.name, item.segment.msn, track_id)
            if key not in self._track_times:
                self._track_times[key] = _segment_track_timing(item.segment, track_id)
            timing = self._track_times[key]
            if timing is not None:
                out.append(dash.TimelineSegment(*timing))
        return tuple(out)

    def _forget(self, epoch: str, init_ids: set[int], msns: set[int]) -> None:
        """Periods and segments no longer listed (memory stays bounded by the window)."""
        for tkey in [k for k in self._track_times if k[0] == epoch and k[2] not in msns]:
            del self._track_times[tkey]
        for key in [k for k in self._period_starts if k[0] == epoch and k[1] not in init_ids]:
            del self._period_starts[key]
        for okey in [k for k in self._offsets if k[0] == epoch and k[2] not in init_ids]:
            del self._offsets[okey]


def _timescale(window: LiveWindow) -> int:
    return timescale(window.tracks[_lead(window.tracks)])


def _lead(tracks: Sequence[Track]) -> int:
    """The packager's lead track: the first video track, else the first."""
    return next((n for n, t in enumerate(tracks) if t.kind == "video"), 0)


def _segment_track_timing(segment: Segment, track_id: int) -> tuple[int, int] | None:
    start: int | None = None
    duration = 0
    for chunk in (c for part in segment.parts for c in part.chunks):
        timing = track_view.track_timing(chunk, track_id)
        if timing is not None:
            start = timing[0] if start is None else start
            duration += timing[1]
    return (start, duration) if start is not None else None


def _listed(window: LiveWindow) -> list[_Listed]:
    """The finished segments of the HLS window, with their place on the timeline."""
    scale = _timescale(window)
    shown = {s.msn for s in window.playlist().segments if s.duration is not None}
    items = []
    for segment in window.segments:
        if segment.msn not in shown or segment.duration is None or not segment.parts:
            continue
        start = first_decode_time(segment.parts[0].chunks[0]) if segment.parts[0].chunks else None
        if start is not None:
            items.append(_Listed(segment, start, round(segment.duration * scale)))
    return items
