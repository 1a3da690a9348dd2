"""A hostile viewer's view of the data path: slow readers of a large hit cost a small buffer
each, not a copy of the object; a viewer who hangs up stops the pull from the origin."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from edge.app import build_edge_app

from .conftest import EdgeRig, edge_config

MIB = 1024 * 1024


def anon_rss() -> int:
    """This process's anonymous resident memory (the edge runs inside it), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


async def stalled_reader(url: str, path: str, read: int = 64 * 1024) -> asyncio.StreamWriter:
    return (await stalled_stream(url, path, read))[1]


async def stalled_stream(
    url: str, path: str, read: int = 64 * 1024
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A viewer that asks for `path`, reads `read` bytes and then stops reading."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: site.test\r\n\r\n".encode())
    await writer.drain()
    got = 0
    while got < read:
        chunk = await reader.read(read - got)
        assert chunk, "the edge closed the connection"
        got += len(chunk)
    return reader, writer


async def hang_up(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()  # a reset, as a viewer closing its tab mid-download
    await asyncio.sleep(0)


async def slow_readers_growth(rig: EdgeRig, path: str, readers: int) -> int:
    before = anon_rss()
    writers = [await stalled_reader(rig.url, path) for _ in range(readers)]
    await asyncio.sleep(0.5)  # long enough for an unbounded edge to have queued every body whole
    growth = anon_rss() - before
    for writer in writers:
        await hang_up(writer)
    return growth


async def test_slow_readers_of_a_large_memory_hit_hold_a_buffer_each_not_a_copy(
    rig_factory: Callable[..., Any],
) -> None:
    rig: EdgeRig = await rig_factory(edge={"max_object_bytes": 32 * MIB})
    rig.origin.set("/big.bin", bytes(range(256)) * (64 * 1024))  # 16 MiB
    assert len((await rig.get("/big.bin")).content) == 16 * MIB  # cached
    growth = await slow_readers_growth(rig, "/big.bin", 20)
    assert growth < 64 * MIB, f"20 stalled readers of a 16 MiB hit grew the edge by {growth / MIB:.0f} MiB"
    assert (await rig.get("/big.bin")).headers["x-cache"].startswith("Hit")


async def test_slow_readers_of_a_large_disk_hit_do_not_read_it_into_memory(
    rig_factory: Callable[..., Any], tmp_path: Path
) -> None:
    rig: EdgeRig = await rig_factory(
        edge={"max_object_bytes": 1 * MIB, "cache_bytes": 8 * MIB, "disk_path": str(tmp_path)}
    )
    body = bytes(range(256)) * (64 * 1024)  # 16 MiB: too large for memory, kept on disk
    rig.origin.set("/big.bin", body)
    assert (await rig.get("/big.bin")).content == body
    await rig.app.flow.disk.flush()
    again = await rig.get("/big.bin")
    assert again.content == body and again.headers["x-cache"].startswith("Hit")
    ranged = await rig.get("/big.bin", headers={"range": "bytes=1000-1999"})
    assert ranged.status_code == 206 and ranged.content == body[1000:2000]
    growth = await slow_readers_growth(rig, "/big.bin", 20)
    assert growth < 64 * MIB, f"20 stalled readers of a 16 MiB disk hit grew the edge by {growth / MIB:.0f} MiB"


class CountingOrigin:
    """A raw HTTP/1.1 origin streaming a large body, counting the bytes it managed to send."""

    def __init__(self, size: int, cache_control: str, gate: asyncio.Event | None = None) -> None:
        self.gate = gate  # when given, the origin sends one chunk, then waits for it
        self.size = size
        self.cache_control = cache_control
        self.sent = 0
        self.requests = 0
        self.ended = asyncio.Event()
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 128 * 1024)
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        writer.write(
            (
                f"HTTP/1.1 200 OK\r\ncontent-length: {self.size}\r\ncontent-type: video/mp2t\r\n"
                f"cache-control: {self.cache_control}\r\n\r\n"
            ).encode()
        )
        chunk = b"x" * (64 * 1024)
        try:
            while self.sent < self.size:
                writer.write(chunk)
                await writer.drain()
                self.sent += len(chunk)
                if self.gate is not None:
                    await self.gate.wait()
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.ended.set()


async def pull_and_hang_up(serve: Callable[..., Any], origin: CountingOrigin, **edge: Any) -> tuple[Any, str]:
    await origin.start()
    app = build_edge_app(edge_config(origin.url, edge=edge), "edge-test")
    edge_srv = await serve(app, name="edge")
    writer = await stalled_reader(edge_srv.url, "/feed.ts")
    await hang_up(writer)
    await asyncio.wait_for(origin.ended.wait(), 10)  # the edge closed the origin's stream
    await origin.close()
    return app, edge_srv.url


async def test_a_viewer_hanging_up_a_pass_through_stops_the_origin_pull(serve: Callable[..., Any], caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="cdn.access")
    origin = CountingOrigin(256 * MIB, "no-store")
    app, _ = await pull_and_hang_up(serve, origin)
    assert origin.sent < 16 * MIB, f"the edge pulled {origin.sent / MIB:.0f} MiB after the viewer left"
    line = await _logged(app, caplog, "/feed.ts")
    sent = int(line.split("bytes=")[1].split()[0])
    assert "cache=client-gone" in line and "status=200" in line and 0 < sent < 16 * MIB, line


async def _logged(app: Any, caplog: Any, path: str) -> str:
    """The access log line of `path`, once the request's handler has ended and written it."""
    for _ in range(200):
        app.flow.access.flush()
        lines = [line for r in caplog.records for line in r.getMessage().splitlines() if f" {path} " in line]
        if lines:
            return str(lines[0])
        await asyncio.sleep(0.02)
    raise AssertionError(f"no access log line for {path}")


async def test_a_fill_every_viewer_left_stops_after_abandoned_fill_bytes(serve: Callable[..., Any]) -> None:
    origin = CountingOrigin(256 * MIB, "max-age=60")
    await pull_and_hang_up(
        serve, origin, cache_bytes=512 * MIB, max_object_bytes=512 * MIB, abandoned_fill_bytes=4 * MIB
    )
    assert origin.requests == 1 and origin.sent < 24 * MIB, (
        f"the edge went on filling {origin.sent / MIB:.0f} MiB nobody waits for"
    )


async def test_a_fill_another_viewer_still_reads_goes_on_when_one_leaves(serve: Callable[..., Any]) -> None:
    gate = asyncio.Event()
    origin = CountingOrigin(24 * MIB, "max-age=60", gate=gate)
    await origin.start()
    app = build_edge_app(edge_config(origin.url, edge={"abandoned_fill_bytes": 0}), "edge-test")
    edge = await serve(app, name="edge")
    _, leaving = await stalled_stream(edge.url, "/feed.ts")
    staying, _ = await stalled_stream(edge.url, "/feed.ts")
    await hang_up(leaving)
    gate.set()
    rest = 0
    while chunk := await staying.read(1024 * 1024):
        rest += len(chunk)
        if rest >= 24 * MIB - 64 * 1024:
            break
    assert origin.requests == 1 and origin.sent == 24 * MIB
    await asyncio.wait_for(origin.ended.wait(), 5)
    await origin.close()
    async with httpx.AsyncClient() as http:
        again = await http.get(edge.url + "/feed.ts", headers={"host": "site.test"})
    assert again.headers["x-cache"].startswith("Hit") and len(again.content) == 24 * MIB


async def test_a_range_of_a_large_miss_still_fills_the_whole_object(serve: Callable[..., Any]) -> None:
    origin = CountingOrigin(24 * MIB, "max-age=60")
    await origin.start()
    app = build_edge_app(edge_config(origin.url, edge={"abandoned_fill_bytes": 0}), "edge-test")
    edge = await serve(app, name="edge")
    async with httpx.AsyncClient(headers={"host": "site.test"}) as http:
        first = await http.get(edge.url + "/feed.ts", headers={"range": "bytes=0-99"})
        assert first.status_code == 206 and len(first.content) == 100
        await asyncio.wait_for(origin.ended.wait(), 5)
        again = await http.get(edge.url + "/feed.ts", headers={"range": "bytes=100-199"})
    await origin.close()
    assert again.status_code == 206 and again.headers["x-cache"].startswith("Hit")
    assert origin.requests == 1 and origin.sent == 24 * MIB
