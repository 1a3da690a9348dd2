"""The live half of the geography: playlists read right, a live viewer's startup and latency
measured against a real media origin and edge, and in the namespace geography a warm edge's
second viewer starting sooner than a viewer straight to the far origin."""

from __future__ import annotations

import os
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from web_dist.geo import format_table, write_html
from web_dist.geo import live as geo_live
from web_dist.geo.live import first_variant, parse_media_playlist
from web_dist.geo.netns import NS_PREFIX, _namespaces, netns_available
from web_dist.geo.topology import load_topology

REPO = Path(__file__).resolve().parents[2]
NO_NETNS = netns_available()
needs_netns = pytest.mark.skipif(
    NO_NETNS is not None, reason=f"NAMESPACE GEOGRAPHY NOT TESTED: {NO_NETNS} (CI runs as root)"
)

PLAYLIST = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:6
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.75
#EXT-X-PART-INF:PART-TARGET=0.25
#EXT-X-MAP:URI="ep/init1.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T04:03:02.000Z
#EXTINF:1,
ep/seg6.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T04:03:03.000Z
#EXT-X-PART:DURATION=0.5,URI="ep/part7.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.5,URI="ep/part7.1.m4s"
#EXTINF:1,
ep/seg7.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T04:03:04.000Z
#EXT-X-PART:DURATION=0.5,URI="ep/part8.0.m4s",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="ep/part8.1.m4s"
"""


def at(clock: str) -> float:
    return datetime.fromisoformat(f"2026-12-02T04:03:{clock}").replace(tzinfo=UTC).timestamp()


def test_a_live_playlist_gives_each_part_its_program_time_and_the_next_reload() -> None:
    playlist = parse_media_playlist(PLAYLIST)
    assert [(p.msn, p.index, p.start, p.uri) for p in playlist.parts] == [
        (7, 0, at("03.0"), "ep/part7.0.m4s"),
        (7, 1, at("03.5"), "ep/part7.1.m4s"),
        (8, 0, at("04.0"), "ep/part8.0.m4s"),
    ]
    assert playlist.next_part == (8, 1) and playlist.hint == "ep/part8.1.m4s"
    assert playlist.start_part().uri == "ep/part8.0.m4s" and playlist.start_part().map_uri == "ep/init1.mp4"
    # the segment just finished: the next reload asks for the first part of the next one
    assert parse_media_playlist(PLAYLIST.split("#EXT-X-PROGRAM-DATE-TIME:2026-12-02T04:03:04")[0]).next_part == (8, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<html>", "not a playlist"),
        ("#EXTM3U\n#EXTINF:1,\nseg1.m4s\n", "without EXT-X-TARGETDURATION"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nseg1.m4s\n", "no independent part"),
    ],
)
def test_playlists_a_viewer_cannot_start_on_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_media_playlist(text).start_part()


def test_first_variant() -> None:
    assert (
        first_variant('#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS="a,b"\nsource/index.m3u8\n') == "source/index.m3u8"
    )
    with pytest.raises(ValueError, match="STREAM-INF"):
        first_variant("#EXTM3U\n")


# -- a real media origin and edge on loopback ----------------------------------------------------
@dataclass
class Loopback:
    origin: str  # host:port
    edge: str


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    """The media origin and streaming distribution of the geography's config, on loopback."""
    from edge.app import build_edge_app
    from web_dist.cli import build_origin
    from web_dist.config import parse_config
    from web_dist.server import start_server

    def config(origin_url: str) -> Any:
        text = '[edges.edge-t]\nlisten = "127.0.0.1:0"\n' + geo_live.live_config(origin_url)
        return parse_config(tomllib.loads(text))

    placeholder = config("http://127.0.0.1:1")
    origin = await start_server(build_origin(placeholder.origins["live"], placeholder), "127.0.0.1:0", name="media")
    edge = await start_server(build_edge_app(config(origin.url), "edge-t"), "127.0.0.1:0", name="edge-t")
    try:
        yield Loopback(origin.url.removeprefix("http://"), edge.url.removeprefix("http://"))
    finally:
        await edge.stop()
        await origin.stop()


async def test_live_viewers_through_an_edge_start_warm_and_follow_the_live_edge(loopback: Loopback) -> None:
    samples = await geo_live.measure(loopback.origin, loopback.edge, repeat=1, follow=1.0)
    assert [len(samples[k]) for k in ("origin", "cold", "warm")] == [1, 1, 1]
    assert samples["origin"][0]["cache"] == []  # the origin says nothing of caches
    assert samples["cold"][0]["cache"][2:] == ["miss", "miss"]  # init and first part
    # the second viewer through the edge gets the init segment the first one fetched from the cache
    assert samples["warm"][0]["cache"][2] == "hit"
    for sample in (s for kind in samples.values() for s in kind):
        assert 0 < sample["startup"] < 10
        # every part arrives after it was made (its program time plus its duration), and soon after
        assert sample["latencies"] and all(0.2 < x < 5 for x in sample["latencies"])


# -- the namespace geography ----------------------------------------------------------------------
@needs_netns
async def test_a_warm_edges_second_viewer_starts_sooner_than_one_straight_at_the_origin(tmp_path: Path) -> None:
    from web_dist.geo import run_geography

    topology = load_topology(REPO / "geo" / "topology.toml").scaled(0.5)
    result = await run_geography(topology, tmp_path, repeat=3, web=False, live=True, follow=1.0)
    print(format_table(result))
    live = result.live
    assert [len(live[k].samples) for k in ("origin", "cold", "warm")] == [3, 1, 3]
    # the delays are real: the origin's viewer waits at least what they add up to
    assert live["origin"].startup >= 0.97 * live["origin"].model_startup
    # the edge kept what the first viewer fetched: every later viewer's init came from its cache
    assert all(s["cache"][2] == "hit" for s in live["warm"].samples), format_table(result)
    assert live["warm"].startup < live["origin"].startup, format_table(result)
    assert all(s["latencies"] for kind in live.values() for s in kind.samples)
    write_html(result, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "later viewers (warm)" in page and "latency behind live" in page
    assert [ns for ns in _namespaces() if ns.startswith(f"{NS_PREFIX}{os.getpid()}-")] == []
