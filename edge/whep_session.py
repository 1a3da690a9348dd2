"""One WHEP viewer's peer connection (aiortc) and the relayed tracks it sends: loaded by
edge/webrtc.py with the first viewer, so an edge without WebRTC viewers never imports aiortc."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

import av
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edge.packet_feed import StreamFeed
from edge.packet_relay import RelayViewer
from edge.webrtc import SENT_CODECS, WHEP_PREFIX
from edge.whep_offer import without_mdns_candidates

if TYPE_CHECKING:
    from edge.webrtc import WhepService

log = logging.getLogger("cdn.edge")


class RelayTrack(MediaStreamTrack):
    """One viewer's track: recv() hands aiortc the relayed encoded packets as they come."""

    def __init__(self, kind: str, session: WhepSession) -> None:
        super().__init__()
        self.kind = kind
        self._session = session

    async def recv(self) -> av.Packet[Any]:
        packet = await self._session.viewer().next(self.kind)
        if packet is None:
            self._session.ended()
            raise MediaStreamError
        return packet


class WhepSession:
    """One viewer: a peer connection, the feed it holds and its place in the relay."""

    def __init__(self, service: WhepService, stream: str, feed: StreamFeed) -> None:
        self.id = secrets.token_urlsafe(16)
        self.stream = stream
        self.feed = feed
        self.kinds: tuple[str, ...] = ()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._service = service
        self._viewer: RelayViewer[av.Packet[Any]] | None = None
        self.released = False  # its hold on the feed is given back
        self._closing: asyncio.Task[None] | None = None

    @property
    def location(self) -> str:
        return f"{WHEP_PREFIX}{self.stream}/{self.id}"

    def viewer(self) -> RelayViewer[av.Packet[Any]]:
        """Joined on the first packet asked for (after DTLS): nothing queues before."""
        if self._viewer is None:
            self._viewer = self.feed.relay.join(self.kinds, on_drop=self.ended)
        return self._viewer

    async def answer(self, offer: str, offered: tuple[str, ...]) -> str:
        # an unmatched transceiver breaks aiortc's answer: only the kinds both sides have
        for kind in [k for k in self.feed.relay.kinds if k in offered]:
            transceiver = self.pc.addTransceiver(RelayTrack(kind, self), "sendonly")
            transceiver.setCodecPreferences(
                [
                    codec
                    for codec in RTCRtpSender.getCapabilities(kind).codecs
                    if codec.mimeType.lower() in SENT_CODECS[kind]
                ]
            )
        if self._service.settings.ice_addresses is not None:
            offer = without_mdns_candidates(offer)
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        self.kinds = tuple(t.kind for t in self.pc.getTransceivers() if t.mid is not None and t.sender.track)
        if not self.kinds:
            raise ValueError("the offer has no media section this stream can fill")
        await self.pc.setLocalDescription(await self.pc.createAnswer())  # gathers ICE completely
        return self.pc.localDescription.sdp

    def ended(self) -> None:
        """The relay ended this viewer (stream over, or too slow), or its connection failed."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.close())

    async def close(self) -> None:
        if self._viewer is not None:
            self.feed.relay.leave(self._viewer)
        self._service.forget(self)
        await self.pc.close()


def on_state(session: WhepSession) -> None:
    if session.pc.connectionState in ("failed", "closed"):
        session.ended()


def check_connected(session: WhepSession) -> None:
    if session.pc.connectionState not in ("connected", "closed"):
        log.info("WHEP session %s did not connect in time", session.id)
        session.ended()
