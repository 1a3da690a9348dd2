"""A viewer's request body on its way to the origin (uploads through the edge).

The body is never held whole: each chunk uvicorn hands over is written to the origin
connection before the next is read, so the edge's memory stays flat however large the upload
(uvicorn stops reading the socket while a chunk waits; aiohttp waits for the origin socket to
drain). The byte count is checked as it goes: a declared Content-Length over the limit is
refused before the origin is asked, a chunked body is cut off once it passes the limit.

When the viewer leaves, stalls, or passes the limit mid-body, iteration raises: aiohttp then
drops the origin connection without finishing the body (no last chunk, fewer bytes than
Content-Length said), and the origin, which writes to a temporary file and publishes only a
complete body, keeps nothing. `UploadBody.failure` tells the flow which of the two happened,
so the viewer gets 413 or 408 (or nothing: it is gone) rather than the 502 of a broken upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from edge.errors import EdgeError
from web_dist.config import CacheBehavior, EdgeLocation
from web_dist.http.semantics import content_length

Receive = Callable[[], Awaitable[dict[str, Any]]]
IDLE_TIMEOUT = 60.0  # seconds a viewer may send no body bytes before the upload is abandoned


class ClientGone(Exception):
    """The viewer disconnected while sending its request body."""


class BodyTooLarge(Exception):
    """A body without a declared length ran past the upload limit."""


class BodyStalled(Exception):
    """The viewer stopped sending its body without closing the connection."""


def upload_limit(edge: EdgeLocation, behavior: CacheBehavior) -> int:
    """The most bytes one request body may carry: the behavior's limit, within the edge's."""
    if behavior.max_upload_bytes is None:
        return edge.max_upload_bytes
    return min(behavior.max_upload_bytes, edge.max_upload_bytes)


def too_large(limit: int, size: int | None = None) -> EdgeError:
    told = f"{size} bytes" if size is not None else "more bytes"
    return EdgeError(
        413,
        f"Content Too Large: the body ({told}) exceeds this path's {limit}-byte upload limit",
        [("connection", "close")],
    )


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The request's Content-Length, refusing one that is not a number (400)."""
    try:
        return content_length(headers.get("content-length"))
    except ValueError:
        raise EdgeError(400, "Bad Request: Content-Length is not a number") from None


class UploadBody:
    """The request body as an async iterator of chunks, counted against `limit`."""

    def __init__(
        self, receive: Receive, limit: int, declared: int | None, *, idle_timeout: float = IDLE_TIMEOUT
    ) -> None:
        self._receive = receive
        self.limit = limit
        self.declared = declared
        self.idle_timeout = idle_timeout
        self.received = 0
        self.failure: ClientGone | BodyTooLarge | BodyStalled | None = None
        if declared is not None and declared > limit:
            raise too_large(limit, declared)  # before a byte is read or the origin is asked

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    message = await self._receive()
            except TimeoutError:
                self.failure = BodyStalled()
                raise self.failure from None
            if message["type"] == "http.disconnect":
                self.failure = ClientGone()
                raise self.failure
            chunk: bytes = message.get("body", b"")
            self.received += len(chunk)
            if self.received > self.limit:
                self.failure = BodyTooLarge()
                raise self.failure
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    def raise_failure(self) -> None:
        """After the upstream request failed: say why when the body was the cause."""
        if isinstance(self.failure, ClientGone):
            raise ClientGone()
        if isinstance(self.failure, BodyTooLarge):
            raise too_large(self.limit)
        if isinstance(self.failure, BodyStalled):
            raise EdgeError(
                408,
                f"Request Timeout: no body bytes for {self.idle_timeout:g} s after {self.received}; "
                "the upload was abandoned",
                [("connection", "close")],
            )
