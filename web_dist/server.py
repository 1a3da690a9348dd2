"""Run ASGI apps on real sockets: one helper for `cdn` and for the tests.

A server is bound before it is reported, so the port it prints (or hands a test) is already
accepting connections; port 0 picks an ephemeral port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import uvicorn


def parse_listen(listen: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:port") into its parts."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {listen!r} is not HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; raises OSError with the address when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it a body sent after its headers waits ~40 ms for delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _QuietServer(uvicorn.Server):
    """Leaves signals to the caller: one process may run several servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class RunningServer:
    """A uvicorn server serving one app on one bound socket."""

    name: str
    host: str
    port: int
    server: uvicorn.Server
    task: asyncio.Task[None]
    sock: socket.socket = field(repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 10)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
        self.sock.close()


async def start_server(app: Any, listen: str = "127.0.0.1:0", *, name: str = "server") -> RunningServer:
    """Start `app` on `listen` and return once it accepts connections."""
    host, port = parse_listen(listen)
    sock = bind(host, port)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="none",
        http="httptools",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=3,
        # Apps set their own Date and Server: an edge passes the origin's through.
        server_header=False,
        date_header=False,
        # The client is the peer: whose X-Forwarded-For to believe is each app's decision
        # (the edge's `trusted_proxies`), not uvicorn's default of trusting loopback.
        proxy_headers=False,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"serve-{name}")
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error
            raise RuntimeError(f"{name} stopped during start-up")
        await asyncio.sleep(0.005)
    return RunningServer(name, host, sock.getsockname()[1], server, task, sock)
