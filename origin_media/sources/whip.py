"""WHIP ingest (RFC 9725): not implemented yet; the routes exist and answer 501.

Planned shape: POST /whip/STREAM (application/sdp offer, bearer token = the stream's `key`)
-> aiortc RTCPeerConnection(RTCConfiguration(iceServers=[])) so nothing leaves loopback ->
201 + Location + SDP answer; decoded frames from the tracks go through a bounded queue to an
encoding thread (encoders.h264_encoder / aac_encoder) that feeds the stream as a session with
protocol "whip"; DELETE on the Location closes the peer connection and ends the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response


class WhipIngest:
    def __init__(self, streams: Mapping[str, Any], settings: Any) -> None:
        self.streams = streams
        self.settings = settings

    async def offer(self, request: Request) -> Response:
        return PlainTextResponse("WHIP ingest is not implemented yet\n", 501)

    async def delete(self, request: Request) -> Response:
        return PlainTextResponse("WHIP ingest is not implemented yet\n", 501)

    async def close(self) -> None:
        return None
