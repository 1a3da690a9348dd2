"""Request coalescing: concurrent misses for one key share ONE origin fetch.

Like groupcache's singleflight, plus what an HTTP cache needs: the fetch runs as its own task
(a client that leaves does not cancel it), and its body goes to every waiter from one shared
buffer as the bytes arrive. While the body is being stored the buffer keeps every chunk (late
joiners read from the start); otherwise chunks every reader has passed are dropped, and the
fetch waits while the slowest reader is more than a window behind, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from edge.store import CachedResponse, Headers

WINDOW_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ResponseHead:
    """Status and headers of a response whose body is still arriving."""

    status: int
    headers: Headers
    shared: bool = True  # False: not for other clients (uncacheable); they must fetch their own
    stored: bool = False  # being stored (the body is kept as it arrives)
    confirmed: bool = False  # already stored whole: Cache-Status may say `stored`
    age: int = 0
    vary: tuple[str, ...] = ()  # request headers the response varies on
    upstream_status: str | None = None  # a parent cache's Cache-Status, listed before ours
    from_worker: bool = False  # filled by the worker owning the key: its Cache-Status is ours
    tags: tuple[str, ...] = ()  # the response's cache tags (Surrogate-Key, Cache-Tag)


@dataclass(frozen=True)
class ServeStale:
    """Revalidation failed (origin unreachable or 5xx) and the stale copy may stand in."""

    status: int | None  # what the origin answered; None when it could not be reached


Head = ResponseHead | CachedResponse | ServeStale


class FlightGone(Exception):
    """The shared body was already trimmed, or the fetch stopped before it ended."""


class Flight:
    """One fetch in progress: its head (or a refreshed cache entry) and its body chunks."""

    def __init__(self, key: str, window_bytes: int = WINDOW_BYTES) -> None:
        self.key = key
        self.head: asyncio.Future[Head] = asyncio.get_running_loop().create_future()
        self.request_headers: dict[str, str] = {}
        self.retain = True
        self.invalidated = False  # an invalidation arrived while fetching: serve, do not store
        self.waiters = 0
        self.received = 0
        self._window = window_bytes
        self._chunks: list[bytes] = []
        self._base = 0  # index of _chunks[0] in the whole body
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._arrived = asyncio.Event()
        self._consumed = asyncio.Event()
        self._cursors: dict[int, int] = {}
        self._ids = itertools.count()
        self._departed = False  # a viewer hung up mid-body

    # -- the fetching side -------------------------------------------------------------
    def set_head(self, head: Head) -> None:
        if not self.head.done():
            self.head.set_result(head)

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self.received += len(chunk)
        self._buffered += len(chunk)
        self._wake_readers()

    def stop_retaining(self) -> None:
        """The body will not be stored after all: keep only what readers still need."""
        self.retain = False
        self._trim()

    async def room(self) -> bool:
        """Wait until the slowest reader is within the window; False when nobody reads."""
        while not self.retain:
            if not self._cursors:
                return False
            if self._buffered <= self._window:
                return True
            self._consumed.clear()
            await self._consumed.wait()
        return True

    @property
    def abandoned(self) -> bool:
        """A viewer hung up and no other reads on. (A background refresh, or a range that
        read what it asked for, never abandons a fill: the object is wanted in the cache.)"""
        return self._departed and not self._cursors

    def collected(self) -> bytes:
        """The whole body so far; only while every chunk is retained."""
        if not self.retain or self._base:
            raise FlightGone(self.key)
        return b"".join(self._chunks)

    def finish(self) -> None:
        self._done = True
        self._wake_readers()

    def fail(self, exc: BaseException) -> None:
        self._error = exc
        if not self.head.done():
            self.head.set_exception(exc)
            self.head.exception()  # mark retrieved: waiters may all have gone
        self._done = True
        self._wake_readers()

    # -- the reading side --------------------------------------------------------------
    def subscribe(self) -> int:
        """A reader's place at the start of the body; hold it from joining until done."""
        if self._base > 0:
            raise FlightGone(self.key)
        cursor = next(self._ids)
        self._cursors[cursor] = 0
        return cursor

    def depart(self, cursor: int) -> None:
        """The reader at `cursor` hung up before the end of the body."""
        self._departed = True
        self.release(cursor)

    def release(self, cursor: int) -> None:
        if self._cursors.pop(cursor, None) is not None:
            if not self.retain:
                self._trim()
            self._consumed.set()

    async def body(self, cursor: int) -> AsyncIterator[bytes]:
        """Every chunk of the body from the reader's place, as it arrives."""
        try:
            while True:
                index = self._cursors[cursor]
                if index - self._base < len(self._chunks):
                    chunk = self._chunks[index - self._base]
                    self._cursors[cursor] = index + 1
                    if not self.retain:
                        self._trim()
                    yield chunk
                elif self._error is not None:
                    raise FlightGone(self.key) from self._error
                elif self._done:
                    return
                else:
                    self._arrived.clear()
                    await self._arrived.wait()
        finally:
            self.release(cursor)

    def _wake_readers(self) -> None:
        self._arrived.set()

    def _trim(self) -> None:
        slowest = min(self._cursors.values(), default=self._base + len(self._chunks))
        drop = slowest - self._base
        if drop > 0:
            self._buffered -= sum(len(c) for c in self._chunks[:drop])
            del self._chunks[:drop]
            self._base += drop
            self._consumed.set()


class Coalescer:
    """The table of flights in progress, one per key."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.collapsed = 0

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: str, fetch: Callable[[Flight], Awaitable[None]]) -> tuple[Flight, bool]:
        """The flight for `key` and whether this call started it."""
        flight = self._flights.get(key)
        if flight is not None:
            self.collapsed += 1
            return flight, False
        flight = Flight(key)
        self._flights[key] = flight
        task = asyncio.create_task(self._run(flight, fetch), name=f"fetch {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flight, True

    def in_flight(self) -> list[Flight]:
        return list(self._flights.values())

    def forget(self, flight: Flight) -> None:
        """Later requests start their own fetch (this one's response is not shared)."""
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    async def _run(self, flight: Flight, fetch: Callable[[Flight], Awaitable[None]]) -> None:
        try:
            await fetch(flight)
        except BaseException as exc:  # every waiter must hear of it, whatever it was
            flight.fail(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self.forget(flight)
            flight.finish()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
