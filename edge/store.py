"""Where an edge keeps responses: an LRU memory tier bounded in bytes."""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

Headers = list[tuple[str, str]]


@dataclass
class CachedResponse:
    """A stored response to GET, with what RFC 9111 needs to compute its age."""

    status: int
    headers: Headers  # as the origin sent them, hop-by-hop headers and Age removed
    body: bytes | memoryview  # a memoryview over the file's mapping for a large disk-tier hit
    response_time: float
    initial_age: float  # corrected_initial_age at response_time
    ttl: float
    must_revalidate: bool = False
    tags: tuple[str, ...] = ()
    stale_while_revalidate: float = 0.0  # RFC 5861 windows, seconds past ttl
    stale_if_error: float | None = None  # None: the origin did not say
    encoded: dict[str, bytes] = field(default_factory=dict, repr=False)  # coding -> body, made at the edge
    # The headers of a plain 200 hit, encoded for the wire once (made by the flow on first use).
    wire: list[tuple[bytes, bytes]] | None = field(default=None, repr=False, compare=False)
    head: bytes | None = field(default=None, repr=False, compare=False)  # ... with the status line, for the fast lane

    def age(self, now: float) -> float:
        return self.initial_age + max(0.0, now - self.response_time)

    def useless_after(self) -> float:
        """When no rule lets this entry be served any more: past freshness and both RFC 5861
        windows (an unbounded stale-if-error counts as none: the caller decides to drop)."""
        return (
            self.response_time
            + self.ttl
            - self.initial_age
            + self.stale_while_revalidate
            + (self.stale_if_error or 0.0)
        )

    def fresh(self, now: float) -> bool:
        return self.age(now) < self.ttl

    def staleness(self, now: float) -> float:
        """Seconds past the end of freshness (negative while fresh)."""
        return self.age(now) - self.ttl

    def usable_while_revalidating(self, now: float) -> bool:
        return not self.must_revalidate and self.staleness(now) <= self.stale_while_revalidate

    def usable_on_error(self, now: float) -> bool:
        """RFC 5861 stale-if-error; without it, what RFC 9111 4.2.4 lets a disconnected cache do."""
        if self.must_revalidate:
            return False
        return self.stale_if_error is None or self.staleness(now) <= self.stale_if_error

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def etag(self) -> str | None:
        return self.header("etag")

    @property
    def last_modified(self) -> str | None:
        return self.header("last-modified")

    @property
    def size(self) -> int:
        extra = sum(len(b) for b in self.encoded.values())
        return len(self.body) + extra + sum(len(k) + len(v) + 4 for k, v in self.headers) + 200


class Store(Protocol):
    def get(self, key: str) -> CachedResponse | None: ...
    def put(self, key: str, entry: CachedResponse) -> bool: ...
    def delete(self, key: str) -> bool: ...
    def keys(self) -> Iterator[str]: ...


EXPIRE_STEP = 64  # most expired entries one `expire` call removes: bounded work per request


class MemoryStore:
    """LRU over total entry size; an entry larger than `max_object_bytes` is refused.

    An entry put with `drop_at` (a live part or playlist, useless once out of the live window)
    is removed by `expire` once that time passes, before LRU would reach it.
    """

    def __init__(self, capacity_bytes: int, max_object_bytes: int | None = None) -> None:
        self.capacity_bytes = capacity_bytes
        self.max_object_bytes = max_object_bytes or capacity_bytes
        self.used_bytes = 0
        self.evictions = 0
        self.expired = 0
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._deadlines: list[tuple[float, int, str]] = []  # (drop_at, put number, key), a heap
        self._put_number: dict[str, int] = {}  # key -> the put a deadline belongs to
        self._puts = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries  # no LRU touch, unlike get

    def get(self, key: str) -> CachedResponse | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CachedResponse, *, drop_at: float | None = None) -> bool:
        size = entry.size
        if len(entry.body) > self.max_object_bytes or size > self.capacity_bytes:
            self.delete(key)
            return False
        self.delete(key)
        while self.used_bytes + size > self.capacity_bytes and self._entries:
            oldest = next(iter(self._entries))
            self.delete(oldest)
            self.evictions += 1
        self._entries[key] = entry
        self._sizes[key] = size
        self.used_bytes += size
        if drop_at is not None:
            number = next(self._puts)
            self._put_number[key] = number
            heapq.heappush(self._deadlines, (drop_at, number, key))
        return True

    def expire(self, now: float, limit: int = EXPIRE_STEP) -> int:
        """Remove up to `limit` entries whose `drop_at` has passed; how many were removed."""
        removed = 0
        while self._deadlines and self._deadlines[0][0] <= now and removed < limit:
            _, number, key = heapq.heappop(self._deadlines)
            if self._put_number.get(key) == number:  # not replaced or deleted since
                self.delete(key)
                self.expired += 1
                removed += 1
        return removed

    def resize(self, key: str) -> None:
        """Account for an entry that grew in place (a compressed variant was added)."""
        entry = self._entries.get(key)
        if entry is not None:
            self.put(key, entry)

    def delete(self, key: str) -> bool:
        if self._entries.pop(key, None) is None:
            return False
        self.used_bytes -= self._sizes.pop(key)
        self._put_number.pop(key, None)
        return True

    def keys(self) -> Iterator[str]:
        return iter(list(self._entries))
