"""What every virtual viewer of a load test reports, counted in one place. No I/O.

Viewers call the `Tally` as things happen (a request, an error, a media fetch, a latency
sample); the load test reads `tick()` about once a second for the progress line and the time
series. Samples kept for the report are bounded (reservoir sampling), so a long run with
thousands of viewers holds a fixed amount of memory.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

KEEP_SAMPLES = 20_000
KEEP_ERROR_SOURCES = 50  # distinct (kind, edge, URL) of failed requests; later ones are "other URLs"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Reservoir:
    """At most `capacity` items, each seen item equally likely to be kept (Algorithm R)."""

    def __init__(self, capacity: int = KEEP_SAMPLES, seed: int = 1) -> None:
        self.capacity = capacity
        self.seen = 0
        self.items: list[tuple[float, ...]] = []
        self._random = random.Random(seed)

    def add(self, item: tuple[float, ...]) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.capacity:
            self.items[slot] = item


@dataclass
class Tick:
    """Counts since the previous tick."""

    requests: int = 0
    fetch_seconds: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


class Tally:
    """Totals and samples of one run, shared by all its viewers."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.errors: Counter[str] = Counter()
        self.error_sources: Counter[tuple[str, str, str]] = Counter()  # (kind, edge, URL) -> count
        self.statuses: Counter[str] = Counter()  # cache status seen by viewers (web mode)
        self.fetches = Reservoir()  # (seconds, media duration) per media fetch
        self.latencies = Reservoir()  # (seconds behind live,)
        self.request_times = Reservoir()  # (seconds,) per web request
        self.media_fetches = 0
        self.late_fetches = 0  # media fetches slower than the media they carried
        self.hinted = 0  # parts played from a request sent on EXT-X-PRELOAD-HINT
        self.hint_misses = 0  # hinted requests that failed or whose part was never listed
        self._tick = Tick()

    def request(self, size: int) -> None:
        self.requests += 1
        self.bytes += size
        self._tick.requests += 1

    def error(self, kind: str, url: str = "", edge: str = "") -> None:
        """A failed request (or viewer); `url` and `edge` say where, when it was a request."""
        self.errors[kind] += 1
        if url:
            source = (kind, edge, url)
            if source not in self.error_sources and len(self.error_sources) >= KEEP_ERROR_SOURCES:
                source = (kind, edge, "other URLs")
            self.error_sources[source] += 1

    def error_report(self) -> list[dict[str, object]]:
        """Where requests failed, most often first: kind, edge, URL, count."""
        return [{"kind": k, "edge": e, "url": u, "count": n} for (k, e, u), n in self.error_sources.most_common()]

    def media(self, seconds: float, duration: float) -> None:
        self.media_fetches += 1
        if seconds > duration:
            self.late_fetches += 1
        self.fetches.add((seconds, duration))
        self._tick.fetch_seconds.append(seconds)

    def hint(self, *, used: bool) -> None:
        if used:
            self.hinted += 1
        else:
            self.hint_misses += 1

    def latency(self, seconds: float) -> None:
        self.latencies.add((seconds,))
        self._tick.latencies.append(seconds)

    def web(self, seconds: float, cache_status: str) -> None:
        self.request_times.add((seconds,))
        self.statuses[cache_status] += 1
        self._tick.fetch_seconds.append(seconds)

    def tick(self) -> Tick:
        """What happened since the last call."""
        done, self._tick = self._tick, Tick()
        return done
