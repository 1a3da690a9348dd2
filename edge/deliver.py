"""Sending a response to the viewer over ASGI: 304, 206/416, compression, HEAD, streaming.

One function shapes the answer for every source (a cache entry or a body still arriving),
so a hit and a miss obey the same rules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge import compression
from edge.store import Headers
from web_dist.http_ranges import (
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


@dataclass
class Answer:
    """What goes back: status, headers, and the body as bytes or as arriving chunks."""

    status: int
    headers: Headers
    body: bytes | AsyncIterator[bytes] | None
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
) -> tuple[int, int]:
    """Send `answer` shaped by the request's preconditions and Range; (status, body bytes sent)."""
    headers = [(k, v) for k, v in answer.headers if k not in RECOMPUTED]
    status, body, size = answer.status, answer.body, answer.size
    etag, modified = answer.header("etag"), parse_http_date(answer.header("last-modified"))
    precondition = precondition_status(method, req, etag, modified) if status == 200 else None
    if precondition == 304:
        return await _send(send, 304, [(k, v) for k, v in headers if k in NOT_MODIFIED_KEEP] + extra, None, None)
    if precondition == 412:
        return await _send(send, 412, extra, b"", 0)
    if status == 200:  # the edge answers ranges of a whole representation itself
        headers = [h for h in headers if h[0] not in RANGE_HEADERS]
    if status == 200 and size is not None and "range" in req and method == "GET" and (
        if_range_allows(req.get("if-range"), etag or "", modified if modified is not None else -1)
    ):
        chosen = select_range(req["range"], size)
        if chosen == UNSATISFIABLE:
            extra = [*extra, ("content-range", f"bytes */{size}")]
            return await _send(send, 416, [h for h in headers if h[0] != "content-type"] + extra, b"", 0)
        if isinstance(chosen, ByteRange):
            ranged = [*headers, *extra, ("accept-ranges", "bytes"), ("content-range", chosen.content_range(size))]
            part = _slice(body, chosen)
            return await _send(send, 206, ranged, None if method == "HEAD" else part, chosen.length)
    if status == 200 and size is not None:
        extra = [*extra, ("accept-ranges", "bytes")]
    if coding is not None and status == 200 and "range" not in req:
        # `body` is the identity body: compress it here, as it streams (a hit passes it encoded).
        headers = _compressed_headers(headers, coding)
        if body is not None and not isinstance(body, bytes):
            body, size = compression.encode_stream(coding, body), None
    return await _send(send, status, headers + extra, None if method == "HEAD" else body, size)


def _compressed_headers(headers: Headers, coding: str) -> Headers:
    weak = [(n, compression.weak_etag(v) or v) if n == "etag" else (n, v) for n, v in headers]
    return [*compression.vary_on_coding(weak), ("content-encoding", coding)]


def _slice(body: bytes | AsyncIterator[bytes] | None, rng: ByteRange) -> bytes | AsyncIterator[bytes] | None:
    if body is None or isinstance(body, bytes):
        return body[rng.first : rng.last + 1] if body is not None else None
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
    send: Send, status: int, headers: Headers, body: bytes | AsyncIterator[bytes] | None, size: int | None
) -> tuple[int, int]:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if size is not None:
        raw.append((b"content-length", str(size).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    if body is None or isinstance(body, bytes):
        await send({"type": "http.response.body", "body": body or b""})
        return status, len(body or b"")
    sent = 0
    async for chunk in body:
        if chunk:
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
    return status, sent
