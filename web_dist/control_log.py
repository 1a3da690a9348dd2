"""Where the control plane keeps its events and their progress: in memory or in Redis.

`MemoryEventLog` is the embedded default: the control process holds the log and edges
long-poll it over HTTP (`read`). `RedisEventLog` puts each event on a Redis stream that edges
on any host read themselves (edge/control_sync.py); the control API then only writes events
and reads progress, so any number of API processes can run side by side.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict, deque
from typing import Any, Protocol

from web_dist.invalidation import Event, Invalidation, RedisKeys, applied_by

MAX_EVENTS = 10_000  # kept in memory for edges that fall behind
MAX_RECORDS = 10_000
STREAM_LENGTH = 100_000  # Redis: about this many events stay on the stream for edges that were down
RECORD_TTL = 30 * 86400  # Redis: seconds an invalidation's record and applied times are kept


class ControlStoreDown(Exception):
    """The store behind the control plane (Redis) cannot be reached."""


class EventLog(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def publish(self, event: Event, edges: tuple[str, ...]) -> None: ...
    async def record(self, event_id: str) -> Invalidation | None: ...
    async def mark_applied(self, event_id: str, edge: str, at: float) -> None: ...
    async def current_config(self) -> str | None: ...


class MemoryEventLog:
    """The embedded log: events numbered from 1, each edge's position, long-poll waiters."""

    def __init__(self) -> None:
        self._events: deque[tuple[int, Event]] = deque(maxlen=MAX_EVENTS)
        self._records: OrderedDict[str, Invalidation] = OrderedDict()
        self._cursors: dict[str, int] = {}
        self._seq = 0
        self._config: str | None = None
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._arrived.set()  # long-polls answer now

    async def publish(self, event: Event, edges: tuple[str, ...]) -> None:
        self._seq += 1
        self._events.append((self._seq, event))
        applied = {event.origin_edge: event.created} if event.origin_edge else {}
        self._records[event.id] = Invalidation(event, edges, applied_by(edges, applied))
        while len(self._records) > MAX_RECORDS:
            self._records.popitem(last=False)
        if event.kind == "config":
            self._config = event.config
        self._arrived.set()
        self._arrived = asyncio.Event()

    async def record(self, event_id: str) -> Invalidation | None:
        return self._records.get(event_id)

    async def mark_applied(self, event_id: str, edge: str, at: float) -> None:
        found = self._records.get(event_id)
        if found is not None and edge in found.edges and edge not in found.applied:
            self._records[event_id] = Invalidation(found.event, found.edges, {**found.applied, edge: at})

    def advance(self, edge: str, seq: int) -> None:
        """The edge has applied everything up to `seq`: a restarted edge resumes after it."""
        self._cursors[edge] = max(seq, self._cursors.get(edge, 0))

    async def current_config(self) -> str | None:
        return self._config

    async def read(self, edge: str, after: int | None, wait: float) -> tuple[int, list[tuple[int, Event]]]:
        """Events after `after` (None: after the edge's saved position) this edge has not
        applied, waiting up to `wait` seconds for one; returns the new position too."""
        start = self._cursors.get(edge, 0) if after is None else after
        pending = self._pending(edge, start)
        if not pending and wait > 0:
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                pass
            pending = self._pending(edge, start)
        position = max(start, self._events[-1][0] if self._events else 0)
        return position, pending

    def _pending(self, edge: str, after: int) -> list[tuple[int, Event]]:
        out = []
        for seq, event in self._events:
            record = self._records.get(event.id)
            if seq > after and event.origin_edge != edge and (record is None or edge not in record.applied):
                out.append((seq, event))
        return out


class RedisEventLog:
    """Events on a Redis stream (`<prefix>:events`), records and applied times beside it."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=3)
        self.keys = RedisKeys(prefix)

    async def start(self) -> None:
        return None  # connects on first use: the API answers 503 while Redis is down

    async def close(self) -> None:
        await self._redis.aclose()

    async def publish(self, event: Event, edges: tuple[str, ...]) -> None:
        async with self._mapped():
            await publish_to_redis(self._redis, self.keys, event, edges)

    async def record(self, event_id: str) -> Invalidation | None:
        async with self._mapped():
            raw = await self._redis.get(self.keys.record(event_id))
            if raw is None:
                return None
            applied = await self._redis.hgetall(self.keys.applied(event_id))
        body = json.loads(raw)
        edges = tuple(body["edges"])
        times = {str(k): float(v) for k, v in applied.items()}
        return Invalidation(Event.from_json(body["event"]), edges, applied_by(edges, times))

    async def mark_applied(self, event_id: str, edge: str, at: float) -> None:
        async with self._mapped():
            await self._redis.hsetnx(self.keys.applied(event_id), edge, repr(at))

    async def current_config(self) -> str | None:
        async with self._mapped():
            value = await self._redis.get(self.keys.config)
            return None if value is None else str(value)

    def _mapped(self) -> _RedisErrors:
        return _RedisErrors()


async def publish_to_redis(client: Any, keys: RedisKeys, event: Event, edges: tuple[str, ...]) -> None:
    """Record an event (with the edges it waits for) and append it to the stream, atomically.
    The control API and an edge passing on a PUT both publish this way."""
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.record(event.id), json.dumps({"event": event.to_json(), "edges": list(edges)}), ex=RECORD_TTL)
    if event.origin_edge:
        pipe.hset(keys.applied(event.id), event.origin_edge, repr(event.created))
    pipe.hsetnx(keys.applied(event.id), "-", "0")  # so the hash exists, and expires with the record
    pipe.expire(keys.applied(event.id), RECORD_TTL)
    if event.kind == "config":
        pipe.set(keys.config, event.config)
    pipe.xadd(keys.events, {"event": event.to_json()}, maxlen=STREAM_LENGTH, approximate=True)
    await pipe.execute()


class _RedisErrors:
    """Redis client failures become ControlStoreDown at this boundary."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        import redis.exceptions

        if exc is not None and isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)):
            raise ControlStoreDown(f"redis: {exc}") from exc
