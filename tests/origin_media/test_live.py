"""The built-in test stream: valid LL-HLS, blocking reload, preload-hint streaming, TS feed."""

from __future__ import annotations

import io
import time

import av
import pytest
from av.video.frame import PictureType

from . import hls
from .conftest import SMALL, Origin, decode, finish, start_publisher


@pytest.fixture
async def origin(make_origin) -> Origin:  # type: ignore[no-untyped-def]
    origin = await make_origin({"demo": {"source": "test", "width": 320, "height": 180}})
    await origin.wait_for(lambda: _segments(origin, 2), limit=10)
    return origin


async def _segments(origin: Origin, count: int) -> bool:
    response = await origin.http.get("/live/demo/source/index.m3u8")
    return response.status_code == 200 and len(hls.parse(response.text).full_segments) >= count


async def test_test_stream_playlists_are_valid(origin: Origin) -> None:
    master = await origin.http.get("/live/demo/master.m3u8")
    assert master.status_code == 200
    assert master.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert 'CODECS="avc1.' in master.text and "RESOLUTION=320x180" in master.text
    media = await origin.http.get("/live/demo/source/index.m3u8")
    assert media.headers["cache-control"] == "public, max-age=1"
    playlist = hls.parse(media.text)
    assert playlist.preload_hint and not playlist.ended
    assert float(playlist.tags["EXT-X-PART-INF"].split("=")[1]) == 0.25
    segment = playlist.full_segments[-1]
    init_response = await origin.http.get(f"/live/demo/source/{segment.map_uri}")
    assert init_response.headers["cache-control"] == "public, max-age=31536000, immutable"
    body = await origin.http.get(f"/live/demo/source/{segment.uri}")
    assert body.headers["cache-control"] == "public, max-age=31536000, immutable"
    frames, packets, audio = decode(init_response.content, body.content)
    assert packets[0].is_keyframe and len(frames) == 25 and audio
    assert segment.duration == pytest.approx(1.0)


async def test_blocking_reload_returns_when_the_part_exists_and_not_before(origin: Origin) -> None:
    msn, part = (await origin.playlist("demo")).last_part()
    want = (msn, part + 1) if part < 3 else (msn + 1, 0)
    started = time.monotonic()
    response = await origin.http.get(f"/live/demo/source/index.m3u8?_HLS_msn={want[0]}&_HLS_part={want[1]}")
    held = time.monotonic() - started
    playlist = hls.parse(response.text)
    # not before: the asked-for part is in the answer; as soon as: nothing after it yet
    assert playlist.last_part() == want or playlist.last_part() == (want[0] + 1, 0)
    assert 0.0 < held < 0.25 + 0.3, f"held {held:.3f}s for one part"
    assert response.headers["cache-control"] == "public, max-age=1"


async def test_blocking_reload_for_a_whole_segment(origin: Origin) -> None:
    last = (await origin.playlist("demo")).full_segments[-1].msn
    response = await origin.http.get(f"/live/demo/source/index.m3u8?_HLS_msn={last + 1}")
    assert hls.parse(response.text).full_segments[-1].msn == last + 1


async def test_requests_far_ahead_are_refused(origin: Origin) -> None:
    msn, part = (await origin.playlist("demo")).last_part()
    far = await origin.http.get(f"/live/demo/source/index.m3u8?_HLS_msn={msn + 3}")
    assert far.status_code == 400
    # the Advance Part Limit is 3 s of parts (12 at 0.25 s): a player may ask that far ahead
    limit = round(3 / SMALL["part_seconds"])
    far_part = await origin.http.get(f"/live/demo/source/index.m3u8?_HLS_msn={msn}&_HLS_part={part + limit + 2}")
    assert far_part.status_code == 400
    bad = await origin.http.get("/live/demo/source/index.m3u8?_HLS_part=1")
    assert bad.status_code == 400


async def test_preload_hint_part_streams_as_it_is_produced(origin: Origin) -> None:
    hint = (await origin.playlist("demo")).preload_hint
    assert hint
    # ask for the next segment's first part before it exists: it is held, then streams as it
    # is made (a whole part, where the hint itself may be a segment's 1-frame last part)
    prefix, _, name = hint.rpartition("/part")
    hint = f"{prefix}/part{int(name.split('.')[0]) + 1}.0.m4s"
    arrivals: list[float] = []
    body = b""
    started = time.monotonic()
    async with origin.http.stream("GET", f"/live/demo/source/{hint}") as response:
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            arrivals.append(time.monotonic() - started)
            body += chunk
    # bytes came out over the part's duration, not in one go at its end
    assert len(arrivals) >= 3 and arrivals[-1] - arrivals[0] > 0.1
    finished = await origin.http.get(f"/live/demo/source/{hint}")
    assert finished.content == body and "content-length" in finished.headers


async def test_part_after_the_hint_is_held_until_it_starts(origin: Origin) -> None:
    hint = (await origin.playlist("demo")).preload_hint or ""
    msn, index = (int(n) for n in hint.rsplit("/part", 1)[1].removesuffix(".m4s").split("."))
    # the test source cuts 1 s segments into parts of 6, 6, 6, 6 and 1 frames
    after = (msn, index + 1) if index < 4 else (msn + 1, 0)
    uri = hint.replace(f"part{msn}.{index}.", f"part{after[0]}.{after[1]}.")
    started = time.monotonic()
    response = await origin.http.get(f"/live/demo/source/{uri}")
    assert response.status_code == 200 and time.monotonic() - started > 0.03
    await origin.wait_for(lambda: _listed(origin, after))
    assert (await origin.http.get(f"/live/demo/source/{uri}")).content == response.content


async def _listed(origin: Origin, part: tuple[int, int]) -> bool:
    return (await origin.playlist("demo")).last_part() >= part


async def test_ts_feed_is_h264_without_b_frames_and_opus(origin: Origin) -> None:
    data = await _read_ts(origin, "demo", 60_000)
    _check_ts(data)


async def _read_ts(origin: Origin, stream: str, size: int) -> bytes:
    data = b""
    async with origin.http.stream("GET", f"/live/{stream}/stream.ts") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp2t"
        async for chunk in response.aiter_raw():
            data += chunk
            if len(data) >= size:
                break
    return data


def _check_ts(data: bytes) -> None:
    assert data[0] == 0x47, "starts on a TS packet"
    with av.open(io.BytesIO(data), format="mpegts") as container:
        codecs = {s.type: s.codec_context.name for s in container.streams}
        assert codecs == {"video": "h264", "audio": "opus"}
        video = [p for p in container.demux(video=0) if p.size]
    assert video[0].is_keyframe, "a reader joins at a keyframe"
    assert all(p.pts == p.dts for p in video), "no B-frames: decode order is display order"
    decoder = av.CodecContext.create("h264", "r")
    kinds = {int(f.pict_type) for p in video[:-1] for f in decoder.decode(p)}  # last: cut short
    assert int(PictureType.I) in kinds and int(PictureType.B) not in kinds


async def test_streams_list(origin: Origin) -> None:
    info = await origin.stream_info("demo")
    assert info["state"] == "live" and info["protocol"] == "test"
    assert info["bitrate"] > 0 and info["age_seconds"] >= 0


async def test_unknown_objects_are_404(origin: Origin) -> None:
    for path in (
        "/live/nope/master.m3u8",
        "/live/demo/source/0/seg1.m4s",
        "/live/demo/hd/index.m3u8",
        "/live/demo/source/index.m3u8x",
    ):
        assert (await origin.http.get(path)).status_code == 404, path


async def test_ts_reencodes_rtmp_b_frames(make_origin) -> None:  # type: ignore[no-untyped-def]
    origin = await make_origin({"cam": {"source": "rtmp", "key": "k"}})
    publisher = await start_publisher(origin.rtmp_url("k"), 30, bframes=2)
    try:
        await origin.wait_for(lambda: _live(origin), limit=15)
        _check_ts(await _read_ts(origin, "cam", 40_000))
    finally:
        publisher.kill()
        await finish(publisher)


async def _live(origin: Origin) -> bool:
    return (await origin.stream_info("cam"))["state"] == "live"
