"""The file source: a short MP4 made with PyAV, looped as a live stream."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from . import hls
from .conftest import Origin, decode


def make_mp4(path: Path, seconds: float = 1.0, fps: int = 25) -> None:
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"g": str(fps), "bf": "0", "preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 160, 96, "yuv420p"
        audio = out.add_stream("aac", rate=48_000)
        audio.layout = "mono"
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame(160, 96, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(index * 9) % 256]) * plane.buffer_size)
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(video.encode(frame))
        for start in range(0, round(seconds * 48_000), 1024):
            sound = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            sound.planes[0].update(bytes(4096))
            sound.sample_rate, sound.pts = 48_000, start
            out.mux(audio.encode(sound))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


async def test_file_loops_as_one_continuous_live_stream(make_origin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "clip.mp4"
    make_mp4(path)
    origin: Origin = await make_origin({"clip": {"source": "file", "path": str(path)}})

    async def three_segments() -> bool:
        response = await origin.http.get("/live/clip/source/index.m3u8")
        return response.status_code == 200 and len(hls.parse(response.text).full_segments) >= 3

    await origin.wait_for(three_segments, limit=10)
    playlist = await origin.playlist("clip")
    assert not any(s.discontinuity for s in playlist.segments), "a loop is not a discontinuity"
    assert (await origin.stream_info("clip"))["protocol"] == "file"
    init = await origin.fetch("clip", playlist.segments[0].map_uri or "")
    starts = []
    for segment in playlist.full_segments[:3]:
        frames, packets, _ = decode(init, await origin.fetch("clip", segment.uri or ""))
        assert packets[0].is_keyframe
        starts.append(packets[0].dts)
    assert starts == [starts[0] + i * 90_000 for i in range(3)], "the clock runs on over loops"
