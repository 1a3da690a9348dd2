"""The load tester plays DASH (the media origin's MPD) as it plays LL-HLS: through a real edge,
segment by segment, video and audio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from streaming.dash_viewer import start_number
from streaming.loadtest import LoadPlan, run_load
from streaming.mpd import MpdError, parse_duration, parse_mpd
from streaming.report import summarize

from .conftest import Stack

MPD_PATH = "/live/demo/manifest.mpd"


async def test_dash_viewers_play_through_the_edge_without_stalls(make_stack: Callable[..., Any]) -> None:
    stack: Stack = await make_stack()
    edge = stack.edges[0]
    await _listing(stack.origin.url, 3)  # a stream under way: the start is 3 segments back
    plan = LoadPlan((edge.url,), MPD_PATH, viewers=10, duration=9, ramp=10, metrics=(edge.metrics,))
    run = await run_load(plan, progress=None)
    figures = summarize(run)
    assert figures["errors"] == {}, figures["errors"]
    assert figures["startup"]["never_started"] == 0
    assert figures["stalls"] == 0
    assert figures["renditions"] == {"320x180": 10}
    assert figures["media_fetches"] >= 10 * 3  # 2 s segments, followed for seconds
    assert 0 < figures["latency_p50"] < 10  # about suggestedPresentationDelay (3 segments) behind
    # every media fetch brought its audio segment too (one request more per segment), and the
    # edge answered most of them from its cache
    audio = [v for v in run.viewers if v.inits.get("audio")]
    assert len(audio) == 10
    assert 0 < figures["origin_requests"] < figures["requests"] / 3


async def _listing(origin: str, segments: int, limit: float = 20) -> None:
    """Until the origin's MPD lists `segments` segments (polled, never a fixed sleep)."""
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            response = await http.get(origin + MPD_PATH)
            if response.status_code == 200:
                if len(parse_mpd(response.text).periods[-1].of_kind("video")[0].segments) >= segments:
                    return
            assert time.monotonic() < deadline, "the MPD did not fill"
            await asyncio.sleep(0.1)


MPD = """<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2023-11-14T22:13:20Z"
     minimumUpdatePeriod="PT1S" suggestedPresentationDelay="PT2S">
  <Period id="p1" start="PT0.5S">
    <AdaptationSet mimeType="video/mp4">
      <Representation id="hi" bandwidth="900000" width="640" height="360">
        <SegmentTemplate timescale="90000" presentationTimeOffset="900" startNumber="7"
          initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/s$Number$.m4s">
          <SegmentTimeline><S t="9000" d="90000" r="2"/><S d="45000"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet mimeType="audio/mp4">
      <Representation id="a" bandwidth="96000">
        <SegmentTemplate timescale="48000" startNumber="7" initialization="a/init.mp4" media="a/$Time$.m4s">
          <SegmentTimeline><S t="0" d="48000"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>"""


def test_an_mpd_expands_to_the_segments_a_player_fetches() -> None:
    mpd = parse_mpd(MPD)
    assert mpd.dynamic and mpd.availability_start == 1_700_000_000.0 and mpd.suggested_presentation_delay == 2
    [period] = mpd.periods
    video, audio = period.of_kind("video")[0], period.of_kind("audio")[0]
    assert [(s.number, s.start, s.url) for s in video.segments] == [
        (7, 9000, "hi/s7.m4s"),
        (8, 99000, "hi/s8.m4s"),
        (9, 189000, "hi/s9.m4s"),
        (10, 279000, "hi/s10.m4s"),
    ]
    assert video.initialization == "hi/init.mp4" and video.seconds(9000) == pytest.approx(0.09)
    assert audio.segments[0].url == "a/0.m4s"
    # 2 s behind the end of the newest: back over the 0.5 s segment and two of the 1 s ones
    assert start_number(mpd, "hi") == 8


@pytest.mark.parametrize(("text", "seconds"), [("PT1.5S", 1.5), ("PT1M", 60), ("P1DT2H", 93600), ("PT0S", 0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["not xml <", "<MPD/>", MPD.replace('r="2"', 'r="two"')])
def test_what_is_not_a_playable_mpd_says_why(text: str) -> None:
    with pytest.raises(MpdError):
        parse_mpd(text)
