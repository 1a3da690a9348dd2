"""ABR ladders: a test stream encoded at two sizes, and a passthrough file source plus a
transcoded rung. Both renditions list in the multivariant playlist, play on their own, decode at
their own size, and cut segments at the same instants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import m3u8

from . import hls
from .conftest import Origin, decode, finish, start_publisher
from .test_file import make_mp4

TWO_RUNGS = ["180p", {"name": "90p", "width": 160, "height": 90, "bitrate": 100_000}]


async def _full_segments(origin: Origin, stream: str, rendition: str, count: int) -> bool:
    response = await origin.http.get(f"/live/{stream}/{rendition}/index.m3u8")
    return response.status_code == 200 and len(hls.parse(response.text).full_segments) >= count


async def _ready(origin: Origin, stream: str, renditions: list[str], count: int = 3) -> None:
    for rendition in renditions:
        await origin.wait_for(lambda r=rendition: _full_segments(origin, stream, r, count), limit=20)


async def _rendition(origin: Origin, stream: str, name: str) -> tuple[hls.Playlist, dict[int, Any]]:
    """The rendition's playlist and, per listed full segment, the decode of init + segment."""
    response = await origin.http.get(f"/live/{stream}/{name}/index.m3u8")
    assert response.status_code == 200
    playlist = hls.parse(response.text)
    decoded = {}
    for segment in playlist.full_segments[-2:]:
        init = (await origin.http.get(f"/live/{stream}/{name}/{segment.map_uri}")).content
        body = await origin.http.get(f"/live/{stream}/{name}/{segment.uri}")
        assert body.status_code == 200
        decoded[segment.msn] = decode(init, body.content)
    return playlist, decoded


def _boundaries(playlist: hls.Playlist) -> dict[int, tuple[float | None, str | None]]:
    return {s.msn: (s.duration, s.program_date_time) for s in playlist.full_segments}


async def test_two_rendition_test_stream(make_origin) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin(
        {"abr": {"source": "test", "width": 320, "height": 180, "fps": 10, "renditions": TWO_RUNGS}}
    )
    await _ready(origin, "abr", ["180p", "90p"])

    master = await origin.http.get("/live/abr/master.m3u8")
    assert master.status_code == 200
    variants = m3u8.loads(master.text).playlists
    assert [v.uri for v in variants] == ["180p/index.m3u8", "90p/index.m3u8"]
    assert [v.stream_info.resolution for v in variants] == [(320, 180), (160, 90)]
    for variant in variants:
        assert variant.stream_info.bandwidth > 0
        assert variant.stream_info.codecs.startswith("avc1.") and "mp4a.40.2" in variant.stream_info.codecs
    assert (await origin.http.get("/live/abr/source/index.m3u8")).status_code == 404

    big, big_frames = await _rendition(origin, "abr", "180p")
    small, small_frames = await _rendition(origin, "abr", "90p")
    assert big.preload_hint and small.preload_hint
    common = sorted(set(big_frames) & set(small_frames))
    assert common, "the two renditions list the same segment numbers"
    for msn in common:
        (big_video, big_packets, big_audio), (small_video, small_packets, _) = big_frames[msn], small_frames[msn]
        assert (big_video[0].width, big_video[0].height) == (320, 180)
        assert (small_video[0].width, small_video[0].height) == (160, 90)
        assert big_packets[0].is_keyframe and small_packets[0].is_keyframe and big_audio
        # aligned: the same frames, starting at the same timestamp, in every rendition
        assert [f.pts for f in big_video] == [f.pts for f in small_video]
    shared = set(_boundaries(big)) & set(_boundaries(small))
    assert all(_boundaries(big)[m] == _boundaries(small)[m] for m in shared)


async def test_passthrough_source_plus_transcoded_rung(make_origin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "clip.mp4"
    make_mp4(path, seconds=2.0)
    origin: Origin = await make_origin(
        {
            "clip": {
                "source": "file",
                "path": str(path),
                "renditions": [{"name": "small", "width": 80, "height": 48, "bitrate": 50_000}],
            }
        }
    )
    await _ready(origin, "clip", ["source", "small"])
    master = m3u8.loads((await origin.http.get("/live/clip/master.m3u8")).text)
    assert [(v.uri, v.stream_info.resolution) for v in master.playlists] == [
        ("source/index.m3u8", (160, 96)),
        ("small/index.m3u8", (80, 48)),
    ]
    source, source_frames = await _rendition(origin, "clip", "source")
    small, small_frames = await _rendition(origin, "clip", "small")
    common = sorted(set(source_frames) & set(small_frames))
    assert common
    for msn in common:
        (src_video, _, _), (small_video, small_packets, _) = source_frames[msn], small_frames[msn]
        assert (small_video[0].width, small_video[0].height) == (80, 48)
        assert small_packets[0].is_keyframe
        assert [f.pts for f in src_video] == [f.pts for f in small_video]


async def test_rtmp_with_b_frames_plus_rung_then_publisher_leaves(make_origin) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin(
        {
            "cam": {
                "source": "rtmp",
                "key": "k1",
                "renditions": [{"name": "small", "width": 160, "height": 90, "bitrate": 100_000}],
            }
        }
    )
    publisher = await start_publisher(origin.rtmp_url("k1"), 3.5, bframes=2)
    await _ready(origin, "cam", ["source", "small"], count=2)
    source, source_frames = await _rendition(origin, "cam", "source")
    small, small_frames = await _rendition(origin, "cam", "small")
    common = set(source_frames) & set(small_frames)
    assert common
    for msn in common:
        # the same pictures at the same presentation times, B-frames in the source or not
        assert sorted(f.pts for f in source_frames[msn][0]) == sorted(f.pts for f in small_frames[msn][0])
        assert (small_frames[msn][0][0].width, small_frames[msn][0][0].height) == (160, 90)
    assert await finish(publisher) == 0

    async def both_ended() -> bool:
        for name in ("source", "small"):
            response = await origin.http.get(f"/live/cam/{name}/index.m3u8")
            if not hls.parse(response.text).ended:
                return False
        return True

    await origin.wait_for(both_ended, limit=15)
