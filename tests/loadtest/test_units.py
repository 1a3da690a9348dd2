"""The load tester's pure parts, table-driven: playlists, the playback buffer, rendition choice,
Zipf popularity, Cache-Status reading and thresholds."""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

import pytest

from streaming.buffer import PlaybackBuffer
from streaming.loadtest_cli import add_arguments, exceeded, targets_of
from streaming.playlist import (
    PlaylistError,
    Variant,
    blocking_directive,
    parse_media,
    parse_multivariant,
    start_position,
)
from streaming.viewer import choose_rendition
from streaming.webload import ZipfPicker, cache_outcome

MASTER = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=1200000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=640x360
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=300000,CODECS="avc1.64000d",RESOLUTION=320x180
180p/index.m3u8
"""

# What origin_media renders: two whole segments, one in progress, a preload hint.
LL_MEDIA = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5
#EXT-X-PART-INF:PART-TARGET=0.5
#EXT-X-MAP:URI="e1/init1.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T04:00:00.000Z
#EXTINF:2,
e1/seg7.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T04:00:02.000Z
#EXT-X-PART:DURATION=0.5,URI="e1/part8.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.5,URI="e1/part8.1.m4s"
#EXT-X-PART:DURATION=0.5,URI="e1/part8.2.m4s"
#EXT-X-PART:DURATION=0.5,URI="e1/part8.3.m4s"
#EXTINF:2,
e1/seg8.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T04:00:04.000Z
#EXT-X-PART:DURATION=0.5,URI="e1/part9.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.5,URI="e1/part9.1.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="e1/part9.2.m4s"
"""

CLASSIC = """#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:100
#EXTINF:4.0,
a.ts
#EXTINF:4.0,
b.ts
#EXTINF:4.0,
c.ts
#EXTINF:4.0,
d.ts
#EXTINF:3.5,
e.ts
"""


def test_multivariant_lists_variants_in_order() -> None:
    assert parse_multivariant(MASTER) == [
        Variant("360p/index.m3u8", 1_200_000, "640x360", "avc1.64001f,mp4a.40.2"),
        Variant("180p/index.m3u8", 300_000, "320x180", "avc1.64000d"),
    ]
    assert parse_multivariant(CLASSIC) == []  # a media playlist: played directly


@pytest.mark.parametrize(
    "text", ["", "hello", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=x\na.m3u8\n", "#EXTM3U\n#EXT-X-VERSION:6\n"]
)
def test_bad_multivariant_playlists_are_refused(text: str) -> None:
    with pytest.raises(PlaylistError):
        parse_multivariant(text)


def test_low_latency_media_playlist() -> None:
    p = parse_media(LL_MEDIA)
    assert (p.target_duration, p.media_sequence, p.part_target, p.part_hold_back) == (2, 7, 0.5, 1.5)
    assert p.low_latency and p.preload_hint == "e1/part9.2.m4s" and not p.ended
    assert [(s.msn, s.uri, s.duration, len(s.parts)) for s in p.segments] == [
        (7, "e1/seg7.m4s", 2.0, 0),
        (8, "e1/seg8.m4s", 2.0, 4),
        (9, None, 1.0, 2),
    ]
    assert p.segments[2].program_date_time - p.segments[0].program_date_time == pytest.approx(4.0)
    assert {s.map_uri for s in p.segments} == {"e1/init1.mp4"}
    assert p.next_msn() == 10 and p.segment(9) is p.segments[2] and p.segment(6) is None


@pytest.mark.parametrize(
    "text, start",
    [
        # 1.5 s hold-back from 5.0 s of media: the last independent part at or before 3.5 s is 8.0
        (LL_MEDIA, (8, 0)),
        # no parts: three target durations (12 s) back from the end of 19.5 s of segments
        (CLASSIC, (101, 0)),
        (CLASSIC.replace("#EXT-X-TARGETDURATION:4", "#EXT-X-TARGETDURATION:40"), (100, 0)),
        (CLASSIC + "#EXT-X-ENDLIST\n", (100, 0)),  # on demand: from the start
    ],
)
def test_start_position(text: str, start: tuple[int, int]) -> None:
    assert start_position(parse_media(text)) == start


@pytest.mark.parametrize(
    "text",
    [
        "#EXTM3U\n#EXTINF:4,\na.ts\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:x\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:soon\n",
    ],
)
def test_bad_media_playlists_are_refused(text: str) -> None:
    with pytest.raises(PlaylistError):
        parse_media(text)


# (events as (time, media seconds appended or None to just look), stalls, stalled seconds at t=10)
BUFFER_CASES = [
    ([(0, 2.0), (1, 2.0), (3, 2.0)], 0, 0.0),  # always ahead
    ([(0, 1.0), (3, 1.0)], 1, 2.0),  # dry at 1, refilled at 3; dry again at 4 until 10
    ([(0, 0.5), (0.5, 0.5), (1.0, 0.5)], 0, 0.0),  # arrives just in time
    ([(2, 1.0)], 0, 0.0),  # play starts with the first media: waiting before is startup
]


@pytest.mark.parametrize("events, stalls, stalled_before_end", BUFFER_CASES)
def test_playback_buffer_counts_stalls(
    events: list[tuple[float, float]], stalls: int, stalled_before_end: float
) -> None:
    buffer = PlaybackBuffer()
    for at, seconds in events:
        buffer.append(seconds, at)
    last = events[-1][0]
    end_of_media = last + buffer.buffered(last)
    assert buffer.stalls == stalls
    assert buffer.stall_seconds == pytest.approx(stalled_before_end)
    # after the last media runs out, one more stall lasting until now
    assert buffer.total_stall(10) == pytest.approx(stalled_before_end + 10 - end_of_media)
    assert buffer.stalled(10) and buffer.watched(10) == 10 - events[0][0]


@pytest.mark.parametrize("estimate, chosen", [(100_000, 1), (600_000, 1), (2_000_000, 0), (1e9, 0)])
def test_rendition_fits_the_measured_throughput(estimate: float, chosen: int) -> None:
    assert choose_rendition(parse_multivariant(MASTER), estimate) == chosen


def test_zipf_popularity_ranks_objects() -> None:
    picker = ZipfPicker([f"/o{i}" for i in range(10)], 1.0, random.Random(3))
    counts = Counter(picker.pick() for _ in range(20_000))
    # P(rank 1) / P(rank 2) = 2 under s = 1; the least popular is asked for too
    assert counts["/o0"] / counts["/o1"] == pytest.approx(2, rel=0.15)
    assert counts["/o0"] > counts["/o4"] > counts["/o9"] > 0


@pytest.mark.parametrize(
    "header, outcome",
    [
        ("edge-a; hit; ttl=25", "hit"),
        ("edge-a; fwd=miss; fwd-status=200; stored", "miss"),
        ("edge-a; fwd=stale; fwd-status=304", "stale"),
        ("", "-"),
    ],
)
def test_cache_outcome(header: str, outcome: str) -> None:
    assert cache_outcome(header) == outcome


@pytest.mark.parametrize(
    "limits, failed",
    [
        ({"max_stall_ratio": 0.01}, ["stall ratio 0.02 > 0.01"]),
        ({"max_stall_ratio": 0.05, "max_p95_startup": 2.0}, []),
        ({"max_p95_startup": 1.0, "max_p95_latency": 1.0}, ["p95 startup (s) 1.5 > 1"]),  # no latency figure
        ({"max_error_ratio": None}, []),
    ],
)
def test_thresholds(limits: dict[str, float | None], failed: list[str]) -> None:
    figures = {"stall_ratio": 0.02, "startup": {"p95": 1.5}, "error_ratio": 0.0}
    assert exceeded(figures, limits) == failed


@pytest.mark.parametrize(
    "wanted, directive",
    [
        ((9, 2), (9, 2)),  # the next part of the segment in progress
        ((8, 4), (8, 4)),  # a whole segment: asked as it is (the playlist answers at once)
        ((10, 0), (10, 0)),
    ],
)
def test_blocking_directive(wanted: tuple[int, int], directive: tuple[int, int]) -> None:
    assert blocking_directive(parse_media(LL_MEDIA), *wanted) == directive


def test_blocking_directive_moves_to_the_next_segment_once_this_one_is_full() -> None:
    full = LL_MEDIA.replace(
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="e1/part9.2.m4s"',
        '#EXT-X-PART:DURATION=0.5,URI="e1/part9.2.m4s"\n#EXT-X-PART:DURATION=0.5,URI="e1/part9.3.m4s"',
    )
    assert blocking_directive(parse_media(full), 9, 4) == (10, 0)
    assert blocking_directive(parse_media(LL_MEDIA), 9, 2) == (9, 2)


def test_the_end_of_an_on_demand_stream_is_no_stall() -> None:
    buffer = PlaybackBuffer()
    buffer.append(4.0, 0)
    buffer.finish(4.0)
    assert not buffer.stalled(100) and buffer.total_stall(100) == 0 and buffer.watched(100) == 4.0


def test_a_config_names_the_edges_and_their_metrics(tmp_path: Path) -> None:
    config = tmp_path / "cdn.toml"
    config.write_text(
        '[origins.media]\nkind = "media"\nurl = "http://127.0.0.1:8080"\n'
        '[edges.a]\nlisten = "127.0.0.1:8091"\nadmin_listen = "127.0.0.1:9091"\nadmin_token = "admin-token-for-tests-0123"\n'
        '[edges.b]\nlisten = "127.0.0.1:8092"\n'
        '[distributions.live]\nkind = "streaming"\ndomains = ["localhost"]\norigin = "media"\n'
    )
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert targets_of(parser.parse_args(["--config", str(config)])) == (
        ("http://127.0.0.1:8091", "http://127.0.0.1:8092"),
        ("http://127.0.0.1:9091/metrics.json?token=admin-token-for-tests-0123",),
    )
    routed = parser.parse_args(["--config", str(config), "--router", "http://127.0.0.1:8000"])
    assert targets_of(routed)[0] == ("http://127.0.0.1:8000",)


def test_loadtest_with_a_config_targets_its_streaming_distribution_and_first_stream(tmp_path) -> None:
    import argparse

    from streaming.loadtest_cli import add_arguments, stream_of

    config = tmp_path / "cdn.toml"
    config.write_text("""
[origins.site]
url = "http://127.0.0.1:9"
[origins.live]
kind = "media"
url = "http://127.0.0.1:9"
[origins.live.options.streams.test]
source = "test"
[edges.e]
listen = "127.0.0.1:8091"
[distributions.site]
domains = ["localhost"]
origin = "site"
[distributions.live]
kind = "streaming"
domains = ["live.localhost"]
origin = "live"
""")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert stream_of(parser.parse_args(["--config", str(config)])) == ("/live/test/master.m3u8", "live.localhost")
    assert stream_of(parser.parse_args(["--config", str(config), "--path", "/x", "--host", "h"])) == ("/x", "h")
    assert stream_of(parser.parse_args([])) == ("/live/demo/master.m3u8", None)


def test_failed_requests_are_kept_with_their_edge_and_url_up_to_a_bound() -> None:
    from streaming.tally import KEEP_ERROR_SOURCES, Tally
    from streaming.viewer import FetchResult

    tally = Tally()
    miss = FetchResult(
        404,
        b"",
        "http://edge-lon.live.localhost:8091/live/x/master.m3u8",
        0.1,
        cache_status="edge-lon; fwd=miss; fwd-status=404",
    )
    refused = FetchResult(0, b"", "http://127.0.0.1:8092/live/x/master.m3u8", 0.1, error="connection refused")
    assert (miss.edge, refused.edge) == ("edge-lon", "127.0.0.1:8092")
    for result in (miss, miss, refused):
        tally.error(result.error or f"http {result.status}", result.url, result.edge)
    for i in range(KEEP_ERROR_SOURCES + 5):  # a storm of distinct segment URLs stays bounded
        tally.error("timeout", f"http://127.0.0.1:8092/live/x/{i}.m4s", "127.0.0.1:8092")
    report = tally.error_report()
    assert {"kind": "http 404", "edge": "edge-lon", "url": miss.url, "count": 2} in report
    assert {"kind": "connection refused", "edge": "127.0.0.1:8092", "url": refused.url, "count": 1} in report
    assert len(report) == KEEP_ERROR_SOURCES + 1
    assert {"kind": "timeout", "edge": "127.0.0.1:8092", "url": "other URLs", "count": 7} in report
    assert tally.errors == Counter({"timeout": KEEP_ERROR_SOURCES + 5, "http 404": 2, "connection refused": 1})


def test_loadtest_help_says_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from web_dist.cli import main

    with pytest.raises(SystemExit):
        main(["loadtest", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in (
        "--viewers VIEWERS virtual viewers (or web clients) (default: 100)",
        "(default: 60.0)",
        "--ramp RAMP viewers started per second (default: 50.0)",
        "(default: loadtest.html)",
        "--mode {hls,web} play a stream, or fetch --object paths (default: hls)",
    ):
        assert option in text, option
    assert "(default: None)" not in text and "(default: [])" not in text
