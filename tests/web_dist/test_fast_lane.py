"""The fast lane (web_dist/server/fast_lane.py) on a real socket: answers from heads, hands the
rest to uvicorn in order, takes idle connections back, guards heads, tells what was sent."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from web_dist.server import RunningServer, start_server
from web_dist.server.fast_lane import QuickAnswer

BIG = bytes(range(256)) * (32 * 1024)  # 8 MiB


class Quick:
    """A shortcut answering /q*, /big and /boom-free paths; counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[bytes] = []
        self.unsent: list[int] = []

    def __call__(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], client: str
    ) -> QuickAnswer | None:
        self.asked.append(target)
        if target == b"/boom":
            raise RuntimeError("a bug in the shortcut")
        if target == b"/big":
            head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(BIG)
            return QuickAnswer((head,), BIG if method == "GET" else b"", self.unsent.append)
        if not target.startswith(b"/q"):
            return None
        body = b"quick " + target
        return QuickAnswer((b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body),), body)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(0.2)
    body = f"app {scope['path']}".encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def lane() -> AsyncIterator[tuple[RunningServer, Quick]]:
    quick = Quick()
    server = await start_server(app, name="lane", shortcut=quick, header_timeout=1.0, max_header_bytes=4096)
    yield server, quick
    await server.stop()


async def _connect(server: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def _answers(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        out.append(await asyncio.wait_for(reader.readexactly(length), 5))
    return out


def _get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: x\r\n{extra}\r\n".encode()


async def test_pipelined_quick_and_app_answers_keep_their_order(lane: tuple[RunningServer, Quick]) -> None:
    server, quick = lane
    reader, writer = await _connect(server)
    writer.write(_get("/q1") + _get("/slow") + _get("/q2") + _get("/other") + _get("/q3"))
    answers = await _answers(reader, 5)
    # after the first the app takes them all (uvicorn's pipeline), in order
    assert [a.split()[-1] for a in answers] == [b"/q1", b"/slow", b"/q2", b"/other", b"/q3"]
    assert answers[0] == b"quick /q1"
    writer.write(_get("/q4"))  # idle again: the lane's
    assert await _answers(reader, 1) == [b"quick /q4"]
    writer.close()


async def test_a_connection_comes_back_to_the_lane_once_idle(lane: tuple[RunningServer, Quick]) -> None:
    server, quick = lane
    reader, writer = await _connect(server)
    for path, expected in [("/slow", b"app /slow"), ("/q1", b"quick /q1"), ("/x", b"app /x"), ("/q2", b"quick /q2")]:
        writer.write(_get(path))
        assert await _answers(reader, 1) == [expected]
    assert quick.asked == [b"/slow", b"/q1", b"/x", b"/q2"]  # each asked of the lane, none skipped
    writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /q1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"GET /q1 HTTP/1.0\r\nhost: x\r\n\r\n",
        b"GET /q1 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
        b"POST /q1 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc",
        b"GET /boom HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ],
    ids=["connection-close", "http-1.0", "content-length", "post", "shortcut-fault"],
)
async def test_what_the_lane_does_not_take_the_app_answers(
    lane: tuple[RunningServer, Quick], request_bytes: bytes
) -> None:
    server, _ = lane
    reader, writer = await _connect(server)
    writer.write(request_bytes)
    path = request_bytes.split()[1]
    assert await _answers(reader, 1) == [b"app " + path]
    if b"close" in request_bytes or b"HTTP/1.0" in request_bytes:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and the connection closes as asked
    writer.close()


async def test_a_head_dripped_past_the_deadline_gets_408(lane: tuple[RunningServer, Quick]) -> None:
    server, _ = lane
    reader, writer = await _connect(server)
    writer.write(b"GET /q1 HTTP/1.1\r\nhost")
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 408")


async def test_a_head_over_the_cap_gets_431(lane: tuple[RunningServer, Quick]) -> None:
    server, _ = lane
    reader, writer = await _connect(server)
    writer.write(b"GET /q1 HTTP/1.1\r\nx-long: " + b"a" * 8000)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 431")


async def test_a_long_head_sent_a_byte_at_a_time_is_still_answered(lane: tuple[RunningServer, Quick]) -> None:
    server, _ = lane
    reader, writer = await _connect(server)
    request = _get("/q1", "x-pad: " + "p" * 3000 + "\r\n")
    for i in range(0, len(request), 7):
        writer.write(request[i : i + 7])
        await writer.drain()
    assert await _answers(reader, 1) == [b"quick /q1"]
    writer.close()


async def test_a_large_answer_says_what_really_went_out(lane: tuple[RunningServer, Quick]) -> None:
    server, quick = lane
    reader, writer = await _connect(server)
    writer.write(_get("/big"))
    assert await _answers(reader, 1) == [BIG]
    assert quick.unsent == [0]
    # a viewer reading 64 KiB and hanging up: the rest is reported unsent
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(_get("/big"))
    got = 0
    while got < 64 * 1024:
        got += len(await asyncio.to_thread(sock.recv, 64 * 1024))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # a reset: the viewer is gone
    for _ in range(100):
        if len(quick.unsent) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(quick.unsent) == 2 and 0 < quick.unsent[1] <= len(BIG) - 64 * 1024, quick.unsent
    writer.close()
