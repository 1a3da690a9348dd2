"""HTTP handlers of the media origin: playlists (with blocking reload), init, segments,
parts (held and streamed while in progress), the TS feed, and the list of streams.

Cache-Control is chosen here, in one table: media objects never change once named (the stream
epoch in their path sees to that), playlists live about one part duration.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from . import playlist as pl
from . import track_view
from .codecs import codec_string
from .stream import LiveStream, Rendition
from .window import LiveWindow, Part, Segment

IMMUTABLE = "public, max-age=31536000, immutable"
M3U8 = "application/vnd.apple.mpegurl"
_PART = re.compile(r"^part(\d+)\.(\d+)\.m4s$")
_SEGMENT = re.compile(r"^seg(\d+)\.m4s$")
_INIT = re.compile(r"^init(\d+)\.mp4$")
TRACK_KINDS = ("video", "audio")  # DASH's one-track views: .../EPOCH/video/seg7.m4s
VIDEO_GUESS, AUDIO_GUESS = 800_000, 128_000  # BANDWIDTH of a source before it is measured

StreamLookup = Callable[[str], LiveStream | None]


def playlist_cache_control(part_seconds: float) -> str:
    return f"public, max-age={max(1, math.floor(part_seconds))}"


def not_found(what: str) -> Response:
    return PlainTextResponse(f"{what} not found\n", 404, headers={"Cache-Control": "no-store"})


class MediaRoutes:
    def __init__(self, streams: Mapping[str, LiveStream]) -> None:
        self.streams = streams

    def _window(self, request: Request) -> tuple[LiveStream, LiveWindow] | None:
        stream = self.streams.get(request.path_params["stream"])
        rendition = stream.renditions.get(request.path_params["rendition"]) if stream else None
        if stream is None or rendition is None:
            return None
        return stream, rendition.window

    # ---- /streams --------------------------------------------------------------------------

    async def list_streams(self, request: Request) -> Response:
        body = [stream.describe() for stream in self.streams.values()]
        return JSONResponse({"streams": body}, headers={"Cache-Control": "no-store"})

    # ---- playlists -------------------------------------------------------------------------

    async def multivariant(self, request: Request) -> Response:
        stream = self.streams.get(request.path_params["stream"])
        if stream is None or not stream.window.tracks:
            return not_found("stream")
        variants = [_variant(r) for r in stream.renditions.values() if r.window.tracks]
        return Response(pl.render_multivariant(variants), headers=self._playlist_headers(stream))

    async def media_playlist(self, request: Request) -> Response:
        found = self._window(request)
        if found is None or not found[1].segments:
            return not_found("playlist")
        stream, window = found
        skip = request.query_params.get("_HLS_skip") in ("YES", "v2")  # v2: no date ranges here
        try:
            msn, part = _directives(request)
        except ValueError as exc:
            return PlainTextResponse(f"{exc}\n", 400)
        if msn is not None:
            if window.too_far_ahead(msn, part):
                return PlainTextResponse("_HLS_msn/_HLS_part too far ahead of the live edge\n", 400)
            # RFC 8216bis 6.2.5.2: hold until the playlist has it, for at most 3 target durations
            if not await window.wait_until(lambda: window.has(msn, part), 3 * window.target_duration):
                return PlainTextResponse("not produced in time\n", 503, headers={"Retry-After": "1"})
        return Response(pl.render_media(window.playlist(skip)), headers=self._playlist_headers(stream))

    def _playlist_headers(self, stream: LiveStream) -> dict[str, str]:
        return {"Content-Type": M3U8, "Cache-Control": playlist_cache_control(stream.window.part_seconds)}

    # ---- media objects ---------------------------------------------------------------------

    async def media_object(self, request: Request) -> Response:
        found = self._window(request)
        if found is None or request.path_params["epoch"] != found[0].epoch:
            return not_found("object")
        window = found[1]
        name = request.path_params["name"]
        if match := _PART.match(name):
            return await self._part(window, int(match[1]), int(match[2]))
        if match := _SEGMENT.match(name):
            return await self._segment(window, int(match[1]))
        if (match := _INIT.match(name)) and int(match[1]) in window.inits:
            return Response(window.inits[int(match[1])], media_type="video/mp4", headers={"Cache-Control": IMMUTABLE})
        return not_found("object")

    async def track_object(self, request: Request) -> Response:
        """One track of an init segment or segment (`.../EPOCH/audio/seg7.m4s`): DASH players
        want a Representation per track, HLS the muxed objects; both are cut from the same."""
        found = self._window(request)
        kind = request.path_params["track"]
        if found is None or request.path_params["epoch"] != found[0].epoch or kind not in TRACK_KINDS:
            return not_found("object")
        window = found[1]
        name = request.path_params["name"]
        if match := _SEGMENT.match(name):
            return await self._segment(window, int(match[1]), kind)
        init = None
        if (match := _INIT.match(name)) and (tracks := window.init_tracks.get(int(match[1]))):
            init = track_view.track_init(tracks, kind)
        if init is None:
            return not_found("object")
        return Response(init, media_type=f"{kind}/mp4", headers={"Cache-Control": IMMUTABLE})

    async def _part(self, window: LiveWindow, msn: int, index: int) -> Response:
        part = window.part(msn, index)
        if part is None and window.may_appear(msn, index):
            # the preload hint (or the one after it): hold the request until the part starts
            await window.wait_until(lambda: window.part(msn, index) is not None, 2 * window.target_duration)
            part = window.part(msn, index)
        if part is None:
            return not_found("part")
        if part.duration is not None:
            return Response(b"".join(part.chunks), media_type="video/mp4", headers={"Cache-Control": IMMUTABLE})
        return StreamingResponse(_part_body(window, part), media_type="video/mp4", headers={"Cache-Control": IMMUTABLE})

    async def _segment(self, window: LiveWindow, msn: int, kind: str | None = None) -> Response:
        segment = window.segment(msn)
        if segment is None and window.may_appear(msn, 0):
            # low-latency DASH asks for a segment as soon as its first part may exist
            await window.wait_until(lambda: window.segment(msn) is not None, 2 * window.target_duration)
            segment = window.segment(msn)
        if segment is None:
            return not_found("segment")
        cut = _no_cut
        if kind is not None:
            number = track_view.track_number(window.init_tracks.get(segment.init_id, ()), kind)
            if number is None:
                return not_found(f"{kind} track")
            cut = partial(track_view.track_fragments, track_id=number)
        media_type = "audio/mp4" if kind == "audio" else "video/mp4"
        if segment.duration is not None:
            return Response(cut(segment.data()), media_type=media_type, headers={"Cache-Control": IMMUTABLE})
        # in progress: its parts' bytes as they are made (chunked transfer)
        return StreamingResponse(
            _segment_body(window, segment, cut), media_type=media_type, headers={"Cache-Control": IMMUTABLE}
        )

    # ---- TS feed ---------------------------------------------------------------------------

    async def ts_feed(self, request: Request) -> Response:
        stream = self.streams.get(request.path_params["stream"])
        if stream is None or stream.state != "live":
            return not_found("live stream")
        return StreamingResponse(stream.ts.read(), media_type="video/mp2t", headers={"Cache-Control": "no-store"})


async def _part_body(window: LiveWindow, part: Part) -> AsyncIterator[bytes]:
    async for chunk in window.stream_part(part, 2 * window.target_duration):
        yield chunk


def _no_cut(data: bytes) -> bytes:
    return data


async def _segment_body(
    window: LiveWindow, segment: Segment, cut: Callable[[bytes], bytes] = _no_cut
) -> AsyncIterator[bytes]:
    """Each chunk (one moof + mdat) of the segment as it is made, through `cut`."""
    sent = 0  # parts streamed out
    limit = 2 * window.target_duration
    while True:
        while sent < len(segment.parts):
            async for chunk in window.stream_part(segment.parts[sent], limit):
                if piece := cut(chunk):
                    yield piece
            if segment.parts[sent].duration is None and not window.ended:
                return  # the publisher stalled: a short body, the client retries
            sent += 1
        if segment.duration is not None or window.ended:
            return
        if not await window.wait_until(partial(_grown, window, segment, sent), limit):
            return


def _grown(window: LiveWindow, segment: Segment, parts: int) -> bool:
    """Has the segment more than `parts` parts, or is it (or the session) over?"""
    return len(segment.parts) > parts or segment.duration is not None or window.ended


def _directives(request: Request) -> tuple[int | None, int | None]:
    """`_HLS_msn` / `_HLS_part` as integers; a part without an msn is a client error."""
    raw_msn = request.query_params.get("_HLS_msn")
    raw_part = request.query_params.get("_HLS_part")
    if raw_msn is None:
        if raw_part is not None:
            raise ValueError("_HLS_part without _HLS_msn")
        return None, None
    if not raw_msn.isdigit() or (raw_part is not None and not raw_part.isdigit()):
        raise ValueError("_HLS_msn and _HLS_part are non-negative integers")
    return int(raw_msn), None if raw_part is None else int(raw_part)


def _variant(rendition: Rendition) -> pl.VariantStream:
    window = rendition.window
    return pl.VariantStream(
        f"{rendition.name}/index.m3u8",
        _bandwidth(window, rendition.nominal_bitrate),
        _codecs(window),
        *_resolution(window),
        _frame_rate(window),
    )


def _frame_rate(window: LiveWindow) -> float:
    """FRAME-RATE of a video rendition, measured; 0 (left out) for audio only."""
    if not any(t.kind == "video" for t in window.tracks):
        return 0.0
    return window.frame_rate()


def _codecs(window: LiveWindow) -> str:
    return ",".join(c for c in map(codec_string, window.tracks) if c)


def _resolution(window: LiveWindow) -> tuple[int, int]:
    video = next((t for t in window.tracks if t.kind == "video"), None)
    return (video.width, video.height) if video else (0, 0)


def _bandwidth(window: LiveWindow, nominal: int | None) -> int:
    """BANDWIDTH is a peak: the peak segment bitrate in the window, and never below the
    configured bitrate of a ladder rung (`nominal`), so a ladder keeps its order for a player
    choosing by bandwidth even when a small picture happens to compress less well. A source
    rendition has no configured bitrate: before its first segment, a guess from its tracks."""
    rates = [sum(p.size for p in s.parts) * 8 / s.duration for s in window.segments if s.duration]
    if nominal is None and not rates:
        nominal = _guess(window)
    return int(max([nominal or 0, *rates]))


def _guess(window: LiveWindow) -> int:
    video = any(t.kind == "video" for t in window.tracks)
    audio = any(t.kind == "audio" for t in window.tracks)
    return (VIDEO_GUESS if video else 0) + (AUDIO_GUESS if audio else 0)
