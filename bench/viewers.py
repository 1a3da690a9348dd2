"""Hostile viewers of the edge (issue 13): many slow readers of one large hit, and a viewer who
hangs up a large pass-through. Shared pieces: an origin that counts the bytes it managed to
send, an edge child process in front of it, and a viewer on a raw socket."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

from bench.procs import Child, Children, free_port, wait_http, wait_ready
from bench.stack import BIN

EDGE = "viewers-edge"
CHUNK = 64 * 1024


class CountingOrigin:
    """A raw HTTP/1.1 origin on its own thread: every GET is `size` bytes with `cache_control`;
    `sent` counts the bytes each write got into the socket (drained) before the peer left."""

    def __init__(self, size: int, cache_control: str) -> None:
        self.size = size
        self.cache_control = cache_control
        self.sent = 0
        self.requests = 0
        self.open_streams = 0
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server
        self._thread = threading.Thread(target=self._run, name="counting-origin", daemon=True)

    def __enter__(self) -> CountingOrigin:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 128 * 1024)
        try:
            while True:  # keep-alive: the edge pools its origin connections
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                self.open_streams += 1
                try:
                    writer.write(
                        (
                            f"HTTP/1.1 200 OK\r\ncontent-length: {self.size}\r\n"
                            f"content-type: application/octet-stream\r\n"
                            f"cache-control: {self.cache_control}\r\n\r\n"
                        ).encode()
                    )
                    left = self.size
                    while left > 0:
                        writer.write(b"x" * min(CHUNK, left))
                        await writer.drain()
                        self.sent += min(CHUNK, left)
                        left -= CHUNK
                finally:
                    self.open_streams -= 1
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):  # peer left, or shutdown
            pass
        finally:
            writer.close()


def start_edge(children: Children, folder: Path, origin_port: int, **edge: object) -> tuple[Child, int]:
    port = free_port()
    extra = "".join(f"{k} = {v}\n" for k, v in edge.items())
    config = folder / "viewers.toml"
    config.write_text(f"""\
[origins.o]
url = "http://127.0.0.1:{origin_port}"
read_timeout = 60

[edges.{EDGE}]
listen = "127.0.0.1:{port}"
{extra}
[distributions.site]
domains = ["127.0.0.1"]
origin = "o"
""")
    child = children.spawn(
        "edge", [str(BIN / "cdn"), "--log-level", "warning", "edge", "--config", str(config), "--name", EDGE]
    )
    wait_http(child, port, "/_cdn/health")
    wait_ready(child, "ready edge")  # every worker listening (the leader answers first)
    return child, port


async def open_viewer(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A viewer with a small receive window, so the edge, not the kernel, holds what it does not read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def read_at(reader: asyncio.StreamReader, rate: int, seconds: float) -> int:
    """Read at about `rate` bytes a second for `seconds`; the bytes read."""
    got = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < seconds:
        chunk = await reader.read(min(CHUNK, rate // 10 or 1))
        if not chunk:
            break
        got += len(chunk)
        await asyncio.sleep(max(0.0, got / rate - (loop.time() - start)))
    return got
