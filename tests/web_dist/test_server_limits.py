"""The uvicorn servers (origins, router, admin, control) time out slow request heads and cap
their size: a slowloris client or a megabyte of headers gets 408 / 431 and the connection closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from web_dist.server import RunningServer, start_server


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(Starlette(routes=[Route("/", hello)]), header_timeout=1.0, max_header_bytes=8192)
    yield running
    await running.stop()


async def answer(reader: asyncio.StreamReader, within: float) -> bytes:
    return await asyncio.wait_for(reader.read(65536), within)


async def test_a_head_dripped_byte_by_byte_gets_408(server: RunningServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n")
    got = b""
    for i in range(20):  # 6 s of a header line every 0.3 s: never finished
        writer.write(f"x-drip-{i}: y\r\n".encode())
        try:
            got = await answer(reader, 0.3)
        except TimeoutError:
            continue
        break
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert await answer(reader, 2) == b"", "the connection is closed"
    writer.close()


async def test_a_huge_head_gets_431(server: RunningServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n" + b"x-big: " + b"a" * 20000 + b"\r\n")
    got = await answer(reader, 5)
    assert got.startswith(b"HTTP/1.1 431 "), got
    writer.close()


async def test_a_silent_connection_is_closed_but_a_keep_alive_one_is_not(server: RunningServer) -> None:
    silent_r, silent_w = await asyncio.open_connection("127.0.0.1", server.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
    writer.write(request)
    assert (await answer(reader, 5)).startswith(b"HTTP/1.1 200 ")
    assert await answer(silent_r, 3) == b""
    await asyncio.sleep(1.5)  # idle between requests past the head deadline: keep-alive's own timeout rules
    writer.write(request)
    assert (await answer(reader, 5)).startswith(b"HTTP/1.1 200 ")
    writer.close()
    silent_w.close()
