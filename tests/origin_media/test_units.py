"""Pure pieces, table-driven: playlist rendering, H.264 framing,
the packager's cutting rules, settings."""

from __future__ import annotations

import re
import struct
from fractions import Fraction

import pytest

from origin_media import fmp4, h264
from origin_media import packager as pk
from origin_media import playlist as pl
from origin_media.media import MediaPacket, SessionStart, Track
from web_dist.config.media import MediaOriginSettings

from . import hls

# ---- playlist ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("configured", "expected"), [(2.0, 2), (1.5, 2), (0.5, 1), (1.0, 1), (6.0, 6)])
def test_target_duration_is_the_configured_length_rounded_up(configured: float, expected: int) -> None:
    assert pk.target_seconds(configured) == expected


def test_media_playlist_rendering() -> None:
    part = pl.PlaylistPart("a/part5.0.m4s", 0.5, True)
    rendered = pl.render_media(
        pl.MediaPlaylist(
            target_duration=2,
            part_target=0.5,
            discontinuity_sequence=1,
            segments=(
                pl.PlaylistSegment(4, "a/seg4.m4s", 2.0, 0.0, False, "a/init1.mp4"),
                pl.PlaylistSegment(5, "a/seg5.m4s", None, 2.0, True, "a/init2.mp4", (part,)),
            ),
            preload_hint_uri="a/part5.1.m4s",
            ended=False,
        )
    )
    assert rendered.splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:9",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MEDIA-SEQUENCE:4",
        "#EXT-X-DISCONTINUITY-SEQUENCE:1",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5",
        "#EXT-X-PART-INF:PART-TARGET=0.5",
        '#EXT-X-MAP:URI="a/init1.mp4"',
        "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:00.000Z",
        "#EXTINF:2,",
        "a/seg4.m4s",
        "#EXT-X-DISCONTINUITY",
        '#EXT-X-MAP:URI="a/init2.mp4"',
        "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:02.000Z",
        '#EXT-X-PART:DURATION=0.5,URI="a/part5.0.m4s",INDEPENDENT=YES',
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="a/part5.1.m4s"',
    ]
    parsed = hls.parse(rendered)
    assert parsed.segments[1].discontinuity and parsed.last_part() == (5, 0)


def test_ended_playlist_has_endlist_and_no_hint() -> None:
    text = pl.render_media(pl.MediaPlaylist(1, 0.25, 0, (), "x", ended=True))
    assert text.endswith("#EXT-X-ENDLIST\n") and "PRELOAD-HINT" not in text


def test_multivariant() -> None:
    text = pl.render_multivariant([pl.VariantStream("source/index.m3u8", 900_000, "avc1.42c01e,mp4a.40.2", 640, 360)])
    assert '#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="avc1.42c01e,mp4a.40.2",RESOLUTION=640x360' in text


# ---- H.264 framing ----------------------------------------------------------------------------


def test_annexb_avcc_round_trip() -> None:
    sps, pps, idr = b"\x67\x42\xc0\x1e\xaa", b"\x68\xce\x3c\x80", b"\x65\x88\x84\x00\x33"
    annexb = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps + b"\x00\x00\x00\x01" + idr
    config = h264.normalize_config(annexb)
    assert h264.parse_avcc_config(config) == ([sps], [pps], 4)
    avcc = h264.annexb_to_avcc(annexb)
    assert avcc == struct.pack(">I", len(idr)) + idr
    assert h264.avcc_to_annexb(avcc, config, keyframe=True) == (
        b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps + b"\x00\x00\x00\x01" + idr
    )


# ---- packager ---------------------------------------------------------------------------------

VIDEO = Track(
    "video", "h264", Fraction(1, 1000), h264.avcc_config([b"\x67\x42\xc0\x1e"], [b"\x68"]), width=320, height=180
)
AUDIO = Track("audio", "aac", Fraction(1, 1000), b"\x11\x88", sample_rate=48_000, channels=1)


def feed(packager: pk.CmafPackager, seconds: float, start_ms: int = 0, gop: int = 25) -> list[pk.PackagerEvent]:
    events: list[pk.PackagerEvent] = []
    audio = 0  # AAC frames sent: 1024 samples at 48 kHz each, timestamps in whole ms as in FLV
    for i in range(round(seconds * 25)):
        ms = start_ms + i * 40
        events += packager.push(MediaPacket(0, ms, ms, i % gop == 0, b"\x00\x00\x00\x01\x65"))
        while audio * 1024 / 48 < (i + 1) * 40:
            at = start_ms + round(audio * 1024 / 48)
            events += packager.push(MediaPacket(1, at, at, True, b"\x21"))
            audio += 1
    return events


def test_packager_cuts_segments_on_keyframes_and_parts_within_target() -> None:
    packager = pk.CmafPackager(segment_seconds=1.0, part_seconds=0.25)
    events = packager.start_session(SessionStart((VIDEO, AUDIO), "test", 1000.0))
    events += feed(packager, 3.0) + packager.end_session()
    segments = [e.duration for e in events if isinstance(e, pk.SegmentClosed)]
    parts = [e.duration for e in events if isinstance(e, pk.PartClosed)]
    assert segments == pytest.approx([1.0, 1.0, 1.0])
    assert all(p <= 0.25 + 1e-9 for p in parts) and parts[:5] == pytest.approx([0.24] * 4 + [0.04])
    opened = [e for e in events if isinstance(e, pk.SegmentOpened)]
    assert [e.program_date_time for e in opened] == pytest.approx([1000.0, 1001.0, 1002.0])
    assert isinstance(events[-1], pk.SessionEnded)


def test_packager_waits_for_a_keyframe_and_continues_timeline_across_sessions() -> None:
    packager = pk.CmafPackager(1.0, 0.25)
    packager.start_session(SessionStart((VIDEO, AUDIO), "rtmp", 0.0))
    feed(packager, 2.0)
    packager.end_session()
    packager.start_session(SessionStart((VIDEO, AUDIO), "rtmp", 50.0))
    # the new publisher starts mid-GOP at t=90 s (source clock) : frames before its keyframe drop
    events = feed(packager, 2.0, start_ms=90_000, gop=10)
    opened = [e for e in events if isinstance(e, pk.SegmentOpened)]
    assert opened[0].discontinuity and opened[0].msn == 2
    chunk = next(e for e in events if isinstance(e, pk.ChunkReady)).data
    # continues where the last session ended (audio may have run up to a frame past video)
    assert 2 * fmp4.VIDEO_TIMESCALE <= _tfdt(chunk) <= 2.03 * fmp4.VIDEO_TIMESCALE


def _tfdt(fragment: bytes) -> int:
    at = fragment.index(b"tfdt")
    return int(struct.unpack(">Q", fragment[at + 8 : at + 16])[0])


# ---- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"segment_seconds": "2"}, "test.segment_seconds: expected a number"),
        ({"part_seconds": 5.0}, "test.part_seconds: 5.0 is outside"),
        ({"streams": {"a": {"source": "rtmp"}}}, "test.streams.a.key: an RTMP stream needs"),
        ({"streams": {"a": {"source": "tv"}}}, "test.streams.a.source: expected one of"),
        ({"streams": {"a b": {"source": "test"}}}, "test.streams.a b: stream names"),
        ({"bogus": 1}, "test.bogus: unknown option"),
        ({"streams": {"a": {"source": "file"}}}, "test.streams.a.path"),
        ({"streams": {"a": {"source": "whip"}}}, "test.streams.a.key: a WHIP stream needs a key"),
        ({"streams": {"a": {"source": "test", "renditions": "720p"}}}, "test.streams.a.renditions: expected a list"),
        (
            {"streams": {"a": {"source": "test", "renditions": ["999p"]}}},
            "test.streams.a.renditions[0]: unknown preset",
        ),
        (
            {"streams": {"a": {"source": "test", "renditions": [{"width": 640, "height": 361, "bitrate": 1}]}}},
            "test.streams.a.renditions[0].width: width and height must be even",
        ),
        (
            {"streams": {"a": {"source": "test", "renditions": [{"width": 640, "height": 360}]}}},
            "test.streams.a.renditions[0].bitrate: expected a positive integer",
        ),
        ({"streams": {"a": {"source": "test", "renditions": ["360p", "360p"]}}}, "must be unique"),
    ],
)
def test_settings_errors_name_the_key(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MediaOriginSettings.from_options(options, where="test")


def test_settings_from_the_documented_example() -> None:
    settings = MediaOriginSettings.from_options(
        {
            "rtmp_listen": "127.0.0.1:1935",
            "segment_seconds": 2.0,
            "part_seconds": 0.5,
            "streams": {"demo": {"source": "test"}, "cam1": {"source": "rtmp", "key": "secret123"}},
        },
        where="origins.media.options",
    )
    assert [s.name for s in settings.streams] == ["demo", "cam1"]
    assert "secret123" not in repr(settings)


def test_renditions_from_presets_and_tables() -> None:
    settings = MediaOriginSettings.from_options(
        {
            "streams": {
                "ladder": {
                    "source": "test",
                    "renditions": ["360p", {"name": "tiny", "width": 160, "height": 90, "bitrate": 100_000}],
                },
                "cam": {"source": "rtmp", "key": "k", "renditions": ["720p"]},
                "plain": {"source": "test"},
            }
        },
        where="test",
    )
    ladder, cam, plain = settings.streams
    assert [(r.name, r.width, r.height, r.bitrate) for r in ladder.renditions] == [
        ("360p", 640, 360, 800_000),
        ("tiny", 160, 90, 100_000),
    ]
    # an encoding source serves its ladder; a passthrough one keeps its own encoding too
    assert ladder.rendition_names == ("360p", "tiny")
    assert cam.rendition_names == ("source", "720p")
    assert plain.rendition_names == ("source",)


@pytest.mark.parametrize(("part_seconds", "limit"), [(0.25, 12), (0.333, 10), (0.5, 6), (1.0, 3), (2.0, 3)])
def test_advance_part_limit_is_three_seconds_of_parts(part_seconds: float, limit: int) -> None:
    from origin_media.window import LiveWindow

    # RFC 8216bis 6.2.5.2: three divided by the Part Target Duration (hls.js asks ahead by it)
    assert LiveWindow(2.0, part_seconds, 12.0).advance_part_limit == limit


@pytest.mark.parametrize(
    ("msn", "part", "refused"),
    [
        (10, 7, False),  # the last whole segment, a part index past its end: part 0 of the next
        (11, 1, False),  # the open segment, the next part
        (11, 13, False),  # 12 parts ahead: within 3 s of 0.25 s parts
        (11, 14, True),
        (12, 4, False),  # the next segment: 6 left of this one + 5 = 11 ahead
        (12, 6, True),
        (13, None, True),  # more than two segments past the last whole one
    ],
)
def test_blocking_reload_far_ahead_rule(msn: int, part: int | None, refused: bool) -> None:
    from origin_media.window import LiveWindow

    class Window(LiveWindow):  # segment 10 is whole; segment 11 has parts 0 and 1
        def last_full_msn(self) -> int:
            return 10

        def last_part(self) -> tuple[int, int]:
            return (11, 1)

    assert Window(2.0, 0.25, 12.0).too_far_ahead(msn, part) is refused


def _tfdts(events: list[pk.PackagerEvent]) -> list[int]:
    return [_tfdt(e.data) for e in events if isinstance(e, pk.ChunkReady)]


def test_audio_only_is_timed_by_sample_count_not_flv_milliseconds() -> None:
    packager = pk.CmafPackager(1.0, 0.25)
    events = packager.start_session(SessionStart((AUDIO,), "rtmp", 0.0))
    for n in range(200):  # FLV timestamps: 1024 samples at 48 kHz rounded to whole ms
        ms = round(n * 1024 / 48)
        events += packager.push(MediaPacket(0, ms, ms, True, b"\x21"))
    events += packager.end_session()
    times = _tfdts(events)
    assert {b - a for a, b in zip(times, times[1:], strict=False)} == {1024}
    parts = [e.duration for e in events if isinstance(e, pk.PartClosed)]
    assert all(p <= 0.25 + 1e-9 for p in parts)
    # every audio frame is a sync sample: segments end on target, never split as a long GOP
    segments = [e.duration for e in events if isinstance(e, pk.SegmentClosed)]
    assert all(round(d) <= 1 for d in segments) and packager.warning is None
    assert all(e.independent for e in events if isinstance(e, pk.SegmentOpened | pk.PartOpened))


def test_a_new_sessions_audio_keeps_its_own_offset_to_video() -> None:
    packager = pk.CmafPackager(1.0, 0.25)
    packager.start_session(SessionStart((VIDEO, AUDIO), "rtmp", 0.0))
    feed(packager, 2.0)
    packager.end_session()
    packager.start_session(SessionStart((VIDEO, AUDIO), "rtmp", 50.0))
    events: list[pk.PackagerEvent] = []
    for i in range(50):  # the new publisher's audio starts 30 ms after its first keyframe
        ms = 90_000 + i * 40
        events += packager.push(MediaPacket(0, ms, ms, i % 25 == 0, b"\x00\x00\x00\x01\x65"))
        events += packager.push(MediaPacket(1, ms + 30, ms + 30, True, b"\x21"))
    fragments = [e.data for e in events if isinstance(e, pk.ChunkReady)]
    video_start = _tfdt(fragments[0]) / fmp4.VIDEO_TIMESCALE
    audio_start = min(_track_tfdt(f, 2) for f in fragments if _track_tfdt(f, 2) is not None) / 48_000
    assert audio_start - video_start == pytest.approx(0.030, abs=1 / 48_000 * 2)


def _track_tfdt(fragment: bytes, track_id: int) -> int | None:
    """tfdt of `track_id`'s traf in a moof (None when the fragment has none)."""
    at = 0
    while (at := fragment.find(b"tfhd", at + 1)) >= 0:
        if struct.unpack(">I", fragment[at + 8 : at + 12])[0] == track_id:
            tfdt = fragment.index(b"tfdt", at)
            return int(struct.unpack(">Q", fragment[tfdt + 8 : tfdt + 16])[0])
    return None


@pytest.mark.parametrize(
    ("step", "jitter"),
    [(3003, 0), (3000, 900), (2970, 1200), (3000, 0)],
    ids=["29.97fps", "30fps-jittered", "30.3fps-jittered", "30fps"],
)
def test_whip_frames_at_any_rate_make_segments_that_start_on_a_keyframe(step: int, jitter: int) -> None:
    """A WHIP publisher's frames (29.97 fps, a browser's uneven canvas) through the encoder and
    the packager: every segment starts on a keyframe and none is longer than the target."""
    import queue
    import random
    import threading
    from fractions import Fraction

    import av

    from origin_media.packager import CmafPackager, SegmentClosed, SegmentOpened
    from origin_media.sources.whip_encode import Arrival, WhipEncoder

    class Sink:
        def __init__(self) -> None:
            self.packager = CmafPackager(1.0, 0.25)
            self.events: list[object] = []

        def start(self, session: object) -> None:
            self.events += self.packager.start_session(session)

        def packet(self, packet: MediaPacket) -> None:
            if packet.track == 0:
                self.events += self.packager.push(packet)

        def end(self) -> None:
            self.events += self.packager.end_session()

        def release(self) -> None:
            pass

    sink = Sink()
    frames: queue.Queue[Arrival | None] = queue.Queue()
    rng = random.Random(1)
    for i in range(200):
        frame = av.VideoFrame(64, 48, "yuv420p")
        frame.pts = round(i * step + (rng.uniform(-jitter, jitter) if i else 0))
        frame.time_base = Fraction(1, 90000)
        frames.put(Arrival(frame, 0.0))
    frames.put(None)
    WhipEncoder(sink, (), 300_000, 1.0, False).run(frames, threading.Event())  # type: ignore[arg-type]
    opened = [e for e in sink.events if isinstance(e, SegmentOpened)]
    closed = [e.duration for e in sink.events if isinstance(e, SegmentClosed)]
    assert len(opened) >= 5 and all(o.independent for o in opened)
    assert max(closed) <= 1.0 + 1e-9
