"""The start of an RTMP publish, spoken here so that the stream key is known before any FFmpeg
exists for the connection. Pure: fed bytes, returns the bytes to send.

`PublishGate` is the server side towards the publisher: the handshake (S2 echoes C1, as
FFmpeg's own server does, which OBS/librtmp and FFmpeg's client accept), then answers to
`connect`, `releaseStream`, `FCPublish` and `createStream` as FFmpeg's listen mode gives them,
until `publish` names the key. It keeps every byte after the handshake (`replay`): once the key
is accepted, FFmpeg is given that conversation verbatim, as if the publisher had talked to it.

`FfmpegAnswers` is the publisher's side towards FFmpeg: it drops FFmpeg's answers to the
replayed conversation (the publisher already had ours) up to its NetStream.Publish.Start, then
passes the rest on, re-chunked with the chunk size the publisher was told.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from .rtmp_wire import (
    MSG_AMF0_COMMAND,
    MSG_AUDIO,
    MSG_SET_CHUNK_SIZE,
    MSG_SET_PEER_BANDWIDTH,
    MSG_USER_CONTROL,
    MSG_VIDEO,
    MSG_WINDOW_ACK_SIZE,
    ChunkReader,
    Message,
    RtmpProtocolError,
    amf0,
    command_of,
    write_message,
)

HANDSHAKE = 1536  # C1, C2, S1, S2; C0 and S0 are one byte (the version, 3)
MAX_COMMAND = 64 * 1024  # a message before the key is named (OBS's `connect`: under 1 KiB)
MAX_MEDIA = 1 << 20  # a message read after it, while looking for the first frame
CHUNK_SIZE = 4096  # ours, towards the publisher
WINDOW = 2_500_000  # acknowledgement window and peer bandwidth, FFmpeg's server_bw
CONTROL_CSID, COMMAND_CSID = 2, 3


@dataclass(frozen=True)
class Publish:
    """`publish` named a key (under the app `connect` named)."""

    app: str | None
    key: str = field(repr=False)  # a secret
    stream_id: int = field(default=1, compare=False)  # the message stream it is published on


class PublishGate:
    """Feed publisher->server bytes; `feed` returns the answer. `publish` is set once a key is
    named; from then on nothing is answered, and bytes are only read for `first_media`."""

    def __init__(self) -> None:
        self._handshake = bytearray()
        self._reader = ChunkReader(MAX_COMMAND)
        self.replay = bytearray()  # every byte after C2, for FFmpeg
        self.app: str | None = None
        self.publish: Publish | None = None
        self._stream_ids = 0
        # (message type, RTMP timestamp in ms) of the first audio/video frame, once it is whole
        self.first_media: tuple[int, int] | None = None

    def feed(self, data: bytes) -> bytes:
        if len(self._handshake) < 1 + 2 * HANDSHAKE:
            return self._feed_handshake(data)
        if self.publish is None:
            self.replay += data
        answer = b""
        for message in self._reader.feed(data):
            answer += self._on_message(message)
        return answer

    def _feed_handshake(self, data: bytes) -> bytes:
        before = len(self._handshake)
        take = 1 + 2 * HANDSHAKE - before
        self._handshake += data[:take]
        if self._handshake[:1] not in (bytearray(), bytearray(b"\x03")):
            raise RtmpProtocolError("not RTMP (handshake version byte is not 3)")
        answer = b""
        if before < 1 + HANDSHAKE <= len(self._handshake):  # C1 is in: S0 S1 S2 (S2 echoes C1)
            c1 = bytes(self._handshake[1 : 1 + HANDSHAKE])
            answer = b"\x03" + c1[:4] + bytes(4) + os.urandom(HANDSHAKE - 8) + c1
        return answer + (self.feed(data[take:]) if len(data) > take else b"")

    def _on_message(self, message: Message) -> bytes:
        if self.publish is not None:
            if self.first_media is None and message.type_id in (MSG_AUDIO, MSG_VIDEO) and _is_frame(message):
                self.first_media = (message.type_id, message.timestamp)
            return b""
        command = command_of(message)
        if command is None:
            return b""
        if command.name == "connect":
            first = command.args[0] if command.args else None
            app = first.get("app") if isinstance(first, dict) else None
            self.app = app if isinstance(app, str) else None
            return _connected(command.transaction)
        if command.name == "publish":
            key = next((a for a in command.args if isinstance(a, str)), None)
            if key is None:
                raise RtmpProtocolError("publish without a stream name")
            self.publish = Publish(self.app, key, message.stream_id)
            self._reader.max_message = MAX_MEDIA
            return b""
        if command.name == "FCPublish":
            return _command(0, "onFCPublish", 0, None)
        if command.name == "createStream":
            self._stream_ids += 1 + (self._stream_ids == 1)  # FFmpeg's numbering: 0 and 2 reserved
            return _command(0, "_result", command.transaction, None, self._stream_ids)
        if command.name in ("releaseStream", "_checkbw"):
            return _command(0, "_result", command.transaction, None)
        return b""  # anything else is left unanswered, as FFmpeg leaves it

    def started(self) -> bytes:
        """The answer to `publish`, once FFmpeg has taken it: Stream Begin, Publish.Start."""
        assert self.publish is not None
        stream_id = self.publish.stream_id
        begin = _control(MSG_USER_CONTROL, struct.pack(">HI", 0, stream_id))
        status = {"level": "status", "code": "NetStream.Publish.Start", "description": "Publishing."}
        return begin + _command(stream_id, "onStatus", 0, None, status)

    def refused(self, why: str) -> bytes:
        """The answer to a `publish` that is refused: NetStream.Publish.BadName."""
        stream_id = self.publish.stream_id if self.publish is not None else 0
        status = {"level": "error", "code": "NetStream.Publish.BadName", "description": why}
        return _command(stream_id, "onStatus", 0, None, status)


def _connected(transaction: float) -> bytes:
    """What FFmpeg's listen mode answers `connect` with (rtmpproto.c, read_connect)."""
    properties = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31}
    information = {
        "level": "status",
        "code": "NetConnection.Connect.Success",
        "description": "Connection succeeded.",
        "objectEncoding": 0,
    }
    return (
        _control(MSG_WINDOW_ACK_SIZE, struct.pack(">I", WINDOW))
        + _control(MSG_SET_PEER_BANDWIDTH, struct.pack(">IB", WINDOW, 2))
        + _control(MSG_USER_CONTROL, struct.pack(">HI", 0, 0))
        + _control(MSG_SET_CHUNK_SIZE, struct.pack(">I", CHUNK_SIZE))
        + _command(0, "_result", transaction, properties, information)
    )


def _control(type_id: int, body: bytes) -> bytes:
    return write_message(Message(CONTROL_CSID, type_id, 0, 0, body), CHUNK_SIZE)


def _command(stream_id: int, *values: Any) -> bytes:
    return write_message(Message(COMMAND_CSID, MSG_AMF0_COMMAND, stream_id, 0, amf0(*values)), CHUNK_SIZE)


def _is_frame(message: Message) -> bool:
    """An FLV audio/video tag body carrying media, not a codec configuration."""
    body = message.body
    if len(body) < 2:
        return False
    if message.type_id == MSG_VIDEO:
        if body[0] & 0x80:  # enhanced RTMP: the packet type is in the low bits (0: config)
            return body[0] & 0x0F not in (0, 4)
        return body[0] & 0x0F != 7 or body[1] != 0  # AVC: packet type 0 is the avcC
    return body[0] >> 4 != 10 or body[1] != 0  # AAC: packet type 0 is the AudioSpecificConfig


# ---- towards FFmpeg -------------------------------------------------------------------------


def client_hello() -> bytes:
    """C0 C1 of our handshake with FFmpeg's listener (time and version zero, then random)."""
    return b"\x03" + bytes(8) + os.urandom(HANDSHAKE - 8)


def client_ack(server_hello: bytes) -> bytes:
    """C2 from S0 S1 S2: the echo of S1."""
    if len(server_hello) != 1 + 2 * HANDSHAKE or server_hello[0] != 3:
        raise RtmpProtocolError("FFmpeg's handshake is not RTMP")
    return server_hello[1 : 1 + HANDSHAKE]


class FfmpegAnswers:
    """Feed FFmpeg->publisher bytes (after S0 S1 S2); `feed` returns what the publisher gets."""

    def __init__(self) -> None:
        self._reader = ChunkReader(MAX_MEDIA)
        self.published = False  # FFmpeg sent NetStream.Publish.Start

    def feed(self, data: bytes) -> bytes:
        out = b""
        for message in self._reader.feed(data):
            if not self.published:
                self._expect_start(message)
            elif message.type_id != MSG_SET_CHUNK_SIZE:  # the publisher knows ours
                out += write_message(message, CHUNK_SIZE)
        return out

    def _expect_start(self, message: Message) -> None:
        command = command_of(message)
        if command is None:
            return
        info = next((a for a in command.args if isinstance(a, dict)), {})
        if command.name == "_error" or info.get("level") == "error":
            raise RtmpProtocolError(f"FFmpeg refused the publish ({info.get('code')})")
        if command.name == "onStatus" and info.get("code") == "NetStream.Publish.Start":
            self.published = True
