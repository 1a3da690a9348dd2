"""The edge's cache as the flow sees it: a memory tier first, then an optional disk tier.

One interface for both, so the request flow asks "is it stored" and "store it" without knowing
where an entry lives: a disk hit small enough for memory is promoted there as a copy (a larger
one is served from the file's mapping, a slice at a time); a put goes to both tiers; a live
object leaves memory once no rule lets it be served.
"""

from __future__ import annotations

import dataclasses

from edge.disk_store import DiskStore
from edge.store import CachedResponse, MemoryStore


class Tiers:
    """Memory over disk; `memory` and `disk` stay reachable for the metrics and the tests."""

    def __init__(self, memory: MemoryStore, disk: DiskStore | None) -> None:
        self.memory = memory
        self.disk = disk
        # the largest object either tier keeps (a larger fill is passed through, not stored)
        self.max_object_bytes = max(memory.max_object_bytes, disk.max_object_bytes if disk is not None else 0)

    async def open(self) -> dict[str, tuple[str, ...]]:
        """Open the disk tier; the tags of the entries it already holds, by key."""
        if self.disk is None:
            return {}
        await self.disk.open()
        return self.disk.tags_at_open

    async def close(self) -> None:
        if self.disk is not None:
            await self.disk.close()

    def peek(self, key: str) -> CachedResponse | None:
        """The entry if memory holds it (no await: the hot path of a hit)."""
        return self.memory.get(key)

    async def get(self, key: str) -> CachedResponse | None:
        entry = self.memory.get(key)
        if entry is None and self.disk is not None:
            entry = await self.disk.get(key)
            if entry is not None and len(entry.body) <= self.memory.max_object_bytes:
                # promoted as a copy in memory, not the file's mapping; a larger one is served
                # from the mapping (the page cache), a slice at a time
                entry = dataclasses.replace(entry, body=bytes(entry.body))
                self.memory.put(key, entry)
        return entry

    def put(self, key: str, entry: CachedResponse, *, now: float, live: bool = False) -> None:
        """Store in both tiers; a live object (a streaming distribution's) leaves memory once
        no rule lets it be served, and each put removes a few that have."""
        self.memory.expire(now)
        self.memory.put(key, entry, drop_at=entry.useless_after() if live else None)
        if self.disk is not None:
            self.disk.put(key, entry)

    def resize(self, key: str) -> None:
        """An entry grew in place (an encoded body kept beside it)."""
        self.memory.resize(key)

    def delete(self, key: str) -> None:
        self.memory.delete(key)
        if self.disk is not None:
            self.disk.delete(key)

    def keys(self) -> set[str]:
        return set(self.memory.keys()) | (set(self.disk.keys()) if self.disk is not None else set())

    def __contains__(self, key: str) -> bool:
        return key in self.memory or (self.disk is not None and key in self.disk)

    def __len__(self) -> int:
        return len(self.memory) + (len(self.disk) if self.disk is not None else 0)
