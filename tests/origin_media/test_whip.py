"""WHIP ingest (RFC 9725): an aiortc publisher on loopback, refusals, DELETE, and a return."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import sys
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from pathlib import Path

import av
import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import hls
from .conftest import ROOT, Origin, decode, finish

KEY = "whip-s3cret"
WIDTH, HEIGHT = 160, 96


class MovingPicture(VideoStreamTrack):
    """Small frames, a different shade every frame, at aiortc's 30 fps pace."""

    def __init__(self) -> None:
        super().__init__()
        self.index = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        row = bytes((x + self.index * 4) % 256 for x in range(frame.planes[0].line_size))
        frame.planes[0].update(row * HEIGHT)
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, Fraction(time_base)
        self.index += 1
        return frame


async def offer_sdp(pc: RTCPeerConnection) -> str:
    pc.addTrack(MovingPicture())
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


@pytest.fixture
async def publishers() -> AsyncIterator[Callable[[], RTCPeerConnection]]:
    made: list[RTCPeerConnection] = []

    def make() -> RTCPeerConnection:
        made.append(RTCPeerConnection(RTCConfiguration(iceServers=[])))
        return made[-1]

    yield make
    for pc in made:
        with contextlib.suppress(Exception):
            await pc.close()


async def publish(origin: Origin, pc: RTCPeerConnection, token: str = KEY) -> httpx.Response:
    response = await origin.http.post(
        "/whip/cam",
        content=await offer_sdp(pc),
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    )
    if response.status_code == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    return response


async def _playlist(origin: Origin) -> hls.Playlist | None:
    response = await origin.http.get("/live/cam/source/index.m3u8")
    return hls.parse(response.text) if response.status_code == 200 else None


async def test_refusals_create_no_stream(make_origin, publishers) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin({"cam": {"source": "whip", "key": KEY}})
    sdp = await offer_sdp(publishers())
    post = origin.http.post
    assert (await post("/whip/cam", content=sdp, headers={"Content-Type": "application/sdp"})).status_code == 401
    wrong = await publish(origin, publishers(), token="guess")
    assert wrong.status_code == 401 and "Bearer" in wrong.headers["www-authenticate"]
    auth = {"Authorization": f"Bearer {KEY}"}
    bad = await post("/whip/cam", content="hello", headers={**auth, "Content-Type": "application/sdp"})
    assert bad.status_code == 400 and "bad SDP offer" in bad.text
    not_sdp = await post("/whip/cam", content=sdp, headers={**auth, "Content-Type": "text/plain"})
    assert not_sdp.status_code == 415
    elsewhere = await post("/whip/nope", content=sdp, headers={**auth, "Content-Type": "application/sdp"})
    assert elsewhere.status_code == 404
    info = await origin.stream_info("cam")
    assert info["state"] == "idle" and info["sessions"] == 0
    assert (await origin.http.get("/live/cam/source/index.m3u8")).status_code == 404


async def test_an_oversized_offer_is_refused_while_it_is_read(make_origin) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin({"cam": {"source": "whip", "key": KEY}})
    reader, writer = await asyncio.open_connection("127.0.0.1", origin.server.port)
    writer.write(
        f"POST /whip/cam HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\n"
        "content-type: application/sdp\r\ntransfer-encoding: chunked\r\n\r\n".encode()
    )
    chunk = b"a=" + b"x" * (32 * 1024)
    for _ in range(4):  # 128 KiB of an offer that never ends: the answer must not wait for its end
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 413 ")
    writer.close()
    declared = await origin.http.post(
        "/whip/cam",
        content=b"v=0\r\n" * 20000,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {KEY}"},
    )
    assert declared.status_code == 413
    assert (await origin.stream_info("cam"))["sessions"] == 0


async def test_whip_publish_delete_and_return(make_origin, publishers) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin({"cam": {"source": "whip", "key": KEY}}, reconnect_grace_seconds=30.0)
    first = await publish(origin, publishers())
    assert first.status_code == 201, first.text
    assert first.headers["content-type"].startswith("application/sdp")
    location = first.headers["location"]
    assert location.startswith("/whip/cam/")

    async def segments(count: int) -> bool:
        playlist = await _playlist(origin)
        return playlist is not None and len(playlist.full_segments) >= count

    await origin.wait_for(lambda: segments(2), limit=30)
    info = await origin.stream_info("cam")
    assert info["state"] == "live" and info["protocol"] == "whip"
    assert (await publish(origin, publishers())).status_code == 409, "one publisher at a time"
    playlist = await _playlist(origin)
    assert playlist is not None
    segment = playlist.full_segments[-1]
    frames, packets, audio = decode(
        await origin.fetch("cam", segment.map_uri or ""), await origin.fetch("cam", segment.uri or "")
    )
    assert packets[0].is_keyframe and (frames[0].width, frames[0].height) == (WIDTH, HEIGHT)
    assert audio, "the publisher's sound is in the segment (as AAC)"

    auth = {"Authorization": f"Bearer {KEY}"}
    assert (await origin.http.delete(location)).status_code == 401
    assert (await origin.http.delete(location, headers=auth)).status_code == 200
    assert (await origin.http.delete(location, headers=auth)).status_code == 404

    async def ended() -> bool:  # the session; the playlist waits out the grace period
        return bool((await origin.stream_info("cam"))["state"] == "ended")

    await origin.wait_for(ended, limit=10)
    playlist = await _playlist(origin)
    assert playlist is not None and not playlist.ended

    assert (await publish(origin, publishers())).status_code == 201

    async def continued() -> bool:
        playlist = await _playlist(origin)
        return playlist is not None and not playlist.ended and any(s.discontinuity and s.uri for s in playlist.segments)

    await origin.wait_for(continued, limit=30)
    assert (await origin.stream_info("cam"))["sessions"] == 2


async def test_whip_with_a_ladder(make_origin, publishers) -> None:  # type: ignore[no-untyped-def]
    rungs = [
        {"name": "mid", "width": 160, "height": 96, "bitrate": 150_000},
        {"name": "small", "width": 80, "height": 48, "bitrate": 60_000},
    ]
    origin: Origin = await make_origin({"cam": {"source": "whip", "key": KEY, "renditions": rungs}})
    assert (await publish(origin, publishers())).status_code == 201

    async def both() -> bool:
        for name in ("mid", "small"):
            response = await origin.http.get(f"/live/cam/{name}/index.m3u8")
            if response.status_code != 200 or not hls.parse(response.text).full_segments:
                return False
        return True

    await origin.wait_for(both, limit=30)
    master = (await origin.http.get("/live/cam/master.m3u8")).text
    assert "RESOLUTION=160x96" in master and "RESOLUTION=80x48" in master
    small = hls.parse((await origin.http.get("/live/cam/small/index.m3u8")).text).full_segments[0]
    init = (await origin.http.get(f"/live/cam/small/{small.map_uri}")).content
    frames, packets, _ = decode(init, (await origin.http.get(f"/live/cam/small/{small.uri}")).content)
    assert packets[0].is_keyframe and (frames[0].width, frames[0].height) == (80, 48)


async def test_publisher_that_hangs_up_without_delete_ends_the_playlist(make_origin, publishers) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin({"cam": {"source": "whip", "key": KEY}})
    publisher = publishers()
    assert (await publish(origin, publisher)).status_code == 201

    async def listed() -> bool:
        playlist = await _playlist(origin)
        return playlist is not None and bool(playlist.full_segments)

    await origin.wait_for(listed, limit=30)
    await publisher.close()  # its connection closes; no DELETE

    async def ended() -> bool:
        playlist = await _playlist(origin)
        return playlist is not None and playlist.ended

    await origin.wait_for(ended, limit=20)
    assert (await origin.stream_info("cam"))["state"] == "ended"


def _p256_certificate(folder: Path) -> dict[str, str]:
    """A self-signed P-256 certificate and key for FFmpeg's WHIP muxer, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whip publisher")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return {"WHIP_CERT": str(folder / "cert.pem"), "WHIP_KEY": str(folder / "key.pem")}


async def _ffmpeg_whip(origin: Origin, seconds: float, env: dict[str, str]) -> asyncio.subprocess.Process:
    """FFmpeg's own WHIP muxer (PyAV's FFmpeg 8) publishing, as a process."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.origin_media.publisher",
        f"{origin.server.url}/whip/cam",
        str(seconds),
        cwd=ROOT,
        env={**os.environ, "WHIP_TOKEN": KEY, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_ffmpegs_whip_muxer_publishes_and_plays(make_origin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    origin: Origin = await make_origin({"cam": {"source": "whip", "key": KEY}})
    publisher = await _ffmpeg_whip(origin, 3, _p256_certificate(tmp_path))
    assert await finish(publisher) == 0, (await publisher.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]
    playlist = await _playlist(origin)
    assert playlist is not None and len(playlist.full_segments) >= 2
    segment = playlist.full_segments[0]
    init = await origin.fetch("cam", segment.map_uri or "")
    frames, packets, audio = decode(init, await origin.fetch("cam", segment.uri or ""))
    assert packets[0].is_keyframe and frames[0].width == 320 and audio


async def test_ffmpegs_default_whip_certificate_fails_and_the_log_says_why(
    make_origin,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    origin: Origin = await make_origin({"cam": {"source": "whip", "key": KEY}})
    publisher = await _ffmpeg_whip(origin, 3, {})
    assert await finish(publisher) != 0
    await origin.wait_for(lambda: _logged(caplog, "the DTLS handshake with the publisher failed"))
    assert "P-224" in caplog.text and "-cert_file" in caplog.text
    assert (await origin.stream_info("cam"))["state"] == "idle"  # nothing left claimed


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return text in caplog.text
