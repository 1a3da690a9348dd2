"""A hand-made RTMP client for the tests: the bytes a publisher sends, built by hand, and the
start of the conversation over a real socket (handshake, `connect`), so a test can stop
anywhere a real publisher could, or send what no real publisher would."""

from __future__ import annotations

import asyncio
import os
import struct

HANDSHAKE = 1536


def amf_string(text: str) -> bytes:
    return b"\x02" + struct.pack(">H", len(text)) + text.encode()


def amf_command(name: str, *args: bytes) -> bytes:
    return amf_string(name) + b"\x00" + struct.pack(">d", 1.0) + b"".join(args)


def chunks(body: bytes, type_id: int, chunk_size: int, csid: int = 3) -> bytes:
    header = bytes([csid]) + (0).to_bytes(3, "big") + len(body).to_bytes(3, "big") + bytes([type_id]) + bytes(4)
    pieces = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
    return header + pieces[0] + b"".join(bytes([0xC0 | csid]) + p for p in pieces[1:])


def connect_message(app: str = "live") -> bytes:
    connect_obj = b"\x03" + struct.pack(">H", 3) + b"app" + amf_string(app) + b"\x00\x00\x09"
    return chunks(amf_command("connect", connect_obj), 20, 128)


def publish_message(key: str, app: str = "live") -> bytes:
    return chunks(amf_command("publish", b"\x05", amf_string(key), amf_string(app)), 20, 128, csid=8)


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """C0 C1, then S0 S1 S2 read, then C2 (the echo of S1)."""
    writer.write(b"\x03" + bytes(8) + os.urandom(HANDSHAKE - 8))
    answer = await reader.readexactly(1 + 2 * HANDSHAKE)
    writer.write(answer[1 : 1 + HANDSHAKE])
    await writer.drain()


async def read_until(reader: asyncio.StreamReader, marker: bytes, limit: float = 5.0) -> bytes:
    """What the server sends until `marker` appears in it (its chunk headers left in)."""
    seen = b""
    async with asyncio.timeout(limit):
        while marker not in seen:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError(f"closed before {marker!r}")
            seen += data
    return seen


async def connected(port: int, host: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client past the handshake and `connect`, which the server has answered."""
    reader, writer = await asyncio.open_connection(host, port)
    await handshake(reader, writer)
    writer.write(connect_message())
    await read_until(reader, b"NetConnection.Connect.Success")
    return reader, writer
