"""Recordings: segments written to disk as made, bounded, listed, replayable; a reconnect is a
discontinuity in the same recording, and a recording whose publisher left becomes VOD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import hls
from .conftest import Origin, decode, finish, start_publisher

KEY = "rec-key"


async def _recordings(origin: Origin, stream: str) -> list[dict[str, Any]]:
    response = await origin.http.get(f"/recordings/{stream}")
    assert response.status_code == 200
    return list(response.json()["recordings"])


async def _playlist(origin: Origin, url: str) -> hls.Playlist:
    response = await origin.http.get(url)
    assert response.status_code == 200, response.text
    return hls.parse(response.text)


async def test_a_recording_grows_as_made_and_keeps_only_its_newest_seconds(make_origin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ladder = ["180p", {"name": "90p", "width": 160, "height": 90, "bitrate": 120_000}]
    origin: Origin = await make_origin(
        {
            "demo": {
                "source": "test",
                "width": 320,
                "height": 180,
                "renditions": ladder,
                "record": True,
                "record_max_seconds": 3,
            }
        },
        recordings_dir=str(tmp_path),
    )

    async def segments(count: int) -> bool:
        found = await _recordings(origin, "demo")
        return bool(found) and found[0]["segments"] >= count

    await origin.wait_for(lambda: segments(2))
    [recording] = await _recordings(origin, "demo")
    folder = f"/recordings/demo/{recording['id']}"
    assert recording["playlist"] == f"{folder}/master.m3u8"
    assert recording["renditions"] == {r: f"{folder}/{r}/index.m3u8" for r in ("180p", "90p")}
    # the multivariant playlist names every rendition recorded, as the live one does
    master = await origin.http.get(recording["playlist"])
    assert master.headers["cache-control"] == "public, max-age=1"
    variants = [line for line in master.text.splitlines() if line and not line.startswith("#")]
    assert variants == ["180p/index.m3u8", "90p/index.m3u8"]
    assert "RESOLUTION=320x180" in master.text and "RESOLUTION=160x90" in master.text
    assert 'CODECS="avc1.' in master.text and "mp4a.40.2" in master.text
    growing = await origin.http.get(f"{folder}/180p/index.m3u8")
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in growing.text and "#EXT-X-ENDLIST" not in growing.text
    assert growing.headers["cache-control"] == "public, max-age=1"

    async def trimmed() -> bool:  # the first segment deleted to stay within 3 s
        playlist = await _playlist(origin, f"{folder}/90p/index.m3u8")
        return playlist.media_sequence >= 2

    await origin.wait_for(trimmed, limit=12)
    [recording] = await _recordings(origin, "demo")
    assert recording["duration"] <= 3.0 and not recording["closed"]
    for rendition, frame_size in (("180p", (320, 180)), ("90p", (160, 90))):
        playlist = await _playlist(origin, f"{folder}/{rendition}/index.m3u8")
        assert not playlist.ended and "EXT-X-PLAYLIST-TYPE" not in playlist.tags  # EVENT never drops
        base = f"{folder}/{rendition}"
        init = (await origin.http.get(f"{base}/{playlist.segments[0].map_uri}")).content
        for segment in playlist.segments:
            body = await origin.http.get(f"{base}/{segment.uri}")
            assert body.status_code == 200
            frames, _, audio = decode(init, body.content)
            assert len(frames) == 25 and audio and (frames[0].width, frames[0].height) == frame_size
        assert (await origin.http.get(f"{base}/seg0.m4s")).status_code == 404
        on_disk = sorted(p.name for p in (tmp_path / "demo" / recording["id"] / rendition).iterdir())
        assert len([n for n in on_disk if n.startswith("seg")]) <= 4  # 3 s, and one being replaced
        assert "seg0.m4s" not in on_disk and "init1.mp4" in on_disk
    for wrong in ("../90p/index.m3u8", "360p/index.m3u8", "180p/../../x", "180p/seg1.ts"):
        assert (await origin.http.get(f"{folder}/{wrong}")).status_code == 404, wrong


async def test_a_reconnect_continues_the_recording_and_leaving_closes_it(make_origin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin(
        {"cam": {"source": "rtmp", "key": KEY, "record": True, "record_reconnect_seconds": 4}},
        recordings_dir=str(tmp_path),
    )
    for _ in range(2):
        assert await finish(await start_publisher(origin.rtmp_url(KEY), 2.2)) == 0

    async def closed() -> bool:
        found = await _recordings(origin, "cam")
        return bool(found) and found[0]["closed"]

    await origin.wait_for(closed, limit=12)
    [recording] = await _recordings(origin, "cam")  # one recording for both sessions
    assert list(recording["renditions"]) == ["source"]
    response = await origin.http.get(recording["renditions"]["source"])
    assert response.headers["cache-control"] == "public, max-age=86400"
    playlist = hls.parse(response.text)
    assert playlist.ended and playlist.tags["EXT-X-PLAYLIST-TYPE"] == "VOD"
    assert [s.discontinuity for s in playlist.segments].count(True) == 1
    assert {s.map_uri for s in playlist.segments} == {"init1.mp4", "init2.mp4"}
    assert recording["duration"] >= 3.5
