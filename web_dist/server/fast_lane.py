"""A fast lane in front of uvicorn's HTTP/1.1 protocol, for answers an app can give at once.

An edge's fresh cache hit needs no ASGI scope, task, event or body queue: the answer is the
stored bytes with a few headers. `FastLane` reads request heads off the connection itself,
asks the app's `Shortcut` for each bodiless GET or HEAD, and writes the answer it gets in one
go (uvloop keeps a reference to the body instead of copying it, so a slow viewer costs the
edge its socket buffer, not the object). Anything else (a request with a body, HTTP/1.0,
`Connection: close`, an upgrade, a malformed head, or a request the shortcut declines) is
handed with the bytes not yet answered to uvicorn's protocol, which serves it exactly as it
would without the lane; once that connection is idle again it comes back to the lane.

Why: per 1 KiB hit uvicorn's per-request machinery cost about as much as the edge's own
decisions, and granian's send about a third of the edge's CPU (docs/MEASUREMENTS.md).

Timers are coarse: one sweep a second closes connections past their deadline (a head not
complete within the header timeout: 408; idle longer than the keep-alive timeout: closed),
instead of a timer armed and cancelled per request.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE

SWEEP_SECONDS = 1.0
SLICE = 256 * 1024  # a larger body is written a slice at a time
BodyPiece = bytes | memoryview


@dataclass
class QuickAnswer:
    """An answer for the wire: its head (status line and fields), its body, and `done`, told
    how many body bytes never reached the viewer (0 when all did) once the last byte left or
    the connection closed. A body over `SLICE` goes out a slice at a time, each once the one
    before has left (asyncio's own transports copy what they cannot send at once)."""

    head: Sequence[bytes]
    body: BodyPiece = b""
    done: Callable[[int], None] | None = None


# (method, request target, headers with lower-cased names, client address) -> answer, or None:
# the request goes to the app. Synchronous: it must not wait for anything.
Shortcut = Callable[[str, bytes, list[tuple[bytes, bytes]], str], QuickAnswer | None]


class _Sweeper:
    """Closes the lanes of one server whose deadline has passed, once a second."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lanes: weakref.WeakSet[FastLane] = weakref.WeakSet()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, lane: FastLane) -> None:
        self.lanes.add(lane)
        if self._handle is None:
            self._handle = self.loop.call_later(SWEEP_SECONDS, self._sweep)

    def _sweep(self) -> None:
        self._handle = None
        now = self.loop.time()
        for lane in list(self.lanes):
            if lane.deadline < now:
                lane.expire()
        if self.lanes:
            self._handle = self.loop.call_later(SWEEP_SECONDS, self._sweep)


def fast_lane_protocol(
    shortcut: Shortcut,
    fallback: type[asyncio.Protocol],
    *,
    header_timeout: float,
    max_header_bytes: int,
    keep_alive: float,
) -> type[asyncio.Protocol]:
    """The protocol class uvicorn builds per connection: a `FastLane` asking `shortcut`, handing
    what it does not answer to `fallback` (uvicorn's httptools protocol or a subclass)."""
    sweepers: dict[asyncio.AbstractEventLoop, _Sweeper] = {}

    class Lane(FastLane):
        def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
            loop = _loop or asyncio.get_event_loop()
            sweeper = sweepers.get(loop)
            if sweeper is None:
                sweeper = sweepers[loop] = _Sweeper(loop)
            super().__init__(
                lambda: fallback(config=config, server_state=server_state, app_state=app_state, _loop=loop),  # type: ignore[call-arg]
                shortcut,
                loop,
                sweeper,
                server_state.connections,
                header_timeout=header_timeout,
                max_header_bytes=max_header_bytes,
                keep_alive=keep_alive,
            )

    return Lane


class FastLane(asyncio.Protocol):
    """One connection while its requests are answered from heads alone (see the module)."""

    def __init__(
        self,
        make_fallback: Callable[[], asyncio.Protocol],
        shortcut: Shortcut,
        loop: asyncio.AbstractEventLoop,
        sweeper: _Sweeper,
        connections: set[Any],
        *,
        header_timeout: float,
        max_header_bytes: int,
        keep_alive: float,
    ) -> None:
        self.make_fallback = make_fallback
        self.shortcut = shortcut
        self.loop = loop
        self.sweeper = sweeper
        self.connections = connections  # uvicorn's: its shutdown asks each to close
        self.header_timeout, self.max_header_bytes, self.keep_alive = header_timeout, max_header_bytes, keep_alive
        self.transport: asyncio.Transport | None = None
        self.client = "-"
        self.deadline = 0.0
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched for the end of a head
        self._paused = False  # the viewer is not reading: neither are we
        self._leaving: QuickAnswer | None = None  # a large answer still going out
        self._offset = 0  # bytes of its body written so far
        self._closing = False
        self._parser: Any = None
        self._head = _Head()

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # (uvloop's is not an asyncio.Transport subclass)
        self.transport = transport
        transport.set_write_buffer_limits(0, 0)  # paused while anything is queued, resumed once all has left
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) else "-"
        self._parser = self._head.parser = httptools.HttpRequestParser(self._head)
        self.connections.add(self)
        self.sweeper.add(self)
        self.deadline = self.loop.time() + self.header_timeout

    def take_back(self, transport: asyncio.Transport, *, write_paused: bool) -> None:
        """The connection returns from the fallback protocol, idle between requests."""
        self.transport = transport
        transport.set_write_buffer_limits(0, 0)
        transport.set_protocol(self)
        if write_paused:
            transport.pause_reading()
        self._buf.clear()
        self._scanned = 0
        self._parser = self._head.parser = httptools.HttpRequestParser(self._head)
        self._paused = write_paused
        self.connections.add(self)
        self.sweeper.add(self)
        self.deadline = self.loop.time() + self.keep_alive

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._buf:
            self.deadline = self.loop.time() + self.header_timeout  # a new head starts
        self._buf += data
        if not self._paused:
            self._answer_heads()

    def pause_writing(self) -> None:
        self._paused = True
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._leaving is not None and not self._next_slice():
            return  # paused again until that slice has left
        transport.resume_reading()
        if self._buf:
            self._answer_heads()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.sweeper.lanes.discard(self)
        self._closing = True
        leaving, self._leaving = self._leaving, None
        if leaving is not None and leaving.done is not None:
            transport = self.transport
            queued = transport.get_write_buffer_size() if transport is not None else 0
            leaving.done(len(leaving.body) - self._offset + queued)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    # -- uvicorn's server ---------------------------------------------------------------------
    def shutdown(self) -> None:
        """The server is stopping: close at once, unless an answer is still leaving."""
        self._closing = True
        if self.transport is not None and self._leaving is None:
            self.transport.close()

    def expire(self) -> None:
        """The sweeper found the deadline passed: a late head gets 408, an idle connection closes."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._leaving is not None:
            return
        if self._buf.strip():
            transport.write(refusal(408, f"request head not complete within {self.header_timeout:g} s"))
        transport.close()

    # -- the lane ----------------------------------------------------------------------------
    def _answer_heads(self) -> None:
        buf = self._buf
        start = 0
        while not self._paused:
            searched = self._scanned
            end = buf.find(b"\r\n\r\n", max(start, searched - 3))
            if end < 0:
                self._scanned = len(buf)
                # too long for a head (uvicorn's guard answers 431), or bare-LF line ends (uvicorn's
                # parser judges them): searched from where the last look ended, so never twice
                fresh = max(start, searched - 2)
                if (
                    len(buf) - start > self.max_header_bytes
                    or buf.find(b"\n\n", fresh) >= 0
                    or buf.find(b"\n\r\n", fresh) >= 0
                ):
                    self._hand_off(bytes(buf[start:]))
                    return
                break
            stop = end + 4
            answer = self._quick(bytes(buf[start:stop]))
            if answer is None:
                self._hand_off(bytes(buf[start:]))
                return
            start = self._scanned = stop
            self._write(answer)
        if start:
            del buf[:start]
            self._scanned -= start
        if not buf:
            self.deadline = self.loop.time() + self.keep_alive

    def _quick(self, raw: bytes) -> QuickAnswer | None:
        """The shortcut's answer to one complete head, or None (the head is not one it may take)."""
        head = self._head
        head.reset()
        try:
            self._parser.feed_data(raw)
        except httptools.HttpParserError:  # includes an upgrade: uvicorn answers either
            return None
        if not head.complete or head.bodied or not head.keep_alive:
            return None
        method = head.method
        if method not in (b"GET", b"HEAD") or not head.url.startswith(b"/") or b"#" in head.url:
            return None
        try:
            return self.shortcut(method.decode(), head.url, head.headers, self.client)
        except Exception:  # the app's fault: the app itself answers (and reports) it
            return None

    def _write(self, answer: QuickAnswer) -> None:
        transport = self.transport
        assert transport is not None
        body = answer.body
        if len(body) <= SLICE:
            transport.writelines([*answer.head, body])
            if answer.done is not None:
                answer.done(0)
            return
        transport.writelines(answer.head)
        self._leaving, self._offset = answer, 0
        self._next_slice()

    def _next_slice(self) -> bool:
        """Write the next slice of the answer leaving; whether the answer is done (and the
        connection free for the next request)."""
        answer, transport = self._leaving, self.transport
        assert answer is not None and transport is not None
        body = memoryview(answer.body)
        while self._offset < len(body):
            piece = body[self._offset : self._offset + SLICE]
            self._offset += len(piece)
            transport.write(piece)
            if self._paused:  # resumed once it has all left
                return False
        self._leaving = None
        if answer.done is not None:
            answer.done(0)
        if self._closing:
            transport.close()
            return False
        return True

    def _hand_off(self, data: bytes) -> None:
        """The rest of this connection's bytes go to the fallback protocol."""
        transport = self.transport
        assert transport is not None
        self.connections.discard(self)
        self.sweeper.lanes.discard(self)
        self._buf.clear()
        self._scanned = 0
        fallback = self.make_fallback()
        fallback.connection_made(transport)
        if self._paused:
            fallback.pause_writing()
        transport.set_write_buffer_limits()  # the fallback's own flow control
        transport.set_protocol(fallback)
        setattr(fallback, "lane", self)  # noqa: B010 (read by a fallback that can hand back)
        fallback.data_received(data)


class _Head:
    """httptools' callbacks for one request head: what the lane needs and nothing more."""

    __slots__ = ("parser", "url", "headers", "method", "keep_alive", "complete", "bodied")

    def __init__(self) -> None:
        self.parser: Any = None
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = b""
        self.keep_alive = self.complete = self.bodied = False

    def on_headers_complete(self) -> None:
        # asked here: once the message is complete the parser has forgotten them
        parser = self.parser
        self.method = parser.get_method()
        self.keep_alive = parser.get_http_version() == "1.1" and parser.should_keep_alive()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in (b"content-length", b"transfer-encoding", b"expect"):
            self.bodied = True  # a body may follow: uvicorn's cycle reads it
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.complete = True


def response_head(status: int, fields: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The status line and `fields` as uvicorn writes them for an app (the answer's own
    fields still to follow), or None when uvicorn would refuse one of them."""
    if any(HEADER_RE.search(name) or HEADER_VALUE_RE.search(value) for name, value in fields):
        return None
    return STATUS_LINE[status] + b"".join(b"%s: %s\r\n" % (name.lower(), value) for name, value in fields)


def refusal(status: int, message: str) -> bytes:
    """A plain-text answer that closes the connection (a late or oversized request head)."""
    body = message.encode("ascii") + b"\n"
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )
