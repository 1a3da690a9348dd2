"""A hostile viewer's view of the data path: slow readers of a large hit cost a small buffer
each, not a copy of the object; a viewer who hangs up stops the pull from the origin."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    return writer


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


async def test_slow_readers_of_a_large_memory_hit_hold_a_buffer_each_not_a_copy(rig_factory: Callable[..., Any]) -> None:
    rig: EdgeRig = await rig_factory(edge={"max_object_bytes": 32 * MIB})
    rig.origin.set("/big.bin", bytes(range(256)) * (64 * 1024))  # 16 MiB
    assert len((await rig.get("/big.bin")).content) == 16 * MIB  # cached
    growth = await slow_readers_growth(rig, "/big.bin", 20)
    assert growth < 64 * MIB, f"20 stalled readers of a 16 MiB hit grew the edge by {growth / MIB:.0f} MiB"
    assert (await rig.get("/big.bin")).headers["x-cache"].startswith("Hit")


async def test_slow_readers_of_a_large_disk_hit_do_not_read_it_into_memory(rig_factory: Callable[..., Any], tmp_path: Path) -> None:
    rig: EdgeRig = await rig_factory(edge={"max_object_bytes": 1 * MIB, "cache_bytes": 8 * MIB, "disk_path": str(tmp_path)})
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
