"""Web mode of the load tester: a client requesting a site's objects with Zipf popularity.

Object k (1-based, most popular first) is asked for with probability proportional to
1 / k**s, the shape measured for web and CDN request streams (s around 0.6 to 1.0).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urljoin

from streaming.tally import Tally
from streaming.viewer import FetchResult


def zipf_weights(count: int, s: float) -> list[float]:
    """Cumulative weights of ranks 1..count under Zipf's law with exponent s."""
    return list(itertools.accumulate(1 / rank**s for rank in range(1, count + 1)))


class ZipfPicker:
    def __init__(self, items: Sequence[str], s: float, rng: random.Random) -> None:
        if not items:
            raise ValueError("web mode needs at least one object path")
        self.items = list(items)
        self.cumulative = zipf_weights(len(items), s)
        self.rng = rng

    def pick(self) -> str:
        point = self.rng.random() * self.cumulative[-1]
        return self.items[min(bisect.bisect_right(self.cumulative, point), len(self.items) - 1)]


def cache_outcome(header: str) -> str:
    """`hit`, `miss`, `stale`... from an RFC 9211 Cache-Status value (`-` when absent)."""
    if not header:
        return "-"
    fields = [f.strip() for f in header.split(";")[1:]]
    if "hit" in fields:
        return "hit"
    forward = next((f.split("=", 1)[1] for f in fields if f.startswith("fwd=")), None)
    return forward or "-"


class WebClient:
    """Requests objects one after another, `think` seconds apart (exponentially distributed)."""

    def __init__(
        self,
        base: str,
        objects: Sequence[str],
        fetch: Callable[[str], Awaitable[FetchResult]],
        tally: Tally,
        *,
        zipf: float = 1.0,
        think: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.base = base
        self.rng = random.Random(seed)
        self.picker = ZipfPicker(objects, zipf, self.rng)
        self.fetch = fetch
        self.tally = tally
        self.think = think

    async def run(self) -> None:
        while True:
            result = await self.fetch(urljoin(self.base, self.picker.pick()))
            self.tally.request(len(result.body))
            if result.status == 0 or result.status >= 400:
                self.tally.error(result.error or f"http {result.status}", result.url, result.edge)
            else:
                self.tally.web(result.seconds, cache_outcome(result.cache_status))
            if self.think > 0:
                await asyncio.sleep(self.rng.expovariate(1 / self.think))
            else:
                await asyncio.sleep(0)
