"""RTMP's chunk stream and AMF0, both ways: messages read from chunks as bytes arrive, and
messages written as chunks. Pure.

Reading follows FFmpeg's rtmppkt.c (the timestamp arithmetic of header types 0-3, extended
timestamps repeated on continuation chunks); writing always uses a full type-0 header, so a
peer needs no state from earlier messages but the chunk size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

MSG_SET_CHUNK_SIZE = 1
MSG_ABORT = 2
MSG_USER_CONTROL = 4
MSG_WINDOW_ACK_SIZE = 5
MSG_SET_PEER_BANDWIDTH = 6
MSG_AUDIO, MSG_VIDEO = 8, 9
MSG_AMF3_COMMAND = 17
MSG_AMF0_COMMAND = 20
MAX_CHUNK_SIZE = 1 << 24


class RtmpProtocolError(ValueError):
    pass


@dataclass(frozen=True)
class Message:
    csid: int
    type_id: int
    stream_id: int
    timestamp: int
    body: bytes


@dataclass
class Command:
    name: str
    transaction: float
    args: list[Any]  # the command object (or null) first


@dataclass
class _ChunkStream:
    timestamp: int = 0  # of the message under way, as FFmpeg's reader computes it
    ts_field: int = 0  # the last timestamp field: absolute (type 0) or a delta
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    body: bytearray = field(default_factory=bytearray)


class ChunkReader:
    """Feed one direction's bytes (after the handshake); `messages()` yields whole messages.
    Set Chunk Size is applied here; a message longer than `max_message` is an error."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self.chunk_size = 128
        self._buffer = bytearray()
        self._streams: dict[int, _ChunkStream] = {}

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        out = []
        while (parsed := self._parse_chunk()) is not None:
            if isinstance(parsed, Message):
                self._on_control(parsed)
                out.append(parsed)
        return out

    def _on_control(self, message: Message) -> None:
        if message.type_id == MSG_SET_CHUNK_SIZE:
            if len(message.body) < 4:
                raise RtmpProtocolError("short Set Chunk Size")
            size = struct.unpack(">I", message.body[:4])[0] & 0x7FFFFFFF
            if not 1 <= size <= MAX_CHUNK_SIZE:
                raise RtmpProtocolError("bad chunk size")
            self.chunk_size = size

    def _parse_chunk(self) -> Message | bool | None:
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
        stream = self._streams.get(csid) or _ChunkStream()
        ts_field = int.from_bytes(buf[pos : pos + 3], "big") if fmt < 3 else None
        if fmt <= 1:
            length, type_id = int.from_bytes(buf[pos + 3 : pos + 6], "big"), buf[pos + 6]
            if length > self.max_message:
                raise RtmpProtocolError(f"RTMP message of {length} bytes (at most {self.max_message} here)")
            if stream.body:
                raise RtmpProtocolError("a new message header in the middle of a message")
        if fmt == 0:
            stream_id = int.from_bytes(buf[pos + 7 : pos + 11], "little")
        pos += header
        extended = ts_field == 0xFFFFFF if ts_field is not None else stream.extended
        if extended:
            if len(buf) < pos + 4:
                return None
            if ts_field is not None:
                ts_field = int.from_bytes(buf[pos : pos + 4], "big")
            pos += 4
        if fmt <= 1:
            stream.length, stream.type_id = length, type_id
        if fmt == 0:
            stream.stream_id = stream_id
        take = min(self.chunk_size, stream.length - len(stream.body))
        if len(buf) < pos + take:
            return None
        self._streams[csid] = stream
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
        return Message(csid, stream.type_id, stream.stream_id, stream.timestamp & 0xFFFFFFFF, body)


def write_message(message: Message, chunk_size: int) -> bytes:
    """`message` as chunks: a type-0 header, then type-3 continuations."""
    body, ts = message.body, message.timestamp & 0xFFFFFFFF
    extended = ts >= 0xFFFFFF
    ext = struct.pack(">I", ts) if extended else b""
    header = (
        _basic_header(0, message.csid)
        + min(ts, 0xFFFFFF).to_bytes(3, "big")
        + len(body).to_bytes(3, "big")
        + bytes([message.type_id])
        + message.stream_id.to_bytes(4, "little")
        + ext
    )
    pieces = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)] or [b""]
    more = _basic_header(3, message.csid) + ext
    return header + pieces[0] + b"".join(more + piece for piece in pieces[1:])


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes([fmt << 6 | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1]) + (csid - 64).to_bytes(2, "little")


# ---- AMF0 -------------------------------------------------------------------------------------


def command_of(message: Message) -> Command | None:
    """The AMF0 command a message carries (AMF3 commands start with an AMF0 body), if any."""
    body = message.body
    if message.type_id == MSG_AMF3_COMMAND and body[:1] == b"\x00":
        body = body[1:]
    elif message.type_id != MSG_AMF0_COMMAND:
        return None
    return parse_command(body)


def parse_command(body: bytes) -> Command:
    """An AMF0 command: name, transaction id, then arguments (command object first)."""
    values, pos = [], 0
    try:
        while pos < len(body):
            value, pos = _amf0(body, pos)
            values.append(value)
    except (IndexError, struct.error) as exc:
        raise RtmpProtocolError(f"truncated AMF0 value ({exc})") from exc
    if not values or not isinstance(values[0], str):
        raise RtmpProtocolError("command without a name")
    transaction = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
    return Command(values[0], transaction, values[2:])


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


def amf0(*values: Any) -> bytes:
    """AMF0 encoding of str, float/int, bool, None and dicts of those."""
    return b"".join(_encode(v) for v in values)


def _encode(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x01" + bytes([value])
    if isinstance(value, int | float):
        return b"\x00" + struct.pack(">d", float(value))
    if isinstance(value, str):
        raw = value.encode()
        return b"\x02" + struct.pack(">H", len(raw)) + raw
    if value is None:
        return b"\x05"
    if isinstance(value, dict):
        fields = b"".join(struct.pack(">H", len(k.encode())) + k.encode() + _encode(v) for k, v in value.items())
        return b"\x03" + fields + b"\x00\x00\x09"
    raise TypeError(f"no AMF0 encoding for {type(value).__name__}")
