"""Where the control plane keeps its events and their progress: in memory or in Redis.

`MemoryEventLog` is the embedded default: the control process holds the log and edges
long-poll it over HTTP (`read`). `RedisEventLog` puts each event on a Redis stream that edges
on any host read themselves (edge/control_sync.py); the control API then only writes events
and reads progress, so any number of API processes can run side by side.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Protocol, TextIO

from web_dist.config.invalidation import (
    Event,
    Invalidation,
    RedisKeys,
    applied_by,
    publish_to_redis,
)

log = logging.getLogger("cdn.control")

MAX_EVENTS = 10_000  # kept in memory for edges that fall behind
MAX_RECORDS = 10_000


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
    """The embedded log: events numbered from 1, each edge's position, long-poll waiters.

    With a `journal` file every change is appended to it as a JSON line and replayed at start,
    so a restarted control process still knows its invalidations, their progress and where each
    edge was (the file is rewritten compactly at each start)."""

    def __init__(self, journal: Path | None = None) -> None:
        self._events: deque[tuple[int, Event]] = deque(maxlen=MAX_EVENTS)
        self._records: OrderedDict[str, Invalidation] = OrderedDict()
        self._cursors: dict[str, int] = {}
        self._seq = 0
        self._config: str | None = None
        self._arrived = asyncio.Event()
        self._journal_path = journal
        self._journal: TextIO | None = None

    async def start(self) -> None:
        if self._journal_path is None:
            return
        self._journal_path.parent.mkdir(parents=True, exist_ok=True)
        if self._journal_path.exists():
            self._replay(self._journal_path.read_text(encoding="utf-8").splitlines())
        self._compact()
        self._journal = self._journal_path.open("a", encoding="utf-8")

    async def close(self) -> None:
        self._arrived.set()  # long-polls answer now
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    async def publish(self, event: Event, edges: tuple[str, ...]) -> None:
        self._seq += 1
        self._add(self._seq, event, edges)
        self._write({"t": "event", "seq": self._seq, "event": event.to_json(), "edges": list(edges)})
        self._arrived.set()
        self._arrived = asyncio.Event()

    def _add(self, seq: int, event: Event, edges: tuple[str, ...]) -> None:
        self._events.append((seq, event))
        applied = {event.origin_edge: event.created} if event.origin_edge else {}
        self._records[event.id] = Invalidation(event, edges, applied_by(edges, applied))
        while len(self._records) > MAX_RECORDS:
            self._records.popitem(last=False)
        if event.kind == "config":
            self._config = event.config

    async def record(self, event_id: str) -> Invalidation | None:
        return self._records.get(event_id)

    async def mark_applied(self, event_id: str, edge: str, at: float) -> None:
        if self._set_applied(event_id, edge, at):
            self._write({"t": "applied", "id": event_id, "edge": edge, "at": at})

    def _set_applied(self, event_id: str, edge: str, at: float) -> bool:
        """Record `edge`'s first application of the event; False when there is nothing new."""
        found = self._records.get(event_id)
        if found is None or edge not in found.edges or edge in found.applied:
            return False
        self._records[event_id] = Invalidation(found.event, found.edges, {**found.applied, edge: at})
        return True

    def advance(self, edge: str, seq: int) -> None:
        """The edge has applied everything up to `seq`: a restarted edge resumes after it."""
        if seq > self._cursors.get(edge, 0):
            self._cursors[edge] = seq
            self._write({"t": "advance", "edge": edge, "seq": seq})

    # -- the journal ---------------------------------------------------------------------------
    def _write(self, line: dict[str, Any]) -> None:
        if self._journal is not None:
            self._journal.write(json.dumps(line) + "\n")
            self._journal.flush()

    def _replay(self, lines: list[str]) -> None:
        """Apply the journal's lines (before it is opened, so nothing is written back)."""
        for number, text in enumerate(lines, 1):
            try:
                line = json.loads(text)
                if line["t"] == "event":
                    self._seq = max(self._seq, int(line["seq"]))
                    self._add(int(line["seq"]), Event.from_json(line["event"]), tuple(line["edges"]))
                elif line["t"] == "applied":
                    self._set_applied(str(line["id"]), str(line["edge"]), float(line["at"]))
                elif line["t"] == "advance":
                    self.advance(str(line["edge"]), int(line["seq"]))
            except (ValueError, KeyError, TypeError) as exc:  # a line cut short by a crash: skip it
                log.warning("control journal %s line %d skipped: %s", self._journal_path, number, exc)

    def _compact(self) -> None:
        """Rewrite the journal with what is kept in memory (atomically: temp file, rename)."""
        assert self._journal_path is not None
        lines: list[dict[str, Any]] = []
        for seq, event in self._events:
            record = self._records.get(event.id)
            edges = record.edges if record else ()
            lines.append({"t": "event", "seq": seq, "event": event.to_json(), "edges": list(edges)})
            for edge, at in record.applied.items() if record else ():
                lines.append({"t": "applied", "id": event.id, "edge": edge, "at": at})
        lines += [{"t": "advance", "edge": edge, "seq": seq} for edge, seq in self._cursors.items()]
        temporary = self._journal_path.with_suffix(self._journal_path.suffix + ".tmp")
        temporary.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        os.replace(temporary, self._journal_path)

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
        async with _RedisErrors():
            await publish_to_redis(self._redis, self.keys, event, edges)

    async def record(self, event_id: str) -> Invalidation | None:
        async with _RedisErrors():
            raw = await self._redis.get(self.keys.record(event_id))
            if raw is None:
                return None
            applied = await self._redis.hgetall(self.keys.applied(event_id))
        body = json.loads(raw)
        edges = tuple(body["edges"])
        times = {str(k): float(v) for k, v in applied.items()}
        return Invalidation(Event.from_json(body["event"]), edges, applied_by(edges, times))

    async def mark_applied(self, event_id: str, edge: str, at: float) -> None:
        async with _RedisErrors():
            await self._redis.hsetnx(self.keys.applied(event_id), edge, repr(at))

    async def current_config(self) -> str | None:
        async with _RedisErrors():
            value = await self._redis.get(self.keys.config)
            return None if value is None else str(value)


class _RedisErrors:
    """Redis client failures become ControlStoreDown at this boundary."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        import redis.exceptions

        if exc is not None and isinstance(
            exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        ):
            raise ControlStoreDown(f"redis: {exc}") from exc
