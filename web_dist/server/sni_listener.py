"""An HTTPS listener with certificates chosen by SNI, served by Hypercorn: h2 and http/1.1.

granian takes one certificate per listener and has no SNI hook; Hypercorn serves on asyncio
with Python's `ssl`, so the listener's SSLContext is SniCertificates' default one, whose
`sni_callback` picks each handshake's certificate (web_dist.server.sni), and its ALPN offers
h2 and http/1.1. Reloading a pair loads it into its live context: new handshakes get it,
nothing is cut.

The uvicorn servers' guards, in Hypercorn's terms: a connection is idle from its start and
between requests, and closed after `header_timeout` idle, so a request head dripped byte by
byte has that long to arrive whole (and a keep-alive connection is closed after that long
without a request); a head (h11) or header list (h2) over `max_header_bytes` is refused; the
TLS handshake has `header_timeout` too. No Server or Date header is added (the edge passes
the origin's) and no proxy header is believed (Hypercorn reads none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

import h2.exceptions
from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets
from hypercorn.logging import Logger
from hypercorn.protocol.h2 import H2Protocol

from web_dist.server.sni import SniCertificates

BACKLOG = 1024  # Hypercorn calls listen() again on the socket it is given, with this
GRACEFUL_TIMEOUT = 3.0  # seconds requests in flight get to finish at a stop


def _release_streams_left_mid_body() -> None:
    """Hypercorn 0.18.0's h2, when a connection closes before a response has ended (a viewer
    closing its tab mid-download), leaves the stream's send buffer as it is: an app sending a
    body larger than the viewer's flow-control window waits in `send` forever (it is told
    http.disconnect but never returns to look), and so does the connection's task. Here such a
    stream is reset and its buffer closed: the app's `send` returns and later ones are dropped,
    as on HTTP/1.1 (tests/edge/test_sni.py, a viewer leaving mid-download)."""
    close_stream = H2Protocol._close_stream
    if getattr(close_stream, "releases_buffers", False):
        return

    async def _close_stream(self: H2Protocol, stream_id: int) -> None:
        await close_stream(self, stream_id)
        buffer = self.stream_buffers.get(stream_id)
        if buffer is None or buffer.complete:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):  # closed by the viewer already
            self.connection.reset_stream(stream_id)
        await buffer.close()
        if not self.closed:
            await self._flush()

    _close_stream.releases_buffers = True  # type: ignore[attr-defined]
    H2Protocol._close_stream = _close_stream  # type: ignore[method-assign]


_release_streams_left_mid_body()


class _QuietLogger(Logger):
    """Warnings and errors only (to the "hypercorn.error" logger): not "Running on ..."."""

    async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        pass

    async def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        pass


class _SniConfig(Config):
    """Hypercorn's settings for one listener: its socket as it is bound, the SNI contexts."""

    def __init__(
        self, sock: socket.socket, certificates: SniCertificates, header_timeout: float, max_header_bytes: int
    ) -> None:
        self._sock = sock
        self._certificates = certificates
        self.ready = asyncio.Event()
        self.logger_class = _QuietLogger
        self.errorlog = logging.getLogger("hypercorn.error")
        self.accesslog = None  # the edge writes its own access log
        self.include_server_header = False
        self.include_date_header = False
        self.keep_alive_timeout = header_timeout
        self.ssl_handshake_timeout = header_timeout
        self.h11_max_incomplete_size = max_header_bytes
        self.h2_max_header_list_size = max_header_bytes
        self.read_timeout = None  # a viewer downloading sends nothing for as long as it reads
        self.backlog = BACKLOG
        self.graceful_timeout = GRACEFUL_TIMEOUT

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._certificates.default

    def create_sockets(self) -> Sockets:
        # Called once the app's lifespan has started, just before Hypercorn accepts: the
        # socket already listens, so a client connecting now waits in its backlog.
        self.ready.set()
        # A duplicate: Hypercorn closes the socket it serves when it stops.
        return Sockets(secure_sockets=[self._sock.dup()], insecure_sockets=[], quic_sockets=[])


class SniServer:
    """A running Hypercorn server; `stop()` starts its graceful shutdown (await its task)."""

    def __init__(self) -> None:
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def stopped(self) -> None:
        await self._stopping.wait()


async def serve_sni(
    app: Any,
    sock: socket.socket,
    name: str,
    certificates: SniCertificates,
    header_timeout: float,
    max_header_bytes: int,
) -> tuple[SniServer, asyncio.Task[None]]:
    """Hypercorn serving `app` over TLS on `sock` (left open), once it accepts; and its task."""
    config = _SniConfig(sock, certificates, header_timeout, max_header_bytes)
    server = SniServer()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=server.stopped, mode="asgi"), name=f"serve-{name}")
    waiter = asyncio.create_task(config.ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not config.ready.is_set():
        waiter.cancel()
        task.result()  # raises the start-up error
        raise RuntimeError(f"{name} stopped during start-up")
    return server, task
