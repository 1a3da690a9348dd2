"""Sending a response to the viewer over ASGI: 304, 206/416, compression, HEAD, streaming.

One function shapes the answer for every source (a cache entry or a body still arriving),
so a hit and a miss obey the same rules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge import compression
from edge.store import Headers
from web_dist.http.semantics import (
    UNSATISFIABLE,
    ByteRange,
    if_range_allows,
    parse_http_date,
    precondition_status,
    select_range,
)

Send = Callable[[dict[str, Any]], Awaitable[None]]
# Headers a 304 repeats (RFC 9110 15.4.5).
NOT_MODIFIED_KEEP = frozenset({"cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"})
# Headers the edge computes itself for the viewer.
RECOMPUTED = frozenset({"content-length", "age", "cache-status", "x-cache"})
RANGE_HEADERS = ("content-range", "accept-ranges")
# Request headers that make an answer more than "send the stored response": this viewer's own.
SHAPING_HEADERS = frozenset(
    {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "range", "if-range"}
)
# A stored body larger than WHOLE goes out in slices, each send awaited: a viewer holds what the
# server buffers of a few slices, not a copy of the object. granian queues about seven sends per
# connection whatever their size, so a slice is SLICE_MIN until the viewer has shown, over at
# least PACE_WINDOW seconds, that it drains faster than FAST_VIEWER bytes/s; then SLICE (again
# SLICE_MIN if it slows down). The kernel and granian take the first few hundred KiB at once, so
# a stalled viewer looks fast over a shorter time. Measured (a 50 MiB hit): a stalled viewer
# costs the edge about 960 KiB at a fixed 128 KiB slice, 290 KiB at 16 KiB; a fast loopback
# download runs at 1,974 MB/s with 128 KiB slices, 449 MB/s with 16 KiB ones. Up to WHOLE a body
# goes in one message: no more than a viewer's share anyway, and slicing a 1 MiB hit would cost
# 6x its CPU (the slices are copies: granian panics freeing a memoryview it was sent).
WHOLE = 1024 * 1024
SLICE = 128 * 1024
SLICE_MIN = 16 * 1024
PACE_WINDOW = 0.02  # seconds
FAST_VIEWER = 100 * 1024 * 1024  # bytes/s
Body = bytes | memoryview  # a stored body (a memoryview over a file mapping for disk hits)
Receive = Callable[[], Awaitable[dict[str, Any]]]


class ViewerLeft(Exception):
    """The viewer hung up (http.disconnect, or a send failed) while its response streamed."""

    def __init__(self, status: int, sent: int) -> None:
        super().__init__(f"viewer left after {sent} body bytes of a {status}")
        self.status = status
        self.sent = sent


class Departure:
    """Watches `receive` for http.disconnect while a response without a request body streams.

    Only for requests whose body was read (or that had none): the watcher takes every message.
    """

    def __init__(self, receive: Receive | None) -> None:
        self.gone = False
        self._task = asyncio.create_task(self._watch(receive)) if receive is not None else None

    async def _watch(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:  # the server's receive failed: the connection is gone either way
            pass
        self.gone = True

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def __enter__(self) -> Departure:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Answer:
    """What goes back: status, headers, and the body as bytes or as arriving chunks."""

    status: int
    headers: Headers
    body: Body | AsyncIterator[bytes] | None
    size: int | None  # length of the body as the origin sent it, when known

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


async def deliver(
    send: Send,
    req: Mapping[str, str],
    method: str,
    answer: Answer,
    extra: Headers,
    *,
    coding: str | None = None,
    departure: Departure | None = None,
) -> tuple[int, int]:
    """Send `answer` shaped by the request's preconditions and Range; (status, body bytes sent).
    ViewerLeft if the viewer hangs up (as `departure` sees it, or a send fails) mid-body."""
    headers = [(k, v) for k, v in answer.headers if k not in RECOMPUTED]
    status, body, size = answer.status, answer.body, answer.size
    etag, modified = answer.header("etag"), parse_http_date(answer.header("last-modified"))
    precondition = precondition_status(method, req, etag, modified) if status == 200 else None
    if precondition == 304:
        return await _send(
            send, 304, [(k, v) for k, v in headers if k in NOT_MODIFIED_KEEP] + extra, None, None, departure
        )
    if precondition == 412:
        return await _send(send, 412, extra, b"", 0, departure)
    if status == 200:  # the edge answers ranges of a whole representation itself
        headers = [h for h in headers if h[0] not in RANGE_HEADERS]
    if (
        status == 200
        and size is not None
        and "range" in req
        and method == "GET"
        and (if_range_allows(req.get("if-range"), etag or "", modified if modified is not None else -1))
    ):
        chosen = select_range(req["range"], size)
        if chosen == UNSATISFIABLE:
            extra = [*extra, ("content-range", f"bytes */{size}")]
            return await _send(send, 416, [h for h in headers if h[0] != "content-type"] + extra, b"", 0, departure)
        if isinstance(chosen, ByteRange):
            ranged = [*headers, *extra, ("accept-ranges", "bytes"), ("content-range", chosen.content_range(size))]
            part = _slice(body, chosen)
            return await _send(send, 206, ranged, None if method == "HEAD" else part, chosen.length, departure)
    if status == 200 and size is not None:
        extra = [*extra, ("accept-ranges", "bytes")]
    if coding is not None and status == 200 and "range" not in req:
        # `body` is the identity body: compress it here, as it streams (a hit passes it encoded).
        headers = _compressed_headers(headers, coding)
        if body is not None and not isinstance(body, (bytes, memoryview)):
            body, size = compression.encode_stream(coding, body), None
    return await _send(send, status, headers + extra, None if method == "HEAD" else body, size, departure)


def _compressed_headers(headers: Headers, coding: str) -> Headers:
    weak = [(n, compression.weak_etag(v) or v) if n == "etag" else (n, v) for n, v in headers]
    return [*compression.vary_on_coding(weak), ("content-encoding", coding)]


def _slice(body: Body | AsyncIterator[bytes] | None, rng: ByteRange) -> Body | AsyncIterator[bytes] | None:
    if body is None or isinstance(body, (bytes, memoryview)):
        return memoryview(body)[rng.first : rng.last + 1] if body is not None else None
    return _slice_stream(body, rng)


async def _slice_stream(chunks: AsyncIterator[bytes], rng: ByteRange) -> AsyncIterator[bytes]:
    offset = 0
    async for chunk in chunks:
        start, end = offset, offset + len(chunk)
        offset = end
        if end <= rng.first:
            continue
        yield chunk[max(0, rng.first - start) : rng.last + 1 - start]
        if end > rng.last:
            return


async def _send(
    send: Send,
    status: int,
    headers: Headers,
    body: Body | AsyncIterator[bytes] | None,
    size: int | None,
    departure: Departure | None = None,
) -> tuple[int, int]:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if size is not None:
        raw.append((b"content-length", str(size).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    if body is None or (isinstance(body, bytes) and len(body) <= WHOLE):
        await send({"type": "http.response.body", "body": body or b""})
        return status, len(body or b"")
    return status, await send_body(send, status, body, departure)


async def send_body(send: Send, status: int, body: Body | AsyncIterator[bytes], departure: Departure | None) -> int:
    """The body after the response start, piece by piece, each send awaited (backpressure);
    the bytes sent, or ViewerLeft with them once the viewer is gone."""
    chunks = stored_slices(body) if isinstance(body, (bytes, memoryview)) else body
    sent = 0
    async for chunk in chunks:
        if departure is not None and departure.gone:
            raise ViewerLeft(status, sent)
        if chunk:
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except Exception as exc:  # the connection is gone (what servers raise varies)
                raise ViewerLeft(status, sent) from exc
            sent += len(chunk)
    await send({"type": "http.response.body", "body": b""})
    return sent


async def stored_slices(body: Body) -> AsyncIterator[bytes]:
    """A stored body in pieces made one at a time as the viewer takes them, small until the
    viewer has shown it is fast (the time between two pieces is the time a send waited)."""
    view = memoryview(body)
    size, start = SLICE_MIN, 0
    window_start, window_bytes = time.monotonic(), 0
    while start < len(view):
        piece = bytes(view[start : start + size])  # a copy: granian aborts on freeing a memoryview
        start += len(piece)
        window_bytes += len(piece)
        yield piece
        elapsed = time.monotonic() - window_start
        if elapsed >= PACE_WINDOW:
            size = SLICE if window_bytes / elapsed >= FAST_VIEWER else SLICE_MIN
            window_start, window_bytes = time.monotonic(), 0
