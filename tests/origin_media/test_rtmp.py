"""RTMP push ingest end to end: a PyAV publisher process -> origin -> LL-HLS over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading

import pytest

from . import hls, rtmp_client
from .conftest import Origin, decode, finish, start_publisher

KEY = "s3cret-key"
FRAME = 3600  # 90 kHz ticks per frame at 25 fps


@pytest.fixture
async def origin(make_origin) -> Origin:  # type: ignore[no-untyped-def]
    # a returning publisher must make it back within the grace period, probing included
    return await make_origin(
        {"cam": {"source": "rtmp", "key": KEY}, "other": {"source": "rtmp", "key": "other-key"}},
        reconnect_grace_seconds=10.0,
    )


async def has_segments(origin: Origin, stream: str, count: int) -> bool:
    response = await origin.http.get(f"/live/{stream}/source/index.m3u8")
    return response.status_code == 200 and len(hls.parse(response.text).full_segments) >= count


async def test_publish_gives_decodable_segments_on_target(origin: Origin) -> None:
    publisher = await start_publisher(origin.rtmp_url(KEY), 4.2, bframes=2)
    assert await finish(publisher) == 0
    await origin.wait_for(lambda: _session_ended(origin, "cam"))
    playlist = await origin.playlist("cam")

    assert playlist.tags["EXT-X-TARGETDURATION"] == "1"
    assert "CAN-BLOCK-RELOAD=YES" in playlist.tags["EXT-X-SERVER-CONTROL"]
    segments = playlist.full_segments
    assert len(segments) >= 4
    init = await origin.fetch("cam", segments[0].map_uri or "")
    last_dts = None
    for segment in segments:
        assert segment.program_date_time
        if segment is not segments[-1]:
            assert segment.duration == pytest.approx(1.0, abs=0.05)
        body = await origin.fetch("cam", segment.uri or "")
        frames, packets, audio = decode(init, body)
        assert packets[0].is_keyframe and frames[0].key_frame, "segment must start on a keyframe"
        assert len(frames) == round((segment.duration or 0) * 25)
        assert audio, "audio in every segment"
        if last_dts is not None:
            assert packets[0].dts == last_dts + FRAME, "timestamps continue across segments"
        last_dts = max(p.dts for p in packets)
        await _check_parts(origin, segment, body)


async def _check_parts(origin: Origin, segment: hls.Segment, body: bytes) -> None:
    """Parts of a segment: within PART-TARGET, first independent, bytes add up."""
    if not segment.parts:
        return
    assert segment.parts[0].independent
    assert all(p.duration <= 0.25 + 1e-6 for p in segment.parts)
    assert sum(p.duration for p in segment.parts) == pytest.approx(segment.duration, abs=1e-3)
    joined = b"".join([await origin.fetch("cam", p.uri) for p in segment.parts])
    assert joined == body


async def _session_ended(origin: Origin, stream: str) -> bool:
    """The publisher is gone (the playlist waits out the reconnect grace before ENDLIST)."""
    return bool((await origin.stream_info(stream))["state"] == "ended")


async def test_wrong_key_is_refused_and_creates_nothing(origin: Origin, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="origin_media")
    publisher = await start_publisher(origin.rtmp_url("not-the-key"), 1.0)
    assert await finish(publisher) != 0, "the publisher must see its connection refused"
    info = await origin.stream_info("cam")
    assert info["state"] == "idle" and info["sessions"] == 0
    assert (await origin.http.get("/live/cam/source/index.m3u8")).status_code == 404
    assert origin.app.state.rtmp.refused == 1
    assert any("refused" in r.getMessage() for r in caplog.records)
    assert "not-the-key" not in caplog.text, "stream keys are secrets: never logged"


async def test_vanished_publisher_ends_session_and_return_continues(origin: Origin) -> None:
    publisher = await start_publisher(origin.rtmp_url(KEY), 60)
    await origin.wait_for(lambda: has_segments(origin, "cam", 1), limit=15)
    os.kill(publisher.pid, signal.SIGKILL)  # no FCUnpublish, no FIN from the application
    await finish(publisher)
    await origin.wait_for(lambda: _session_ended(origin, "cam"), limit=5)
    first = await origin.playlist("cam")
    assert not first.ended, "within the reconnect grace period: no ENDLIST yet"

    again = await start_publisher(origin.rtmp_url(KEY), 2.5)
    await origin.wait_for(lambda: _has_discontinuity(origin), limit=15)
    assert await finish(again) == 0
    await origin.wait_for(lambda: _session_ended(origin, "cam"))
    playlist = await origin.playlist("cam")
    resumed = next(s for s in playlist.segments if s.discontinuity)
    assert resumed.msn == first.full_segments[-1].msn + 1, "same stream, numbering continues"
    assert resumed.map_uri != first.segments[0].map_uri, "a new init for the new session"
    assert (await origin.stream_info("cam"))["sessions"] == 2


async def _has_discontinuity(origin: Origin) -> bool:
    playlist = await origin.playlist("cam")
    return not playlist.ended and any(s.discontinuity for s in playlist.full_segments)


async def test_garbage_on_the_rtmp_port_leaves_other_streams_alone(origin: Origin) -> None:
    publisher = await start_publisher(origin.rtmp_url(KEY), 60)
    try:
        await origin.wait_for(lambda: has_segments(origin, "cam", 1), limit=15)
        before = (await origin.playlist("cam")).last_part()
        for junk in (os.urandom(5000), b"\x03" + os.urandom(4000), b"GET / HTTP/1.1\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", origin.rtmp_port)
            writer.write(junk)
            await writer.drain()
            await asyncio.wait_for(reader.read(), 10)  # the origin hangs up on it
            writer.close()
        await origin.wait_for(lambda: _advanced(origin, before, parts=4), limit=5)
        info = await origin.stream_info("cam")
        assert info["state"] == "live" and info["sessions"] == 1
        assert (await origin.stream_info("other"))["state"] == "idle"
    finally:
        publisher.kill()
        await finish(publisher)


async def _advanced(origin: Origin, before: tuple[int, int], parts: int) -> bool:
    msn, index = (await origin.playlist("cam")).last_part()
    return (msn - before[0]) * 4 + (index - before[1]) >= parts


async def _connect_from(address: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


async def _closed_soon(reader: asyncio.StreamReader, within: float = 3.0) -> bool:
    """The server hangs up within `within` seconds (after whatever it still had to say)."""
    try:
        await asyncio.wait_for(reader.read(), within)
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def test_connections_without_a_key_are_capped_per_address_and_in_all() -> None:
    from origin_media.sources.rtmp import RtmpIngest

    ingest = RtmpIngest("127.0.0.1:0", {}, max_pending=3, max_pending_per_address=2, auth_seconds=2.0)
    await ingest.start()
    try:
        threads = threading.active_count()
        held = [await _connect_from("127.0.0.1", ingest.port) for _ in range(2)]
        await asyncio.sleep(0.3)
        assert threading.active_count() == threads, "a connection that named no key costs no thread"
        third, _ = await _connect_from("127.0.0.1", ingest.port)
        assert await _closed_soon(third), "a third idle connection from one address is closed at once"
        other, other_w = await _connect_from("127.0.0.2", ingest.port)
        fourth, _ = await _connect_from("127.0.0.3", ingest.port)
        assert await _closed_soon(fourth), "past the total, every address is refused"
        assert not await _closed_soon(other, 0.3), "another address still had room"
        assert threading.active_count() == threads and ingest.listeners == 0 and ingest.refused == 2
        # none of them names a key: each is closed at its deadline, and the room comes back
        assert all([await _closed_soon(r, 4.0) for r, _ in held]) and await _closed_soon(other, 4.0)
        again, again_w = await _connect_from("127.0.0.1", ingest.port)
        assert not await _closed_soon(again, 0.3)
        again_w.close()
        other_w.close()
    finally:
        await ingest.stop()


def _listening_ports() -> set[int]:
    """TCP ports this process listens on (from /proc: what `ss -ltnp` would show for it)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_a_connection_without_a_valid_key_starts_no_ffmpeg() -> None:
    """Handshake and `connect` answered, then silence or a wrong key: no FFmpeg listener (no
    thread, no loopback port) is ever started for it."""
    from origin_media.sources.rtmp import RtmpIngest

    ingest = RtmpIngest("127.0.0.1:0", {}, auth_seconds=2.0)
    await ingest.start()
    try:
        threads, ports = threading.active_count(), _listening_ports()
        held = [await rtmp_client.connected(ingest.port) for _ in range(4)]
        await asyncio.sleep(0.3)
        assert threading.active_count() == threads, "no thread for a connection that named no key"
        assert _listening_ports() == ports == {ingest.port}, "no FFmpeg listener on loopback"
        wrong_r, wrong_w = held[0]
        wrong_w.write(rtmp_client.publish_message("not-the-key"))
        await rtmp_client.read_until(wrong_r, b"NetStream.Publish.BadName")
        assert await _closed_soon(wrong_r), "a wrong key is refused, and told so"
        assert threading.active_count() == threads and _listening_ports() == ports
        assert all([await _closed_soon(r, 4.0) for r, _ in held[1:]]), "the others: at their deadline"
        assert ingest.refused == 4
    finally:
        await ingest.stop()


async def _handshaken(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await rtmp_client.handshake(reader, writer)
    return reader, writer


@pytest.mark.parametrize(
    ("after_handshake", "sent"),
    [
        (False, b"\x03" + bytes(700)),  # a handshake cut short, then silence
        (True, os.urandom(3000)),  # garbage where the chunk stream should be
        (True, b"\x03" + bytes(3) + (2 << 20).to_bytes(3, "big") + b"\x14" + bytes(4) + bytes(1000)),  # 2 MiB AMF
        (True, rtmp_client.connect_message() + rtmp_client.chunks(bytes(300_000), 8, 128, csid=4)),  # no key
    ],
    ids=["truncated-handshake", "garbage-chunks", "oversized-amf", "no-key-in-256KiB"],
)
async def test_bad_input_is_closed_within_the_auth_deadline(after_handshake: bool, sent: bytes) -> None:
    from origin_media.sources.rtmp import RtmpIngest

    ingest = RtmpIngest("127.0.0.1:0", {}, auth_seconds=1.5)
    await ingest.start()
    try:
        threads = threading.active_count()
        if after_handshake:
            reader, writer = await _handshaken(ingest.port)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
        writer.write(sent)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        assert await _closed_soon(reader, 2.5), "closed, at the latest at the deadline"
        assert ingest.refused == 1 and ingest.listeners == 0 and threading.active_count() == threads
        writer.close()
    finally:
        await ingest.stop()


async def test_a_second_publisher_of_a_live_stream_is_refused_without_ffmpeg(origin: Origin) -> None:
    publisher = await start_publisher(origin.rtmp_url(KEY), 60)
    try:
        await origin.wait_for(lambda: has_segments(origin, "cam", 1), limit=15)
        reader, writer = await rtmp_client.connected(origin.rtmp_port)
        writer.write(rtmp_client.publish_message(KEY))
        await rtmp_client.read_until(reader, b"NetStream.Publish.BadName")
        assert await _closed_soon(reader)
        writer.close()
        assert origin.app.state.rtmp.listeners == 1, "no FFmpeg for the refused one"
        before = (await origin.playlist("cam")).last_part()
        await origin.wait_for(lambda: _advanced(origin, before, parts=2), limit=5)
        assert (await origin.stream_info("cam"))["sessions"] == 1
    finally:
        publisher.kill()
        await finish(publisher)
