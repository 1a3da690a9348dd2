"""Run ASGI apps on real sockets: one helper for `cdn` and for the tests.

A server is bound before it is reported, so the port it prints (or hands a test) is already
accepting connections; port 0 picks an ephemeral port.

Two engines serve the same ASGI app. uvicorn (httptools + uvloop) serves origins, routers and
admin pages. granian, whose HTTP/1.1 is written in Rust, serves an edge's public port: run
embedded in the caller's event loop, on the socket bound here, it answered cache hits about
2.2x as fast as uvicorn did (bench/servers.py, README "Measurements"). An HTTPS listener with
several certificates, chosen by SNI, is Hypercorn's (web_dist.server.sni_listener): granian has
one certificate per listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import uvicorn

from web_dist.server.fast_lane import Shortcut, fast_lane_protocol, refusal

if TYPE_CHECKING:
    from web_dist.server.sni import SniCertificates

Engine = Literal["uvicorn", "granian"]
HTTP1_BUFFER = 72 * 1024  # granian: bytes a connection buffers each way (also the longest request head)
MAX_CONCURRENT_REQUESTS = 65536  # granian: requests served at once (held live requests count)
# uvicorn (origins, routers, admin and control): a request's head must arrive whole within this
# long and this size, or the connection gets 408 / 431 and is closed (slowloris, huge headers).
HEADER_TIMEOUT = 10.0
MAX_HEADER_BYTES = 64 * 1024
KEEP_ALIVE = 30  # uvicorn: seconds an idle keep-alive connection is kept
TLS_CHECK_INTERVAL = 5.0  # seconds between looks at a TLS listener's certificate files
# granian: how long a server replaced by a certificate reload goes on serving the connections it
# has accepted: its header_read_timeout (HTTP1Settings' default, kept by _granian_server), past
# which granian itself closes a connection that has not sent its request head.
TLS_RELOAD_GRACE = 30.0


def parse_listen(listen: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:port") into its parts."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {listen!r} is not HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A listening TCP socket (bound only, with `listen` False); raises OSError with the
    address when it is taken. With `reuse_port` several sockets (one per worker process)
    listen on one port and the kernel spreads the connections over them (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it a body sent after its headers waits ~40 ms for delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    if listen:
        sock.listen(1024)
    sock.setblocking(False)
    return sock


def guarded_protocol(
    header_timeout: float = HEADER_TIMEOUT, max_header_bytes: int = MAX_HEADER_BYTES
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, with a deadline and a size cap on each request's head
    (uvicorn has neither for httptools: a client dripping header bytes kept its connection)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedProtocol(HttpToolsProtocol):
        _in_head = True
        _mid_request = False  # a request's bytes have started arriving and it is not complete
        _head_bytes = 0
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._in_head, self._head_bytes = True, 0
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout, self._head_late)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > max_header_bytes and not self.transport.is_closing():
                self._refuse(431, f"request head over {max_header_bytes} bytes")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._mid_request = True
            if self._head_timer is None:  # a keep-alive connection's next request starts
                self._arm()

        def on_message_complete(self) -> None:
            self._mid_request = False
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            lane = getattr(self, "lane", None)  # set by a FastLane that handed this connection over
            if lane is None or self._mid_request or self.pipeline or self.transport.is_closing():
                return
            # idle between requests: the connection goes back to the lane
            if self.timeout_keep_alive_task is not None:
                self.timeout_keep_alive_task.cancel()
                self.timeout_keep_alive_task = None
            self._disarm()
            self.connections.discard(self)
            lane.take_back(self.transport, write_paused=self.flow.write_paused)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _head_late(self) -> None:
            self._head_timer = None
            if self._in_head and self._head_bytes and not self.transport.is_closing():
                self._refuse(408, f"request head not complete within {header_timeout:g} s")
            elif self._in_head and not self.transport.is_closing() and self.cycle is None:
                self.transport.close()  # connected and said nothing

        def _refuse(self, status: int, message: str) -> None:
            self.transport.write(refusal(status, message))
            self.transport.close()

    return GuardedProtocol


class _QuietServer(uvicorn.Server):
    """Leaves signals to the caller: one process may run several servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class RunningServer:
    """A server (uvicorn or embedded granian) serving one app on one bound socket."""

    name: str
    host: str
    port: int
    server: Any  # uvicorn.Server or an embedded granian server
    task: asyncio.Task[None]
    sock: socket.socket = field(repr=False)
    tls: bool = False
    app: Any = field(default=None, repr=False)
    tls_files: tuple[Path, Path] | None = None  # (cert, key) when serving HTTPS
    sni: SniCertificates | None = field(default=None, repr=False)  # several certificates, chosen by SNI
    tls_reload_grace: float = field(default=TLS_RELOAD_GRACE, repr=False)  # granian: see reload_tls
    _watchers: list[asyncio.Task[None]] = field(default_factory=list, repr=False)
    _draining: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # ends the grace of those draining

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def stop(self) -> None:
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._stopping.set()
        await asyncio.gather(self._stop_engine(self.server, self.task), *self._draining)
        self.sock.close()

    @staticmethod
    async def _stop_engine(server: Any, task: asyncio.Task[None]) -> None:
        """Stop one engine serving the socket (requests in flight finish, up to 10 s); the socket stays open."""
        uvicorn_server = isinstance(server, uvicorn.Server)
        if uvicorn_server:
            server.should_exit = True
        else:
            server.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except TimeoutError:
            if uvicorn_server:
                server.force_exit = True
            task.cancel()

    async def reload_tls(self) -> None:
        """New connections get the certificate and key now in `tls_files`; requests in flight finish,
        and none of the connections accepted meanwhile is cut."""
        assert self.tls_files is not None, f"{self.name} serves no TLS"
        cert, key = self.tls_files
        if self.sni is not None:  # into the live contexts: nothing is cut
            for index in range(len(self.sni.pairs)):
                self.sni.reload(index)
            return
        if isinstance(self.server, uvicorn.Server):
            context = self.server.config.ssl
            assert context is not None, f"{self.name}: uvicorn has no SSLContext"
            context.load_cert_chain(cert, key)  # new handshakes use it
            return
        # granian: a second server on the same socket first; the old one stops accepting (every
        # new connection goes to the new one) and serves those it accepted for a grace period,
        # long enough for each to send its request, then stops as granian stops (its requests
        # in flight finish). The socket accepts throughout (web_dist.server.cert_reload).
        from web_dist.server.cert_reload import stop_accepting

        old_server, old_task = self.server, self.task
        self.server, self.task = await _serve_granian(self.app, self.sock, self.name, cert, key)
        # (While it runs, its descriptor is its own: granian closes it only when stopped.)
        grace = self.tls_reload_grace if not old_task.done() and stop_accepting(old_server.listener_fd) else 0

        async def drain() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), grace)
            await self._stop_engine(old_server, old_task)

        draining = asyncio.create_task(drain(), name=f"drain-{self.name}")
        self._draining.add(draining)
        draining.add_done_callback(self._draining.discard)

    def watch_tls(self, interval: float) -> None:
        """Reload a certificate whenever its files change to a pair that loads (web_dist.server.cert_reload)."""
        from web_dist.server.cert_reload import watch

        assert self.tls_files is not None, f"{self.name} serves no TLS"
        if self.sni is None:
            self._watchers = [
                asyncio.create_task(
                    watch(*self.tls_files, self.reload_tls, what=self.name, interval=interval),
                    name=f"watch-tls-{self.name}",
                )
            ]
            return
        sni = self.sni

        def reloader(index: int) -> Callable[[], Awaitable[None]]:
            async def reload() -> None:
                sni.reload(index)

            return reload

        self._watchers = [
            asyncio.create_task(
                watch(*pair, reloader(i), what=self.name, interval=interval), name=f"watch-tls-{self.name}-{i}"
            )
            for i, pair in enumerate(sni.pairs)
        ]


async def start_server(
    app: Any,
    listen: str = "127.0.0.1:0",
    *,
    name: str = "server",
    engine: Engine = "uvicorn",
    header_timeout: float = HEADER_TIMEOUT,
    max_header_bytes: int = MAX_HEADER_BYTES,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    sock: socket.socket | None = None,
    tls_check_interval: float = TLS_CHECK_INTERVAL,
    sni: Sequence[tuple[Path, Path]] = (),
    shortcut: Shortcut | None = None,
) -> RunningServer:
    """Start `app` on `listen` and return once it accepts connections (uvicorn: a request head
    must arrive within `header_timeout` seconds and `max_header_bytes`). With `tls_cert` and
    `tls_key` (PEM) it serves HTTPS: TLS 1.2 and 1.3; granian offers h2 and http/1.1 by ALPN.
    `sock`: a socket already listening on `listen` (bound by another process) to serve instead.
    `sni`: more (cert, key) pairs, each chosen for the names in its certificate (web_dist.server.sni);
    Hypercorn serves such a listener (h2 and http/1.1), whatever `engine` says.
    Over TLS the certificate files are looked at every `tls_check_interval` seconds (0: never)
    and reloaded when they change (web_dist.server.cert_reload); on granian only for a `SharedApp`
    (an edge's HTTPS port), whose lifespan a server replaced for a reload does not end.
    `shortcut`: answers some requests from their head alone (web_dist.server.fast_lane; uvicorn,
    plain HTTP: an edge's fresh cache hits)."""
    certificates = None
    if sni and tls_cert is not None and tls_key is not None:
        from web_dist.server.sni import SniCertificates

        certificates = SniCertificates((tls_cert, tls_key), sni)
    server = await _start(
        app, listen, name, engine, header_timeout, max_header_bytes, tls_cert, tls_key, sock, certificates, shortcut
    )
    if tls_cert is not None and tls_key is not None:
        server.tls_files = (tls_cert, tls_key)
        if tls_check_interval > 0 and (engine == "uvicorn" or certificates or isinstance(app, SharedApp)):
            server.watch_tls(tls_check_interval)
    return server


async def _start(
    app: Any,
    listen: str,
    name: str,
    engine: Engine,
    header_timeout: float,
    max_header_bytes: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    sock: socket.socket | None,
    sni: SniCertificates | None = None,
    shortcut: Shortcut | None = None,
) -> RunningServer:
    host, port = parse_listen(listen)
    if sock is None:
        sock = bind(host, port)
    else:
        sock.setblocking(False)
    if sni is not None:
        from web_dist.server.sni_listener import serve_sni

        try:
            hypercorn, serving = await serve_sni(app, sock, name, sni, header_timeout, max_header_bytes)
        except BaseException:
            sock.close()
            raise
        return RunningServer(name, host, sock.getsockname()[1], hypercorn, serving, sock, tls=True, app=app, sni=sni)
    if engine == "granian":
        try:
            server, task = await _serve_granian(app, sock, name, tls_cert, tls_key)
        except BaseException:
            sock.close()
            raise
        return RunningServer(name, host, sock.getsockname()[1], server, task, sock, tls=tls_cert is not None, app=app)
    http = guarded_protocol(header_timeout, max_header_bytes)
    if shortcut is not None and tls_cert is None:
        http = fast_lane_protocol(
            shortcut, http, header_timeout=header_timeout, max_header_bytes=max_header_bytes, keep_alive=KEEP_ALIVE
        )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="none",
        http=http,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=3,
        # Apps set their own Date and Server: an edge passes the origin's through.
        server_header=False,
        date_header=False,
        # The client is the peer: whose X-Forwarded-For to believe is each app's decision
        # (the edge's `trusted_proxies`), not uvicorn's default of trusting loopback.
        proxy_headers=False,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"serve-{name}")
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error
            raise RuntimeError(f"{name} stopped during start-up")
        await asyncio.sleep(0.005)
    return RunningServer(name, host, sock.getsockname()[1], server, task, sock, tls=tls_cert is not None)


def _granian_server(app: Any, sock: socket.socket, tls_cert: Path | None = None, tls_key: Path | None = None) -> Any:
    """granian's embedded server for `app`, serving the socket `bind` made (so port 0 works)."""
    from granian import _granian
    from granian.constants import HTTPModes, Interfaces, SSLProtocols
    from granian.http import HTTP1Settings
    from granian.server.embed import Server

    holder: Any = _granian.SocketHolder  # (fd, uds, backlog); granian's stub says otherwise

    class BoundServer(Server):
        listener_fd = -1  # the descriptor it accepts from (cert_reload.stop_accepting)

        def _init_shared_socket(self) -> None:
            # A duplicate: granian closes the descriptor it is given when it stops.
            self._ssp = None
            self.listener_fd = os.dup(sock.fileno())
            self._shd = holder(self.listener_fd, False, self.backlog)

    host, port = sock.getsockname()[:2]
    # granian serves at most `backpressure` requests at once (default backlog / workers, 1024):
    # an edge holds a blocking playlist reload or a preload-hinted part per live viewer, so
    # thousands of viewers need thousands at once (measured: past ~1,040 viewers the rest timed out).
    # HTTPModes.auto: over TLS, ALPN offers h2 and http/1.1; in clear, HTTP/1.1 (and h2 prior knowledge)
    # A connection's write buffer is what a slow viewer costs the edge: hyper's default (408 KiB,
    # then granian's queue) came to about 1.1 MiB per stalled viewer (bench.slow_readers).
    http1 = HTTP1Settings(max_buffer_size=HTTP1_BUFFER)
    return BoundServer(
        app,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        websockets=False,
        backlog=1024,
        backpressure=MAX_CONCURRENT_REQUESTS,
        log_enabled=False,
        http=HTTPModes.auto,
        http1_settings=http1,
        ssl_cert=tls_cert,
        ssl_key=tls_key,
        ssl_protocol_min=SSLProtocols.tls12,
    )


async def _serve_granian(
    app: Any, sock: socket.socket, name: str, tls_cert: Path | None = None, tls_key: Path | None = None
) -> tuple[Any, asyncio.Task[None]]:
    """A granian server serving `app` on `sock` (the socket is left open when it fails), and its task."""
    started = asyncio.Event()
    server = _granian_server(_SignalsStartup(app, started), sock, tls_cert, tls_key)
    task = asyncio.create_task(server.serve(), name=f"serve-{name}")
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        waiter.cancel()
        task.result()  # raises the start-up error
        raise RuntimeError(f"{name} stopped during start-up")
    return server, task


class SharedApp:
    """`app` served by a second listener (an edge's HTTPS beside its HTTP): its lifespan is
    the first listener's, so here start-up and shut-down are answered without running it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


class _SignalsStartup:
    """`app` as it is, but `started` is set once the app's lifespan start-up is complete."""

    def __init__(self, app: Any, started: asyncio.Event) -> None:
        self.app = app
        self.started = started

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        answered = False

        async def notify(message: dict[str, Any]) -> None:
            nonlocal answered
            answered = answered or message["type"].startswith("lifespan.startup.")
            if message["type"] == "lifespan.startup.complete":
                self.started.set()
            await send(message)

        try:
            await self.app(scope, receive, notify)
        finally:
            if not answered:  # an app without lifespan support: granian serves it all the same
                self.started.set()
