"""DASH from the same CMAF segments: the pure MPD rendering, and a running origin's MPD naming
init segments and segments that exist (and decode)."""

from __future__ import annotations

import io
import struct
import xml.etree.ElementTree as ET
from typing import Any

import av
import pytest

from origin_media import dash, track_view
from origin_media.dash_live import first_decode_time
from origin_media.fmp4 import Sample, TrackRun, fragment

from .conftest import Origin, decode, finish, start_publisher

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
T = dash.TimelineSegment


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ([], []),
        ([T(0, 90000)], ['<S t="0" d="90000"/>']),
        ([T(0, 90000), T(90000, 90000), T(180000, 90000)], ['<S t="0" d="90000" r="2"/>']),
        # a shorter segment breaks the run but not the timeline: no t
        (
            [T(10, 90000), T(90010, 45000), T(135010, 90000)],
            ['<S t="10" d="90000"/>', '<S d="45000"/>', '<S d="90000"/>'],
        ),
        # a jump (a gap on the timeline) names its t again, even with the same duration
        ([T(0, 90000), T(270000, 90000)], ['<S t="0" d="90000"/>', '<S t="270000" d="90000"/>']),
    ],
)
def test_segment_timeline(segments: list[dash.TimelineSegment], expected: list[str]) -> None:
    assert dash.timeline(segments) == expected


@pytest.mark.parametrize(("seconds", "text"), [(1.0, "PT1S"), (0.25, "PT0.25S"), (12.5, "PT12.5S"), (0, "PT0S")])
def test_durations(seconds: float, text: str) -> None:
    assert dash.format_duration(seconds) == text


def _manifest(offset: float) -> dash.Manifest:
    rep = dash.DashRepresentation(
        "source",
        900000,
        "avc1.42c00d,mp4a.40.2",
        "video/mp4",
        90000,
        45,
        7,
        "source/e1/init1.mp4",
        "source/e1/seg$Number$.m4s",
        (T(630000, 90000), T(720000, 90000)),
        width=320,
        height=180,
    )
    audio = dash.DashRepresentation(
        "aud",
        96000,
        "mp4a.40.2",
        "audio/mp4",
        48000,
        0,
        7,
        "aud/e1/init1.mp4",
        "aud/e1/seg$Number$.m4s",
        (T(0, 48000),),
        audio_sampling_rate=48000,
    )
    return dash.Manifest(
        1_700_000_000.0,
        1_700_000_100.5,
        1.0,
        1.0,
        6.0,
        3.0,
        (dash.DashPeriod("p1", 0.25, (rep, audio)),),
        ((dash.UTC_HTTP_ISO, "http://o/time"),),
        offset,
        0.75,
    )


def test_mpd_is_a_dynamic_manifest_a_player_can_expand() -> None:
    root = ET.fromstring(dash.render_mpd(_manifest(0.75)))
    assert root.get("type") == "dynamic"
    assert root.get("availabilityStartTime") == "2023-11-14T22:13:20.000Z"
    assert root.get("publishTime") == "2023-11-14T22:15:00.500Z"
    assert root.get("minimumUpdatePeriod") == "PT1S" and root.get("timeShiftBufferDepth") == "PT6S"
    period = root.find("d:Period", NS)
    assert period is not None and period.get("id") == "p1" and period.get("start") == "PT0.25S"
    sets = period.findall("d:AdaptationSet", NS)
    assert [s.get("mimeType") for s in sets] == ["video/mp4", "audio/mp4"]
    video = sets[0].find("d:Representation", NS)
    assert video is not None
    assert (video.get("id"), video.get("width"), video.get("height")) == ("source", "320", "180")
    template = video.find("d:SegmentTemplate", NS)
    assert template is not None
    assert template.get("media") == "source/e1/seg$Number$.m4s"
    assert (template.get("startNumber"), template.get("presentationTimeOffset")) == ("7", "45")
    assert template.get("availabilityTimeOffset") == "0.75"
    assert template.get("availabilityTimeComplete") == "false"
    s = template.findall("d:SegmentTimeline/d:S", NS)
    assert [(x.get("t"), x.get("d"), x.get("r")) for x in s] == [("630000", "90000", "1")]
    audio = sets[1].find("d:Representation", NS)
    assert audio is not None and audio.get("audioSamplingRate") == "48000"
    timing = root.find("d:UTCTiming", NS)
    assert timing is not None and timing.get("value") == "http://o/time"
    assert root.find("d:ServiceDescription/d:Latency", NS).get("target") == "750"  # type: ignore[union-attr]


def test_without_parts_no_low_latency_attributes() -> None:
    text = dash.render_mpd(_manifest(0.0))
    assert "availabilityTimeOffset" not in text and "low-latency" not in text
    assert "ServiceDescription" not in text


def test_first_decode_time_reads_the_lead_tfdt() -> None:
    runs = [TrackRun(1, (Sample(123456789012, 3000, 0, True, b"v"),)), TrackRun(2, (Sample(5, 1024, 0, True, b"a"),))]
    assert first_decode_time(fragment(1, runs)) == 123456789012
    assert first_decode_time(b"junk") is None


# ---- through a running origin ------------------------------------------------------------


def _expand(root: ET.Element) -> list[tuple[str, str, list[tuple[int, str]]]]:
    """(representation id, init URI, [(start, segment URI)]) as a DASH player computes them."""
    out = []
    for rep in root.iterfind(".//d:Representation", NS):
        template = rep.find("d:SegmentTemplate", NS)
        assert template is not None
        number, time, uris = int(template.get("startNumber", "1")), 0, []
        for s in template.iterfind("d:SegmentTimeline/d:S", NS):
            time = int(s.get("t", time))
            for _ in range(int(s.get("r", "0")) + 1):
                uris.append((time, template.get("media", "").replace("$Number$", str(number))))
                time += int(s.get("d", "0"))
                number += 1
        out.append((rep.get("id", ""), template.get("initialization", ""), uris))
    return out


async def test_mpd_of_a_running_origin_names_segments_that_exist(make_origin) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin(
        {"demo": {"source": "test", "width": 320, "height": 180, "renditions": ["180p", "240p"]}}
    )

    async def three_segments() -> bool:
        response = await origin.http.get("/live/demo/manifest.mpd")
        return response.status_code == 200 and len(_expand(ET.fromstring(response.text))[0][2]) >= 3

    await origin.wait_for(three_segments, limit=12)
    response = await origin.http.get("/live/demo/manifest.mpd")
    assert response.headers["content-type"] == "application/dash+xml"
    assert response.headers["cache-control"] == "public, max-age=1"
    root = ET.fromstring(response.text)
    sets = root.findall("d:Period/d:AdaptationSet", NS)
    # one track per Representation (dash.js plays no muxed ones): the ladder's video, one audio
    assert [
        (s.get("mimeType"), [r.get("codecs", "")[:4] for r in s.findall("d:Representation", NS)]) for s in sets
    ] == [("video/mp4", ["avc1", "avc1"]), ("audio/mp4", ["mp4a"])]
    representations = _expand(root)
    assert [r[0] for r in representations] == ["180p", "240p", "180p-audio"]
    for rep_id, init_uri, segments in representations:
        init = await origin.http.get(f"/live/demo/{init_uri}")
        assert init.status_code == 200
        for start, uri in segments:
            body = await origin.http.get(f"/live/demo/{uri}")
            assert body.status_code == 200, uri
            assert first_decode_time(body.content) == start  # the timeline says where it is
        frames, _, audio = _decode_any(init.content, body.content)
        if rep_id.endswith("audio"):
            # the timeline's durations are the audio's own (in samples: 46 or 47 frames a second)
            last = root.findall(".//d:AdaptationSet[@mimeType='audio/mp4']//d:S", NS)[-1]
            assert not frames and sum(f.samples for f in audio) == int(last.get("d", "0"))
        else:
            assert len(frames) == 25 and not audio
    # the same segments the HLS playlist names, cut to one track
    playlist = (await origin.http.get("/live/demo/180p/index.m3u8")).text
    assert representations[0][2][-1][1].split("/", 1)[1].replace("video/", "") in playlist
    assert root.find("d:UTCTiming", NS).get("value") == "/time"  # type: ignore[union-attr]  # the edge's own host
    clock = await origin.http.get("/time")
    assert clock.status_code == 200 and clock.text.endswith("Z")


def _decode_any(init: bytes, segment: bytes) -> tuple[list[Any], list[Any], list[Any]]:
    """(video frames, [], audio frames) of a one-track init + segment."""
    with av.open(io.BytesIO(init + segment)) as container:
        frames = list(container.decode(video=0)) if container.streams.video else []
    with av.open(io.BytesIO(init + segment)) as container:
        audio = list(container.decode(audio=0)) if container.streams.audio else []
    return frames, [], audio


async def test_one_track_views_of_unknown_things_are_404(make_origin) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin({"demo": {"source": "test", "width": 160, "height": 96}})
    await origin.wait_for(lambda: _ok(origin, "/live/demo/manifest.mpd"))
    _, init_uri, segments = _expand(ET.fromstring((await origin.http.get("/live/demo/manifest.mpd")).text))[0]
    for wrong in (
        init_uri.replace("/video/", "/subtitles/"),
        segments[0][1].replace("seg", "segx"),
        init_uri.replace("init1", "init9"),
    ):
        response = await origin.http.get(f"/live/demo/{wrong}")
        assert response.status_code == 404, wrong
        assert response.headers["cache-control"] == "no-store"


async def _ok(origin: Origin, path: str) -> bool:
    return (await origin.http.get(path)).status_code == 200


async def test_a_segment_asked_for_early_is_streamed_as_it_is_made(make_origin) -> None:  # type: ignore[no-untyped-def]
    """availabilityTimeOffset: a DASH player asks for the segment being made; it gets all of it."""
    origin: Origin = await make_origin({"demo": {"source": "test", "width": 320, "height": 180}})

    async def some() -> bool:
        return (await origin.http.get("/live/demo/manifest.mpd")).status_code == 200

    await origin.wait_for(some)
    _, init_uri, segments = _expand(ET.fromstring((await origin.http.get("/live/demo/manifest.mpd")).text))[0]
    last_number = int(segments[-1][1].rsplit("seg", 1)[1].split(".")[0])
    early_uri = segments[-1][1].replace(f"seg{last_number}.", f"seg{last_number + 2}.")
    # hold until its first part exists (LL-HLS blocking reload): three parts are still to come
    await origin.http.get(f"/live/demo/source/index.m3u8?_HLS_msn={last_number + 2}&_HLS_part=0")
    early = await origin.http.get(f"/live/demo/{early_uri}")
    assert early.status_code == 200
    assert early.headers.get("transfer-encoding") == "chunked"  # sent while being made
    init = await origin.http.get(f"/live/demo/{init_uri}")
    frames, _, _ = decode(init.content, early.content)
    assert len(frames) == 25  # the whole second of video, though it did not exist when asked
    assert early.content == (await origin.http.get(f"/live/demo/{early_uri}")).content


async def test_a_reconnect_is_a_new_period_that_starts_after_the_first_ends(make_origin) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin({"cam": {"source": "rtmp", "key": "dash-key"}}, window_seconds=20)
    for _ in range(2):
        assert await finish(await start_publisher(origin.rtmp_url("dash-key"), 2.2)) == 0
    root = ET.fromstring((await origin.http.get("/live/cam/manifest.mpd")).text)
    periods = root.findall("d:Period", NS)
    assert [p.get("id") for p in periods] == ["p1", "p2"]
    ends = []
    for period in periods:
        start = float(period.get("start", "PT0S")[2:-1])
        template = period.find(".//d:SegmentTemplate", NS)
        assert template is not None
        assert template.get("initialization", "").endswith(f"init{period.get('id', '')[1:]}.mp4")
        [(_, init_uri, segments), *_] = _expand(
            ET.fromstring(f'<MPD xmlns="{NS["d"]}">{ET.tostring(period).decode()}</MPD>')
        )
        offset, scale = int(template.get("presentationTimeOffset", "0")), int(template.get("timescale", "1"))
        first, last = segments[0][0], segments[-1][0]
        assert first >= offset  # the period's media starts at (or after) its start
        ends.append((start, start + (last - offset) / scale))
        for _, uri in segments:
            assert (await origin.http.get(f"/live/cam/{uri}")).status_code == 200
    assert ends[1][0] >= ends[0][1], ends  # periods in order, the second after the first's media


def test_a_track_view_keeps_one_tracks_samples_and_points_at_them() -> None:
    video = (Sample(900, 3000, 0, True, b"VVVV"), Sample(3900, 3000, 0, False, b"vv"))
    sound = (Sample(480, 1024, 0, True, b"AAA"), Sample(1504, 1024, 0, True, b"aa"))
    muxed = fragment(7, [TrackRun(1, video), TrackRun(2, sound)])
    audio = track_view.track_fragments(muxed + fragment(8, [TrackRun(1, video)]), 2)
    assert track_view.track_timing(audio, 1) == (480, 2048)  # renumbered to track 1
    assert track_view.track_timing(muxed, 2) == (480, 2048)
    assert audio.endswith(b"mdat" + b"AAAaa") and b"VVVV" not in audio
    # the trun's data offset (from the moof's start) lands on the first sample
    offset = struct.unpack_from(">i", audio, audio.index(b"trun") + 12)[0]
    assert audio[offset : offset + 3] == b"AAA"
    assert track_view.track_fragments(fragment(9, [TrackRun(1, video)]), 2) == b""
    assert track_view.track_fragments(b"junk", 2) == b""


async def test_dvr_seconds_is_the_start_over_window_of_both_hls_and_dash(make_origin) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin(
        {"demo": {"source": "test", "width": 160, "height": 96}}, window_seconds=6, dvr_seconds=30
    )
    await origin.wait_for(lambda: _ok(origin, "/live/demo/manifest.mpd"))
    root = ET.fromstring((await origin.http.get("/live/demo/manifest.mpd")).text)
    assert root.get("timeShiftBufferDepth") == "PT30S"  # dash.js may seek back this far
