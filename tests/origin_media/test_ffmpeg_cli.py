"""Debian's ffmpeg CLI pushing RTMP as OBS does (x264 high profile with B-frames, long GOPs,
AAC 48 kHz, audio-only, video-only, a publisher that stops and comes back), and the playlists
checked against the rules at every blocking reload until ENDLIST and after it."""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import datetime

import pytest

from . import hls
from .conftest import Origin, finish, start_publisher
from .test_spec import KEY, PART, TARGET, _next, _reload, _rtmp_origin, _stop

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg (make deps)")
Seen = list[tuple[float, hls.Playlist]]  # (arrival time, playlist) of every reload
FRAME = 0.04  # 25 fps


async def follow(origin: Origin, limit: float = 30.0) -> Seen:
    """Blocking reloads part after part, as an LL-HLS player makes them, from the first
    playlist to three reloads past ENDLIST; every one checked against the rules."""
    deadline = time.monotonic() + limit
    while (playlist := await _reload(origin)) is None:
        assert time.monotonic() < deadline, "no playlist"
        await asyncio.sleep(0.02)
    seen: Seen = []
    while sum(p.ended for _, p in seen) < 3:
        assert time.monotonic() < deadline, "no ENDLIST"
        hls.check_rules(playlist, TARGET, PART)
        assert not (seen and seen[-1][1].ended and not playlist.ended), "ENDLIST removed"
        seen.append((time.time(), playlist))
        if playlist.ended:
            playlist = await _reload(origin) or playlist
        else:
            playlist = await _next(origin, playlist) or await _reload(origin) or playlist
    return seen


FLUSH = 0.6  # x264's lookahead, sent at once when the input ends: those frames arrive early


def _pdt(segment: hls.Segment) -> float:
    return datetime.fromisoformat(segment.program_date_time or "").timestamp()


def _session_ends(playlist: hls.Playlist) -> list[float]:
    """By PDT, where each publisher's session ended: before a discontinuity, and at the end."""
    full = playlist.full_segments
    return [
        _pdt(s) + (s.duration or 0)
        for s, after in zip(full, [*full[1:], None], strict=True)
        if after is None or after.discontinuity
    ]


def lateness(seen: Seen) -> list[float]:
    """For each reload: when it arrived minus the end of its newest part by PROGRAM-DATE-TIME.
    A part is listed once it ended, so a PDT late by d makes this about -d at best. Parts the
    encoder flushed at the end of its input are left out: they left early, in a burst."""
    ends = _session_ends(seen[-1][1])
    out = []
    for arrived, playlist in seen:
        segment = next((s for s in reversed(playlist.segments) if s.parts), None)
        if segment is None or segment.program_date_time is None or playlist.ended:
            continue
        part_end = _pdt(segment) + sum(p.duration for p in segment.parts)
        if not any(end - FLUSH < part_end < end + 0.01 for end in ends):
            out.append(arrived - part_end)
    return out


def check_program_date_time(seen: Seen) -> None:
    """PDT within 100 ms of arrival: no part listed more than 0.1 s before its PDT end (PDT
    not late), and the promptest listing no later than 0.1 s + a frame after it (not early)."""
    late = lateness(seen)
    assert len(late) > 10
    assert -0.1 <= min(late) <= 0.1 + FRAME, f"{min(late):+.3f} s"


CASES = {  # tracks, B-frames, GOP in frames
    "x264 high, B-frames, 4 s GOPs": ("av", 3, 100),
    "audio only": ("a", 0, 25),
    "video only, 2 s GOPs": ("v", 2, 50),
}


@pytest.mark.parametrize("case", CASES)
async def test_an_ffmpeg_push_keeps_the_rules_over_every_reload(make_origin, case: str) -> None:  # type: ignore[no-untyped-def]
    tracks, bframes, gop = CASES[case]
    # a 3 s window: segments are removed within the push, and the 3 x target rule applies
    origin = await _rtmp_origin(make_origin, window_seconds=3.0, reconnect_grace_seconds=0.3)
    publisher = await start_publisher(origin.rtmp_url(KEY), 5, bframes, gop, tracks, cli=True)
    try:
        seen = await follow(origin)
        assert await finish(publisher) == 0
    finally:
        await _stop(publisher)
    assert len(seen) > 15 and any(p.media_sequence > 0 for _, p in seen)
    check_program_date_time(seen)
    final = seen[-1][1]
    assert sum(s.duration or 0 for s in final.full_segments) >= 3 * TARGET


async def test_an_ffmpeg_publisher_back_within_the_grace_continues_after_a_discontinuity(make_origin) -> None:  # type: ignore[no-untyped-def]
    origin = await _rtmp_origin(make_origin, reconnect_grace_seconds=2.0)
    url = origin.rtmp_url(KEY)
    first = await start_publisher(url, 2.5, 3, 50, cli=True)
    follower = asyncio.create_task(follow(origin))
    again = None
    try:
        assert await finish(first) == 0  # a clean stop (FCUnpublish), then back at once
        again = await start_publisher(url, 2.5, 3, 50, cli=True)
        seen = await follower
        assert await finish(again) == 0
    finally:
        follower.cancel()
        for process in (first, again):
            if process is not None:
                await _stop(process)
    final = seen[-1][1]
    [resumed] = [s for s in final.segments if s.discontinuity]
    assert resumed.msn > final.media_sequence and resumed.map_uri != final.segments[0].map_uri
    first_end = next(i for i, (_, p) in enumerate(seen) if p.ended)
    assert any(s.discontinuity for s in seen[first_end - 1][1].segments), "ENDLIST before the return"
    check_program_date_time(seen)  # each session stamped from its own first frame
