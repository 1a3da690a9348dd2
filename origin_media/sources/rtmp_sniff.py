"""Read the RTMP commands a client sends, without answering them: enough to learn the app
and the stream key before any of it reaches FFmpeg. Pure; fed bytes as they arrive.

Why: FFmpeg's RTMP listen mode accepts any stream key (a mismatch is only a log warning) and
reports neither app nor key through PyAV, so the origin sits in front of it as a relay that
reads the client's side of the conversation (handshake, chunk stream, AMF0 commands) and
decides before forwarding the command that names the key.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

HANDSHAKE_BYTES = 1 + 1536 + 1536  # C0 + C1 + C2
MSG_SET_CHUNK_SIZE = 1
MSG_AUDIO, MSG_VIDEO = 8, 9
MSG_AMF3_COMMAND = 17
MSG_AMF0_COMMAND = 20
KEY_COMMANDS = ("releaseStream", "FCPublish", "publish")


class RtmpProtocolError(ValueError):
    pass


@dataclass
class Command:
    name: str
    args: list[Any]


@dataclass
class _ChunkStream:
    timestamp: int = 0  # of the message under way, as FFmpeg's reader computes it
    ts_field: int = 0  # the last timestamp field: absolute (type 0) or a delta
    length: int = 0
    type_id: int = 0
    extended: bool = False
    body: bytearray = field(default_factory=bytearray)


@dataclass
class Publish:
    app: str | None
    key: str


class CommandSniffer:
    """Feed client->server bytes; returns what was learnt (a `Publish` once a key is named)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._handshake_left = HANDSHAKE_BYTES
        self._chunk_size = 128
        self._streams: dict[int, _ChunkStream] = {}
        self.app: str | None = None
        # (message type, RTMP timestamp in ms) of the first audio/video frame, once it is whole
        self.first_media: tuple[int, int] | None = None
        self._message_timestamp = 0

    def feed(self, data: bytes) -> Publish | None:
        self._buffer += data
        if self._handshake_left:
            if self._handshake_left == HANDSHAKE_BYTES and self._buffer and self._buffer[0] != 3:
                raise RtmpProtocolError("not RTMP (handshake version byte is not 3)")
            skipped = min(self._handshake_left, len(self._buffer))
            del self._buffer[:skipped]
            self._handshake_left -= skipped
        while not self._handshake_left:
            message = self._next_message()
            if message is None:
                return None
            found = self._on_message(*message)
            if found is not None:
                return found
        return None

    # ---- chunk stream ----------------------------------------------------------------------

    def _next_message(self) -> tuple[int, bytes] | None:
        """Consume whole chunks; return (type, body) when a message completes."""
        while True:
            parsed = self._parse_chunk()
            if parsed is None or isinstance(parsed, tuple):
                return parsed

    def _parse_chunk(self) -> tuple[int, bytes] | bool | None:
        """One chunk: None if not all here yet, True if consumed mid-message, else the
        message it completed."""
        buf = self._buffer
        if not buf:
            return None
        fmt, csid, pos = buf[0] >> 6, buf[0] & 0x3F, 1
        if csid < 2:
            extra = 1 + csid
            if len(buf) < 1 + extra:
                return None
            csid = 64 + buf[1] + (buf[2] * 256 if csid == 1 else 0)
            pos += extra
        header = (11, 7, 3, 0)[fmt]
        if len(buf) < pos + header:
            return None
        stream = self._streams.setdefault(csid, _ChunkStream())
        ts_field = int.from_bytes(buf[pos : pos + 3], "big") if fmt < 3 else None
        if fmt <= 1:
            length = int.from_bytes(buf[pos + 3 : pos + 6], "big")
            type_id = buf[pos + 6]
        pos += header
        extended = ts_field == 0xFFFFFF if ts_field is not None else stream.extended
        if extended:
            if len(buf) < pos + 4:
                return None
            if ts_field is not None:
                ts_field = int.from_bytes(buf[pos : pos + 4], "big")
            pos += 4
        if fmt <= 1:
            if length > 1 << 20:
                raise RtmpProtocolError("RTMP message larger than 1 MiB before publishing")
            stream.length, stream.type_id = length, type_id
        take = min(self._chunk_size, stream.length - len(stream.body))
        if len(buf) < pos + take:
            return None
        stream.extended = extended
        if not stream.body:  # a new message: its timestamp (rtmppkt.c's arithmetic)
            delta = stream.ts_field if ts_field is None else ts_field
            stream.timestamp = delta if fmt == 0 else stream.timestamp + delta
            stream.ts_field = delta
        stream.body += buf[pos : pos + take]
        del buf[: pos + take]
        if len(stream.body) < stream.length:
            return True
        body = bytes(stream.body)
        stream.body.clear()
        self._message_timestamp = stream.timestamp
        return stream.type_id, body

    # ---- messages --------------------------------------------------------------------------

    def _on_message(self, type_id: int, body: bytes) -> Publish | None:
        if type_id == MSG_SET_CHUNK_SIZE and len(body) >= 4:
            self._chunk_size = struct.unpack(">I", body[:4])[0] & 0x7FFFFFFF
            if not 1 <= self._chunk_size <= 1 << 24:
                raise RtmpProtocolError("bad chunk size")
            return None
        if type_id in (MSG_AUDIO, MSG_VIDEO):
            if self.first_media is None and _is_frame(type_id, body):
                self.first_media = (type_id, self._message_timestamp)
            return None
        if type_id == MSG_AMF3_COMMAND and body[:1] == b"\x00":
            body, type_id = body[1:], MSG_AMF0_COMMAND
        if type_id != MSG_AMF0_COMMAND:
            return None
        command = parse_command(body)
        if command.name == "connect" and command.args and isinstance(command.args[0], dict):
            app = command.args[0].get("app")
            self.app = app if isinstance(app, str) else None
        elif command.name in KEY_COMMANDS:
            key = next((a for a in command.args if isinstance(a, str)), None)
            if key is not None:
                return Publish(self.app, key)
        return None


def _is_frame(type_id: int, body: bytes) -> bool:
    """An FLV audio/video tag body carrying media, not a codec configuration."""
    if len(body) < 2:
        return False
    if type_id == MSG_VIDEO:
        if body[0] & 0x80:  # enhanced RTMP: the packet type is in the low bits (0: config)
            return body[0] & 0x0F not in (0, 4)
        return body[0] & 0x0F != 7 or body[1] != 0  # AVC: packet type 0 is the avcC
    return body[0] >> 4 != 10 or body[1] != 0  # AAC: packet type 0 is the AudioSpecificConfig


def parse_command(body: bytes) -> Command:
    """An AMF0 command: name, transaction id, then arguments (command object first)."""
    values, pos = [], 0
    while pos < len(body):
        value, pos = _amf0(body, pos)
        values.append(value)
    if not values or not isinstance(values[0], str):
        raise RtmpProtocolError("command without a name")
    return Command(values[0], values[2:])


def _amf0(data: bytes, pos: int) -> tuple[Any, int]:
    marker = data[pos]
    pos += 1
    if marker == 0:
        return struct.unpack(">d", data[pos : pos + 8])[0], pos + 8
    if marker == 1:
        return bool(data[pos]), pos + 1
    if marker == 2:
        return _string(data, pos)
    if marker in (3, 8):
        if marker == 8:
            pos += 4  # ECMA array: approximate count, then the same layout as an object
        return _object(data, pos)
    if marker in (5, 6):
        return None, pos
    raise RtmpProtocolError(f"unsupported AMF0 marker {marker}")


def _string(data: bytes, pos: int) -> tuple[str, int]:
    size = int.from_bytes(data[pos : pos + 2], "big")
    end = pos + 2 + size
    if end > len(data):
        raise RtmpProtocolError("truncated AMF0 string")
    return data[pos + 2 : end].decode("utf-8", "replace"), end


def _object(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while pos + 3 <= len(data):
        if data[pos : pos + 3] == b"\x00\x00\x09":
            return result, pos + 3
        key, pos = _string(data, pos)
        result[key], pos = _amf0(data, pos)
    raise RtmpProtocolError("unterminated AMF0 object")
