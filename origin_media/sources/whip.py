"""WHIP ingest (WebRTC-HTTP Ingestion Protocol, RFC 9725) with aiortc.

    POST /whip/STREAM   Content-Type: application/sdp, Authorization: Bearer <the stream's key>
        -> 201 Created, SDP answer, Location: /whip/STREAM/SESSION
    DELETE /whip/STREAM/SESSION  (same bearer token) -> 200, the session is over

The peer connection has no ICE servers, so nothing is ever sent off the host's interfaces
without the publisher's candidates. Each session holds its stream's publisher claim (one at a
time, like RTMP: a second one gets 409). Frames read off the received tracks go through a
bounded queue to a `WhipEncoder` thread; a session ends on DELETE, on a failed or closed
connection, or after 10 s without a frame, and a new publisher continues the stream after a
discontinuity.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import queue
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from web_dist.config.media import MediaOriginSettings

from . import Publishable
from .whip_encode import Arrival, WhipEncoder

log = logging.getLogger(__name__)

MAX_OFFER_BYTES = 64 * 1024
QUEUE_FRAMES = 120  # about 2 s of video and audio frames: beyond that the encoder drops
# FFmpeg 8's WHIP muxer signs DTLS with a self-made certificate on secp224r1, a curve the
# OpenSSL under aiortc no longer takes: its ClientHello cannot list it, so it answers the
# server's certificate with an illegal_parameter alert ("DTLS session failed" at FFmpeg).
FFMPEG_DTLS_HINT = (
    " FFmpeg's WHIP muxer makes its own certificate on P-224, which is refused:"
    " give it one on P-256 (-cert_file, -key_file)"
)
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Expose-Headers": "Location",
}


@dataclass
class WhipSession:
    id: str
    stream: Publishable
    pc: RTCPeerConnection
    frames: queue.Queue[Arrival | None] = field(default_factory=lambda: queue.Queue(QUEUE_FRAMES))
    stop: threading.Event = field(default_factory=threading.Event)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    thread: threading.Thread | None = None
    dropped: int = 0
    ffmpeg: bool = False  # the offer came from FFmpeg's WHIP muxer (its SDP origin line says so)


async def _limited_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it passes `limit` bytes (declared or received):
    a huge offer is refused while it is read, never held whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _from_ffmpeg(sdp: str) -> bool:
    return any(line.startswith("o=FFmpeg ") for line in sdp.splitlines()[:3])


def _dtls_failed(pc: RTCPeerConnection) -> bool:
    return any(t.receiver.transport.state == "failed" for t in pc.getTransceivers())


def _text(body: str, status: int, **headers: str) -> Response:
    return PlainTextResponse(body + "\n", status, headers={**CORS, **headers})


class WhipIngest:
    def __init__(self, streams: Mapping[str, Publishable], settings: MediaOriginSettings) -> None:
        self.streams = streams
        self.settings = settings
        self._sessions: dict[str, WhipSession] = {}

    # ---- HTTP ------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> Response | Publishable:
        """The stream named in the path, or the error response (404, 401)."""
        name = request.path_params["stream"]
        config = self.settings.stream(name)
        stream = self.streams.get(name)
        if config is None or config.source != "whip" or config.key is None or stream is None:
            return _text("no WHIP stream by that name", 404)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.key.encode()):
            log.warning("WHIP %s: refused, missing or wrong bearer token", name)
            return _text(
                "a valid 'Authorization: Bearer <stream key>' is required",
                401,
                **{"WWW-Authenticate": 'Bearer realm="whip"'},
            )
        return stream

    async def offer(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={**CORS, "Accept-Post": "application/sdp"})
        stream = self._authorized(request)
        if isinstance(stream, Response):
            return stream
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/sdp":
            return _text("the offer must be sent as application/sdp", 415)
        body = await _limited_body(request, MAX_OFFER_BYTES)
        if body is None:
            return _text(f"SDP offer too large (at most {MAX_OFFER_BYTES} bytes)", 413, Connection="close")
        if not stream.claim():
            return _text(f"stream {stream.name} already has a publisher", 409)
        try:
            session, answer = await self._negotiate(stream, body.decode("utf-8", "replace"))
        except ValueError as exc:
            stream.release()
            return _text(f"bad SDP offer: {exc}", 400)
        location = f"/whip/{stream.name}/{session.id}"
        log.info("WHIP %s: session %s started", stream.name, session.id)
        return Response(
            answer, 201, media_type="application/sdp", headers={**CORS, "Location": location, "ETag": f'"{session.id}"'}
        )

    async def delete(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=CORS)
        stream = self._authorized(request)
        if isinstance(stream, Response):
            return stream
        session = self._sessions.get(request.path_params["session"])
        if session is None or session.stream is not stream:
            return _text("no such WHIP session", 404)
        await self._finish(session)
        return _text("session ended", 200)

    async def close(self) -> None:
        await asyncio.gather(*(self._finish(s) for s in list(self._sessions.values())))

    # ---- WebRTC ----------------------------------------------------------------------------

    async def _negotiate(self, stream: Publishable, sdp: str) -> tuple[WhipSession, str]:
        if not sdp.startswith("v=0"):
            raise ValueError("not an SDP session description")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        session = WhipSession(secrets.token_urlsafe(12), stream, pc, ffmpeg=_from_ffmpeg(sdp))
        tracks: list[MediaStreamTrack] = []
        pc.on("track", tracks.append)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if not any(t.kind == "video" for t in tracks):
                raise ValueError("no video to publish (WHIP ingest needs a video track)")
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises assorted errors for malformed SDP
            await pc.close()
            raise ValueError(str(exc) or type(exc).__name__) from exc
        self._sessions[session.id] = session
        self._start(session, tracks)
        return session, pc.localDescription.sdp

    def _start(self, session: WhipSession, tracks: list[MediaStreamTrack]) -> None:
        config = self.settings.stream(session.stream.name)
        assert config is not None
        encoder = WhipEncoder(
            session.stream,
            config.renditions,
            config.bitrate,
            self.settings.segment_seconds,
            any(t.kind == "audio" for t in tracks),
        )
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                encoder.run(session.frames, session.stop)
            finally:  # silence or an error ended it: tidy up the connection too
                loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._finish(session)))

        session.thread = threading.Thread(target=run, name=f"whip-{session.stream.name}", daemon=True)
        session.thread.start()
        session.readers = [asyncio.ensure_future(self._read(session, t)) for t in tracks]

        @session.pc.on("connectionstatechange")
        async def on_state() -> None:
            if session.pc.connectionState in ("failed", "closed"):
                await self._finish(session)

    async def _read(self, session: WhipSession, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.VideoFrame | av.AudioFrame):
                    continue  # received tracks yield decoded frames; never packets
                try:
                    session.frames.put_nowait(Arrival(frame, time.monotonic()))
                except queue.Full:
                    session.dropped += 1  # the encoder is behind: drop, never queue more

    async def _finish(self, session: WhipSession) -> None:
        """End a session (idempotent): stop reading, close the connection, end the stream."""
        if self._sessions.pop(session.id, None) is None:
            return
        session.stop.set()
        with contextlib.suppress(queue.Full):
            session.frames.put_nowait(None)  # wake the encoder (when full, it sees `stop` soon)
        for task in session.readers:
            task.cancel()
        await asyncio.gather(*session.readers, return_exceptions=True)
        if _dtls_failed(session.pc):
            log.warning(
                "WHIP %s: session %s: the DTLS handshake with the publisher failed.%s",
                session.stream.name,
                session.id,
                FFMPEG_DTLS_HINT if session.ffmpeg else "",
            )
        await session.pc.close()
        if session.thread is not None:
            await asyncio.to_thread(session.thread.join, 10)
        log.info("WHIP %s: session %s ended (%d frames dropped)", session.stream.name, session.id, session.dropped)
