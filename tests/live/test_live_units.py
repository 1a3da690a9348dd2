"""Pure pieces of the live relay: a streaming distribution's defaults and the live counters."""

from __future__ import annotations

from typing import Any

import pytest

from edge.live import LiveStats, object_kind, session_of, stream_of
from web_dist.config import ConfigError, parse_config
from web_dist.config.behaviors import behavior_for


def _config(origin: dict[str, Any], dist: dict[str, Any] | None = None) -> Any:
    return parse_config(
        {
            "origins": {"media": {"kind": "media", "url": "http://127.0.0.1:9", **origin}},
            "edges": {"e": {"listen": "127.0.0.1:9001"}},
            "distributions": {
                "live": {"kind": "streaming", "domains": ["live.test"], "origin": "media", **(dist or {})}
            },
        }
    )


def test_a_streaming_distribution_without_behaviors_gets_live_defaults() -> None:
    dist = _config({"options": {"part_seconds": 0.333}}).distributions[0]
    playlist = behavior_for(dist, "/live/cam/source/index.m3u8")
    assert (playlist.default_ttl, playlist.max_ttl) == (0.333, 0.333)
    assert playlist.query_keys == ("_HLS_msn", "_HLS_part", "_HLS_skip")
    segment = behavior_for(dist, "/live/cam/source/ab12/seg7.m4s")
    assert segment.max_ttl >= 31536000 and segment.query_keys == "none"
    assert dist.error_ttl == 1.0
    manifest = behavior_for(dist, "/live/cam/manifest.mpd")  # DASH: as short-lived as a playlist
    assert (manifest.default_ttl, manifest.max_ttl) == (0.333, 0.333)
    recording = behavior_for(dist, "/recordings/cam/20261202T120000000Z/index.m3u8")
    assert recording.max_ttl >= 86400 and recording.default_ttl == 1.0  # the origin's max-age rules


def test_behaviors_given_in_the_config_replace_the_defaults() -> None:
    dist = _config({}, {"behaviors": [{"path": "/*.m3u8", "default_ttl": 2}]}).distributions[0]
    assert [b.path_pattern for b in dist.behaviors] == ["/*.m3u8", "*"]
    assert dist.behaviors[0].default_ttl == 2 and dist.behaviors[0].query_keys == "none"


def test_a_media_origin_read_timeout_must_outlast_a_held_reload() -> None:
    with pytest.raises(ConfigError, match=r"origins.media.read_timeout: 5 s is too short.*6 s"):
        _config({"read_timeout": 5, "options": {"segment_seconds": 2}})
    assert _config({"options": {"segment_seconds": 20}}).origins["media"].read_timeout == 90


@pytest.mark.parametrize(
    ("path", "stream", "kind"),
    [
        ("/live/cam/master.m3u8", "/live/cam", "playlist"),
        ("/live/cam/manifest.mpd", "/live/cam", "playlist"),
        ("/live/cam/source/index.m3u8?_HLS_msn=3", "/live/cam", "playlist"),
        ("/live/cam/source/ab/init1.mp4", "/live/cam", "init"),
        ("/live/cam/source/ab/seg7.m4s", "/live/cam", "segment"),
        ("/live/cam/source/ab/part7.2.m4s", "/live/cam", "part"),
        ("/live/cam%20b/x.ts", "/live/cam b", "segment"),
        ("/streams", None, None),
    ],
)
def test_stream_and_kind_of_a_path(path: str, stream: str | None, kind: str | None) -> None:
    assert stream_of(path) == stream
    assert object_kind(path) == kind


def test_viewers_are_distinct_clients_seen_in_the_window() -> None:
    now = [1000.0]
    stats = LiveStats(clock=lambda: now[0], window=10)
    for client in ("10.0.0.1", "10.0.0.2", "10.0.0.1"):
        stats.served("/live/cam/source/index.m3u8", client, 100)
    now[0] += 8
    stats.served("/live/cam/source/ab/seg1.m4s", "10.0.0.3", 5000)
    assert stats.snapshot()["/live/cam"]["viewers"] == 3
    now[0] += 5  # the first two were last seen 13 s ago
    live = stats.snapshot()["/live/cam"]
    assert live["viewers"] == 1 and live["egress_bytes"] == 5300 and live["responses"] == 4


def test_origin_requests_per_object() -> None:
    stats = LiveStats()
    for path in (
        "/live/cam/source/ab/seg1.m4s",
        "/live/cam/source/ab/seg2.m4s",
        "/live/cam/source/ab/seg2.m4s",
        "/live/cam/source/ab/part2.0.m4s",
        "/streams",
    ):
        stats.fetched(path)
    live = stats.snapshot()["/live/cam"]
    assert live["origin_requests"]["segment"] == 3 and live["objects_fetched"]["segment"] == 2
    assert live["origin_requests_per_object"] == {"playlist": 0.0, "init": 0.0, "segment": 1.5, "part": 1.0}


@pytest.mark.parametrize(
    ("client", "query", "headers", "session"),
    [
        # hls.js with cmcd.useHeaders, and `cdn loadtest`: the CMCD session id names the viewer
        (
            "10.0.0.1",
            "",
            {"cmcd-session": 'cid="demo",sid="6e2fb550-c457-11e9-bb97-0800200c9a66"'},
            "sid 6e2fb550-c457-11e9-bb97-0800200c9a66",
        ),
        ("10.0.0.1", "_HLS_msn=4&CMCD=bl%3D21300%2Csid%3D%22abc%22", {}, "sid abc"),  # CMCD as a query parameter
        ("10.0.0.1", "", {"cmcd-session": 'sid="' + "x" * 65 + '"', "user-agent": "UA"}, "10.0.0.1 UA"),  # too long
        ("10.0.0.1", "", {"user-agent": "Firefox"}, "10.0.0.1 Firefox"),  # no session id: address and browser
        ("10.0.0.1", "", {}, "10.0.0.1 "),
    ],
)
def test_a_viewer_is_a_playback_session(client: str, query: str, headers: dict[str, str], session: str) -> None:
    assert session_of(client, query, headers) == session


def test_two_hundred_sessions_from_one_address_are_two_hundred_viewers() -> None:
    now = [1000.0]
    stats = LiveStats(clock=lambda: now[0], window=10)
    for n in range(200):
        headers = {"cmcd-session": f'sid="viewer-{n}"', "user-agent": "cdn-loadtest"}
        for path in ("/live/cam/source/index.m3u8", "/live/cam/source/seg1.m4s"):
            stats.served(path, session_of("127.0.0.1", "", headers), 100)
    now[0] += 4
    stats.served("/live/cam/source/seg2.m4s", session_of("127.0.0.1", "", {"cmcd-session": 'sid="viewer-7"'}), 100)
    assert stats.snapshot()["/live/cam"]["viewers"] == 200
    now[0] += 9  # all but viewer-7 last asked 13 s ago
    assert stats.snapshot()["/live/cam"]["viewers"] == 1
