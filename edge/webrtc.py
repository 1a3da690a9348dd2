"""WebRTC playback at the edge: WHEP (draft-ietf-wish-whep) for every live stream of a
streaming distribution.

    POST    /whep/STREAM        application/sdp offer -> 201, SDP answer, Location of the session
    DELETE  /whep/STREAM/ID     ends the session
    OPTIONS either              CORS preflight (and Accept-Post: application/sdp)

Each stream is pulled from the media origin once (`StreamFeeds`) and its encoded packets are
fanned out (`PacketRelay`) to one aiortc sender per viewer and track, which only packetizes
them: H.264 and Opus go out exactly as the origin encoded them, never decoded or encoded per
viewer. aiortc has no trickle ICE, so the answer is sent once gathering is complete; its host
candidates are the addresses in `WhepSettings.ice_addresses` (loopback by default).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router

from edge.packet_feed import FeedSettings, FeedUnavailable, StreamFeed, StreamFeeds
from edge.upstream import OriginClient
from edge.whep_offer import offered_kinds, pin_host_addresses
from web_dist.config import CdnConfig, Distribution, EdgeLocation
from web_dist.config.behaviors import DistributionIndex

if TYPE_CHECKING:
    from edge.whep_session import WhepSession

log = logging.getLogger("cdn.edge")
WHEP_PREFIX = "/whep/"
SDP = "application/sdp"
MAX_OFFER_BYTES = 64 * 1024
SENT_CODECS = {"video": ("video/h264", "video/rtx"), "audio": ("audio/opus",)}
_STREAM = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CORS = {
    "access-control-allow-origin": "*",
    "access-control-expose-headers": "Location, Accept-Post",
}
PREFLIGHT = {
    **CORS,
    "access-control-allow-methods": "POST, DELETE, OPTIONS",
    "access-control-allow-headers": "Content-Type, Authorization, If-Match",
    "access-control-max-age": "86400",
    "accept-post": SDP,
}


@dataclass(frozen=True)
class WhepSettings:
    feeds: FeedSettings = field(default_factory=FeedSettings)
    max_sessions: int = 1000  # per edge; more get 503
    connect_timeout: float = 30.0  # a session not connected by then is closed
    ice_addresses: tuple[str, ...] | None = ("127.0.0.1",)  # None: every interface but loopback

    @classmethod
    def for_edge(cls, edge: EdgeLocation) -> WhepSettings:
        """What the config says for this edge (`webrtc_grace`, `webrtc_max_viewers`)."""
        return cls(FeedSettings(grace_seconds=edge.webrtc_grace), max_sessions=edge.webrtc_max_viewers)


class WhepService:
    """The WHEP endpoints of one edge (an ASGI app for /whep/ on streaming distributions)."""

    def __init__(
        self, config: CdnConfig, edge: EdgeLocation, upstream: OriginClient, settings: WhepSettings | None = None
    ) -> None:
        self.config = config
        self.settings = settings or WhepSettings.for_edge(edge)
        self.feeds = StreamFeeds(upstream, self.settings.feeds, f"cdn-edge/{edge.name}")
        self.sessions: dict[str, WhepSession] = {}
        self._streaming = [d for d in config.distributions_of(edge.name) if d.kind == "streaming"]
        self._index = DistributionIndex(self._streaming, edge.name)
        self._unpin: Callable[[], None] = lambda: None
        self._router = Router(
            routes=[
                Route(WHEP_PREFIX + "{stream}", self.offer, methods=["POST", "OPTIONS"]),
                Route(WHEP_PREFIX + "{stream}/{session}", self.session, methods=["DELETE", "PATCH", "OPTIONS"]),
            ]
        )

    def serves(self, scope: Mapping[str, Any]) -> bool:
        """A /whep/ request for a streaming distribution of this edge (others go to the flow)."""
        return scope["path"].startswith(WHEP_PREFIX) and self._distribution(scope) is not None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._router(scope, receive, send)

    async def start(self) -> None:
        if self._streaming and self.settings.ice_addresses is not None:
            self._unpin = pin_host_addresses(self.settings.ice_addresses)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self.sessions.values())), return_exceptions=True)
        await self.feeds.close()
        self._unpin()

    def viewers_by_stream(self) -> dict[str, int]:
        """Sessions per stream, keyed as the edge's live metrics key streams (`/live/NAME`)."""
        counts: dict[str, int] = {}
        for session in self.sessions.values():
            key = f"/live/{session.stream}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def forget(self, session: WhepSession) -> None:
        """Let go of the session's feed, once."""
        self.sessions.pop(session.id, None)
        if not session.released:
            session.released = True
            self.feeds.release(session.feed)

    # ---- handlers --------------------------------------------------------------------------

    async def offer(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=PREFLIGHT)
        stream = request.path_params["stream"]
        dist = self._distribution(request.scope)
        if dist is None or not _STREAM.match(stream):
            return _error(404, f"no live stream named {stream!r}")
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != SDP:
            return _error(415, f"a WHEP offer is {SDP}, not {media_type or 'nothing'}")
        body = await _body(request)
        if body is None:
            return _error(413, f"the offer is larger than {MAX_OFFER_BYTES} bytes")
        try:
            offer = body.decode("utf-8")
            offered = offered_kinds(offer)
        except (UnicodeDecodeError, ValueError) as exc:
            return _error(400, f"bad SDP offer: {exc}")
        if len(self.sessions) >= self.settings.max_sessions:
            return _error(503, "this edge has as many WebRTC viewers as it takes", {"retry-after": "5"})
        try:
            feed = await self.feeds.acquire(dist.id, self.config.origins_of(dist.origin), stream)
        except FeedUnavailable as exc:
            return _error(exc.status, exc.message)
        return await self._start_session(stream, feed, offer, offered)

    async def _start_session(self, stream: str, feed: StreamFeed, offer: str, offered: tuple[str, ...]) -> Response:
        # aiortc and PyAV are loaded with the first viewer: an edge (or worker) serving none
        # does without their ~36 MiB (docs/MEASUREMENTS.md, RSS at rest)
        from edge.whep_session import WhepSession, check_connected, on_state

        session = WhepSession(self, stream, feed)
        try:
            answer = await session.answer(offer, offered)
        except asyncio.CancelledError:  # the viewer hung up: give the feed back all the same
            session.ended()
            raise
        except Exception as exc:  # aiortc raises assorted types for offers it cannot use
            await session.close()
            return _error(400, f"bad SDP offer: {exc or type(exc).__name__}")
        self.sessions[session.id] = session
        session.pc.on("connectionstatechange", lambda: on_state(session))
        asyncio.get_running_loop().call_later(self.settings.connect_timeout, check_connected, session)
        return Response(
            answer, 201, media_type=SDP, headers={**CORS, "location": session.location, "cache-control": "no-store"}
        )

    async def session(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=PREFLIGHT)
        if request.method == "PATCH":
            return _error(405, "trickle ICE and ICE restarts are not supported", {"allow": "DELETE"})
        session = self.sessions.get(request.path_params["session"])
        if session is None or session.stream != request.path_params["stream"]:
            return _error(404, "no such WHEP session")
        await session.close()
        return Response(status_code=200, headers=CORS)

    def _distribution(self, scope: Mapping[str, Any]) -> Distribution | None:
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        return self._index.lookup(host)


async def _body(request: Request) -> bytes | None:
    """The request body, or None past MAX_OFFER_BYTES."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_OFFER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(
        f"{status} {message}\n", status, headers={**CORS, "cache-control": "no-store", **(headers or {})}
    )
