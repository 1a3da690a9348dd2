"""The edge's side of the control plane: follow the events, apply each once, report it.

Embedded mode long-polls the control API (`GET /events`, `POST /events/applied`); Redis mode
reads the stream itself, keeping its position in Redis (`<prefix>:cursor:<edge>`), so an edge
that was down reads on from where it stopped and applies every invalidation it missed. While
the control plane or Redis is unreachable the edge keeps serving from its cache and retries
with backoff. A PUT or DELETE through this edge is published for the other edges.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import tomllib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from web_dist.config import ConfigError, ControlConfig, parse_config
from web_dist.config.invalidation import Event, new_id, path_problem

if TYPE_CHECKING:
    from edge.flow import EdgeFlow

log = logging.getLogger("cdn.edge.control")


class Feed(Protocol):
    async def follow(self, sync: ControlSync) -> None: ...  # returns never; raises on failure
    async def publish(self, event: Event, edges: tuple[str, ...]) -> None: ...
    async def close(self) -> None: ...


class ControlSync:
    """Keeps one edge's cache in step with the control plane's events."""

    def __init__(
        self,
        flow: EdgeFlow,
        control: ControlConfig,
        *,
        token: str | None,
        clock: Callable[[], float] = time.time,
        backoff: tuple[float, float] = (0.1, 3.0),
    ) -> None:
        self.flow = flow
        self.clock = clock
        self.backoff = backoff
        self.applied: list[str] = []  # ids of the events this process applied, in order
        self.connected = asyncio.Event()  # set once a read succeeded, cleared on failure
        self.failures = 0
        self._config_text: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[None]] = set()
        from edge.control_feeds import HttpFeed, RedisFeed

        self.feed: Feed = (
            RedisFeed(control.redis_url, control.redis_prefix, flow.name, clock)
            if control.redis_url
            else HttpFeed(control.api_url, token or "", flow.name, clock)
        )

    async def start(self) -> None:
        self.flow.on_invalidate = self._published_invalidation
        self._task = asyncio.create_task(self._run(), name=f"control-sync-{self.flow.name}")

    async def close(self) -> None:
        self.flow.on_invalidate = None
        tasks = [t for t in (self._task, *self._publishing) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.feed.close()

    async def apply(self, event: Event) -> None:
        """Apply one event to this edge's cache (or, for a config, to its routing)."""
        if event.kind == "config":  # adopted unless it is the config this edge already runs
            self.adopt_config(event.config)
            self.applied.append(event.id)
            return
        count = await apply_event(self.flow, event)
        if self.flow.workers is not None:  # applied on every worker of the edge before it is reported
            await self.flow.workers.event(event)
        self.applied.append(event.id)
        log.info("%s applied %s %s (%d objects)", self.flow.name, event.kind, event.id, count)

    def adopt_config(self, text: str | None) -> None:
        """A config read at (re)connection: applied when it differs from the last one."""
        if text and text != self._config_text:
            self._reconfigure(text)

    def _reconfigure(self, text: str) -> None:
        self._config_text = text
        if not reconfigure(self.flow, text):
            return
        if self.flow.workers is not None:
            task = asyncio.create_task(self.flow.workers.event(Event(id=new_id("C"), kind="config", config=text)))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def _run(self) -> None:
        delay = self.backoff[0]
        while True:
            try:
                await self.feed.follow(self)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the control plane or Redis is down: serve on, retry
                if self.connected.is_set():
                    delay = self.backoff[0]
                self.connected.clear()
                self.failures += 1
                log.warning("%s: control plane unreachable (%s); retrying in %.1f s", self.flow.name, exc, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.backoff[1])

    def _published_invalidation(self, dist_id: str, path: str) -> None:
        """A PUT/DELETE through this edge changed `path`: the other edges drop it too."""
        if path_problem(path):
            log.warning("%s: %r cannot be sent as an invalidation path", self.flow.name, path)
            return
        event = Event(new_id("E"), "invalidation", dist_id, (path,), created=self.clock(), origin_edge=self.flow.name)
        task = asyncio.create_task(self._publish(event))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, event: Event) -> None:
        try:
            dist = self.flow.config.distribution(event.distribution)
            await self.feed.publish(event, dist.edges if dist is not None else (self.flow.name,))
        except Exception as exc:
            log.warning("%s: could not publish the invalidation of %s: %s", self.flow.name, event.paths[0], exc)


async def apply_event(flow: EdgeFlow, event: Event) -> int:
    """Apply one event to this process's cache (a config: to its routing); how many objects it
    touched. What the edge, and each of its workers, does with an event."""
    if event.kind == "config":
        reconfigure(flow, event.config)
        return 0
    if event.kind == "invalidation":
        return await flow.invalidate(event.distribution, list(event.paths), soft=event.soft)
    return await flow.purge_tags(list(event.tags), soft=event.soft, dist_id=event.distribution)


def reconfigure(flow: EdgeFlow, text: str) -> bool:
    """Route by a published config (TOML text); False, and logged, when it cannot be used."""
    try:
        flow.reconfigure(parse_config(tomllib.loads(text), flow.config.source))
    except (tomllib.TOMLDecodeError, ConfigError, ValueError) as exc:
        log.error("%s: published config not applied: %s", flow.name, exc)
        return False
    return True
