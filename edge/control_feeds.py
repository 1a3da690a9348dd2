"""How an edge reads the control plane's events: a long-poll on the control API (embedded) or
the Redis stream. Each `follow` runs until its connection fails, then raises; ControlSync
retries it with backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from web_dist.config.invalidation import Event, RedisKeys, publish_to_redis

if TYPE_CHECKING:
    from edge.control_sync import ControlSync

POLL_WAIT = 20.0
BLOCK_MS = 2000
BATCH = 100


class HttpFeed:
    """Embedded mode: `GET /events?edge=E&after=N&wait=S`, then `POST /events/applied`.

    After a failure the edge asks without `after`: the control process answers from the
    position this edge last reported, which also covers a control process that restarted.
    """

    def __init__(self, api_url: str, token: str, edge: str, clock: Callable[[], float]) -> None:
        self.api_url = api_url
        self.edge = edge
        self.clock = clock
        self._headers = {"authorization": f"Bearer {token}"}
        self._session: aiohttp.ClientSession | None = None

    async def follow(self, sync: ControlSync) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POLL_WAIT + 15, connect=3))
        after: int | None = None
        while True:
            params = {"edge": self.edge, "wait": str(POLL_WAIT if after is not None else 0)}
            if after is not None:
                params["after"] = str(after)
            body = await self._call("GET", "/events", params=params)
            sync.connected.set()
            ids = []
            for item in body["events"]:
                event = Event.from_json(item["event"])
                await sync.apply(event)
                ids.append(event.id)
            if ids or after is None:
                await self._call(
                    "POST",
                    "/events/applied",
                    json={"edge": self.edge, "ids": ids, "seq": body["position"], "at": self.clock()},
                )
            after = int(body["position"])

    async def publish(self, event: Event, edges: tuple[str, ...]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10, connect=3))
        await self._call(
            "POST",
            f"/distributions/{event.distribution}/invalidations",
            json={"paths": list(event.paths), "soft": event.soft, "origin_edge": event.origin_edge},
        )

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        assert self._session is not None
        async with self._session.request(method, self.api_url + path, headers=self._headers, **kw) as resp:
            if resp.status >= 300:
                raise ControlUnavailableError(f"{method} {path}: {resp.status} {(await resp.text())[:200]}")
            return await resp.json()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class ControlUnavailableError(Exception):
    """The control API answered, but not with what an edge asked for."""


class RedisFeed:
    """Redis mode: XREAD from this edge's saved position; each event applied, then its applied
    time and the new position written in one transaction. An event this edge already applied
    (its name is in the event's applied hash) is skipped, so each is applied once."""

    def __init__(self, url: str, prefix: str, edge: str, clock: Callable[[], float]) -> None:
        import redis.asyncio as aioredis

        self.edge = edge
        self.clock = clock
        self.keys = RedisKeys(prefix)
        self._redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=BLOCK_MS / 1000 + 5, socket_connect_timeout=3
        )

    async def follow(self, sync: ControlSync) -> None:
        config = await self._redis.get(self.keys.config)
        sync.adopt_config(None if config is None else str(config))
        cursor = await self._redis.get(self.keys.cursor(self.edge)) or "0"
        sync.connected.set()
        while True:
            reply = await self._redis.xread({self.keys.events: cursor}, count=BATCH, block=BLOCK_MS)
            sync.connected.set()
            for stream_id, fields in _entries(reply):
                event = Event.from_json(fields["event"])
                mine = event.origin_edge == self.edge
                if not mine and not await self._redis.hexists(self.keys.applied(event.id), self.edge):
                    await sync.apply(event)
                pipe = self._redis.pipeline(transaction=True)
                if not mine:
                    pipe.hsetnx(self.keys.applied(event.id), self.edge, repr(self.clock()))
                pipe.set(self.keys.cursor(self.edge), stream_id)
                await pipe.execute()
                cursor = stream_id

    async def publish(self, event: Event, edges: tuple[str, ...]) -> None:
        await publish_to_redis(self._redis, self.keys, event, edges)

    async def close(self) -> None:
        await self._redis.aclose()


def _entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """XREAD's reply in RESP2 (a list of [stream, entries]) or RESP3 (a dict) shape."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else [entries for _, entries in reply]
    out: list[tuple[str, dict[str, str]]] = []
    for entries in streams:
        if entries and isinstance(entries[0], list) and len(entries) == 1 and isinstance(entries[0][0], list):
            entries = entries[0]
        out.extend((str(i), dict(f)) for i, f in entries)
    return out
