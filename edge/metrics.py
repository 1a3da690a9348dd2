"""What an edge counts about what it served, and how Prometheus and the dashboard read it.

The flow calls `count()` on every request, cache hits included, so recording is a dict lookup
and two integer additions; nothing of prometheus_client runs per request. A collector turns the
plain counters into metric families when /metrics is scraped, and `snapshot()` into JSON for
the dashboard. Store gauges (entries, bytes, evictions) are read from the stores themselves at
scrape time, so the stores keep no second copy.

Every piece of state is a number, a fixed list of bucket counts or a dict of those, so the
metrics of several worker processes of one edge can be merged by adding them key by key; the
history (edge/history.py) samples totals derived from the same counters.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector

from edge.history import History, quantile, rows
from edge.live import LiveStats

HIT = "hit"  # the cache status the hit ratio counts as served from cache
ORIGIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# seconds from a request's arrival to its last byte sent (an LL-HLS blocking reload includes its
# wait for the next part: up to a part's duration)
RESPONSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MAX_PATTERNS = 500  # distinct object patterns counted; the rest are counted as OTHER
OTHER = "(other)"
_NUMBERS = re.compile(r"[0-9a-f]{8,}|[0-9]+")  # a run of digits, or a hash-like run of hex


@lru_cache(maxsize=4096)
def object_pattern(key: str) -> str:
    """The group of a cache key in the top objects table: `dist:/dir/name` without query or
    varied headers, numbers (and hex hashes) of the file name before its extension as `*`, a folder made only of
    digits as `*`: `live:/live/cam/720p/seg41.m4s?x=1` -> `live:/live/cam/720p/seg*.m4s`."""
    key = key.split("|", 1)[0].split("?", 1)[0]
    folder, _, name = key.rpartition("/")
    parts = ["*" if p.isdigit() else p for p in folder.split("/")]
    stem, dot, ext = name.rpartition(".")
    name = _NUMBERS.sub("*", stem) + dot + ext if dot else _NUMBERS.sub("*", name)
    return "/".join(parts) + ("/" if folder or key.startswith("/") else "") + name


class CacheTier(Protocol):
    """What a store shows about itself (MemoryStore, later the disk tier)."""

    used_bytes: int
    capacity_bytes: int
    evictions: int

    def __len__(self) -> int: ...


class TopObjects:
    """The most requested cache keys, in memory bounded by `capacity`.

    At most 2 * capacity keys are held; when the table is full the `capacity` most requested
    stay and the rest go (Lossy Counting's pruning). A key that enters later starts from
    `floor`, the highest count dropped so far, so a count is never under the truth and over it
    by at most the `error` recorded when the key entered; a key requested more than `floor`
    times is always in the table. Bytes are counted from when a key entered.
    """

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.floor = 0
        self._cells: dict[str, list[int]] = {}  # key -> [requests, bytes, error]

    def __len__(self) -> int:
        return len(self._cells)

    def count(self, key: str, sent: int) -> None:
        cell = self._cells.get(key)
        if cell is None:
            if len(self._cells) >= 2 * self.capacity:
                self._prune()
            self._cells[key] = [self.floor + 1, sent, self.floor]
            return
        cell[0] += 1
        cell[1] += sent

    def top(self, n: int) -> list[tuple[str, int, int, int]]:
        """(key, requests, bytes, error) of the `n` most requested keys, most requested first."""
        ranked = sorted(self._cells.items(), key=lambda item: (-item[1][0], item[0]))[:n]
        return [(key, requests, sent, error) for key, (requests, sent, error) in ranked]

    def export(self) -> dict[str, Any]:
        return {"floor": self.floor, "cells": self._cells}

    def absorb(self, state: dict[str, Any]) -> None:
        """Another table's counts added to these (each bound stays a bound of the sum)."""
        self.floor = max(self.floor, state["floor"])
        for key, (requests, sent, error) in state["cells"].items():
            cell = self._cells.setdefault(key, [0, 0, 0])
            cell[0] += requests
            cell[1] += sent
            cell[2] += error
        while len(self._cells) > 2 * self.capacity:
            self._prune()

    def _prune(self) -> None:
        ranked = sorted(self._cells.items(), key=lambda item: item[1][0], reverse=True)
        kept, dropped = ranked[: self.capacity], ranked[self.capacity :]
        if dropped:
            self.floor = max(self.floor, dropped[0][1][0])
        self._cells = dict(kept)


class EdgeMetrics:
    """Counters of one edge; `registry` is its own, so several edges can share a process."""

    def __init__(self, *, clock: Callable[[], float] = time.time, top_capacity: int = 1000) -> None:
        self.clock = clock
        self.started = clock()
        # (distribution, cache status, HTTP status) -> [responses, bytes sent]
        self.responses: dict[tuple[str, str, int], list[int]] = {}
        self.origin_requests = 0
        self.origin_outcomes: dict[tuple[str, str], int] = {}  # (origin, outcome) -> requests
        self.origin_latency: dict[str, list[int]] = {}  # origin -> count per ORIGIN_BUCKETS, then +Inf
        self.origin_seconds: dict[str, float] = {}
        self.objects = TopObjects(top_capacity)
        self.patterns: dict[str, list[int]] = {}  # object_pattern -> [requests, bytes sent]
        self.response_latency: dict[str, list[int]] = {}  # distribution -> count per RESPONSE_BUCKETS, then +Inf
        self.response_seconds: dict[str, float] = {}
        self.history = History()
        self.tiers: dict[str, CacheTier] = {}
        self.live = LiveStats(clock=clock)  # streaming distributions: viewers, egress, origin requests per object
        self.registry = CollectorRegistry()
        self.registry.register(_EdgeCollector(self))
        ProcessCollector(registry=self.registry)

    # -- recorded by the flow --------------------------------------------------------------
    def count(self, dist: str, cache: str, status: int, sent: int, seconds: float | None = None) -> None:
        """One answered request: its distribution, cache status, HTTP status, bytes sent and
        the seconds from its arrival to its last byte."""
        cell = self.responses.get((dist, cache, status))
        if cell is None:
            cell = self.responses[dist, cache, status] = [0, 0]
        cell[0] += 1
        cell[1] += sent
        if seconds is not None:
            buckets = self.response_latency.get(dist)
            if buckets is None:
                buckets = self.response_latency[dist] = [0] * (len(RESPONSE_BUCKETS) + 1)
            buckets[bisect_left(RESPONSE_BUCKETS, seconds)] += 1
            self.response_seconds[dist] = self.response_seconds.get(dist, 0.0) + seconds
        now = self.clock()
        if self.history.due(now):
            self.history.record(now, self.totals())

    def count_object(self, key: str, sent: int) -> None:
        """One request for cache key `key` (for the top objects table and its patterns)."""
        self.objects.count(key, sent)
        pattern = object_pattern(key)
        cell = self.patterns.get(pattern)
        if cell is None:
            if len(self.patterns) >= MAX_PATTERNS:
                pattern = OTHER
            cell = self.patterns.setdefault(pattern, [0, 0])
        cell[0] += 1
        cell[1] += sent

    def observe_origin(self, origin: str, seconds: float, status: int | None) -> None:
        """One request to `origin`: seconds until its answer's head (or failure), status None if it failed."""
        outcome = "failed" if status is None else f"{status // 100}xx"
        self.origin_requests += 1
        self.origin_outcomes[origin, outcome] = self.origin_outcomes.get((origin, outcome), 0) + 1
        buckets = self.origin_latency.get(origin)
        if buckets is None:
            buckets = self.origin_latency[origin] = [0] * (len(ORIGIN_BUCKETS) + 1)
        buckets[bisect_left(ORIGIN_BUCKETS, seconds)] += 1
        self.origin_seconds[origin] = self.origin_seconds.get(origin, 0.0) + seconds

    def bind_store(self, tier: str, store: CacheTier) -> None:
        """Report `store` as cache tier `tier` ("memory", "disk"); binding a tier again replaces it."""
        self.tiers[tier] = store

    # -- read at scrape time ---------------------------------------------------------------
    def hit_ratio(self) -> float:
        hits = total = 0
        for (_, cache, _), (n, _) in self.responses.items():
            total += n
            if cache == HIT:
                hits += n
        return hits / total if total else 0.0

    def offload_ratio(self) -> float:
        """Share of requests that cost the origin nothing: hits, and misses collapsed onto
        another request's fetch (the hit ratio counts those as misses, as Cache-Status does)."""
        total = sum(n for n, _ in self.responses.values())
        return max(0.0, 1 - self.origin_requests / total) if total else 0.0

    def totals(self) -> dict[str, Any]:
        """The running totals one history sample keeps (all summable across processes)."""
        requests = hits = sent = errors = 0
        statuses: dict[str, int] = {}
        for (_, cache, status), (n, out) in self.responses.items():
            requests += n
            sent += out
            hits += n if cache == HIT else 0
            errors += n if status >= 500 else 0
            group = f"{status // 100}xx"
            statuses[group] = statuses.get(group, 0) + n
        return {
            "requests": requests,
            "hits": hits,
            "bytes": sent,
            "errors": errors,
            "statuses": statuses,
            "origin_requests": self.origin_requests,
            "origin_seconds": sum(self.origin_seconds.values()),
            "origin_buckets": _added(self.origin_latency.values(), len(ORIGIN_BUCKETS) + 1),
            "response_seconds": sum(self.response_seconds.values()),
            "response_buckets": _added(self.response_latency.values(), len(RESPONSE_BUCKETS) + 1),
            "live_viewers": sum(s.live_viewers(self.clock(), self.live.window) for s in self.live.streams.values()),
        }

    def history_rows(self) -> list[dict[str, Any]]:
        """The history as rates and percentiles per interval, the last one up to now."""
        now = self.clock()
        if self.history.due(now):
            self.history.record(now, self.totals())
        current = {**self.totals(), "time": now}
        return rows([*self.history.samples, current], response_bounds=RESPONSE_BUCKETS, origin_bounds=ORIGIN_BUCKETS)

    def top_patterns(self, n: int) -> list[dict[str, Any]]:
        ranked = sorted(self.patterns.items(), key=lambda item: (-item[1][0], item[0]))[:n]
        return [{"pattern": pattern, "requests": requests, "bytes": sent} for pattern, (requests, sent) in ranked]

    def snapshot(self, top: int = 20) -> dict[str, Any]:
        """Everything counted so far as JSON-ready values (the dashboard's /metrics.json)."""
        by_dist: dict[str, dict[str, int]] = {}
        statuses: dict[int, int] = {}
        bytes_out: dict[str, int] = {}
        for (dist, cache, status), (n, sent) in self.responses.items():
            row = by_dist.setdefault(dist, {})
            row[cache] = row.get(cache, 0) + n
            statuses[status] = statuses.get(status, 0) + n
            bytes_out[dist] = bytes_out.get(dist, 0) + sent
        tiers = {name: _tier_state(store) for name, store in self.tiers.items()}
        now = self.clock()
        response = _added(self.response_latency.values(), len(RESPONSE_BUCKETS) + 1)
        return {
            "time": now,
            "started": self.started,
            "uptime_seconds": round(now - self.started, 3),
            "requests": by_dist,
            "requests_total": sum(statuses.values()),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "bytes_out": bytes_out,
            "bytes_out_total": sum(bytes_out.values()),
            "hit_ratio": round(self.hit_ratio(), 4),
            "offload_ratio": round(self.offload_ratio(), 4),
            "origin_requests": self.origin_requests,
            "errors_total": sum(n for (_, _, status), (n, _) in self.responses.items() if status >= 500),
            "origins": self._origins_snapshot(),
            "response_seconds": {
                "count": sum(response),
                "sum": round(sum(self.response_seconds.values()), 6),
                **{f"p{q}": _rounded(quantile(RESPONSE_BUCKETS, response, q / 100)) for q in (50, 90, 95, 99)},
            },
            "cache": tiers,
            "cache_entries": sum(t["entries"] for t in tiers.values()),
            "cache_bytes": sum(t["bytes"] for t in tiers.values()),
            "cache_capacity_bytes": sum(t["capacity_bytes"] for t in tiers.values()),
            "evictions": sum(t["evictions"] for t in tiers.values()),
            "top_objects": [
                {"key": key, "requests": n, "bytes": sent, "error": error}
                for key, n, sent, error in self.objects.top(top)
            ],
            "top_patterns": self.top_patterns(top),
            "history_interval_seconds": self.history.interval,
            "history": self.history_rows(),
            "live": self.live.snapshot(),
        }

    # -- several worker processes, one edge (edge/workers.py) -------------------------------------
    def export(self) -> dict[str, Any]:
        """The raw counters as JSON-ready values, for `absorb` in another process."""
        return {
            "started": self.started,
            "responses": [[d, c, s, n, b] for (d, c, s), (n, b) in self.responses.items()],
            "origin_requests": self.origin_requests,
            "origin_outcomes": [[o, out, n] for (o, out), n in self.origin_outcomes.items()],
            "origin_latency": self.origin_latency,
            "origin_seconds": self.origin_seconds,
            "objects": self.objects.export(),
            "patterns": self.patterns,
            "response_latency": self.response_latency,
            "response_seconds": self.response_seconds,
            "history": list(self.history.samples),
            "tiers": {name: _tier_state(store) for name, store in self.tiers.items()},
            "live": self.live.export(),
        }

    def absorb(self, state: dict[str, Any]) -> None:
        """Add another process's `export()` to these counters (every counter is a sum)."""
        self.started = min(self.started, state["started"])
        for dist, cache, status, n, sent in state["responses"]:
            cell = self.responses.setdefault((dist, cache, status), [0, 0])
            cell[0] += n
            cell[1] += sent
        self.origin_requests += state["origin_requests"]
        for origin, outcome, n in state["origin_outcomes"]:
            self.origin_outcomes[origin, outcome] = self.origin_outcomes.get((origin, outcome), 0) + n
        for origin, counts in state["origin_latency"].items():
            mine = self.origin_latency.setdefault(origin, [0] * (len(ORIGIN_BUCKETS) + 1))
            self.origin_latency[origin] = [a + b for a, b in zip(mine, counts, strict=True)]
        for origin, seconds in state["origin_seconds"].items():
            self.origin_seconds[origin] = self.origin_seconds.get(origin, 0.0) + seconds
        self.objects.absorb(state["objects"])
        for pattern, (n, sent) in state["patterns"].items():
            cell = self.patterns.setdefault(pattern, [0, 0])
            cell[0] += n
            cell[1] += sent
        for dist, counts in state["response_latency"].items():
            mine = self.response_latency.setdefault(dist, [0] * (len(RESPONSE_BUCKETS) + 1))
            self.response_latency[dist] = [a + b for a, b in zip(mine, counts, strict=True)]
        for dist, seconds in state["response_seconds"].items():
            self.response_seconds[dist] = self.response_seconds.get(dist, 0.0) + seconds
        self.history.absorb(state["history"])
        for name, tier in state["tiers"].items():
            self.tiers[name] = SummedTier.of(self.tiers.get(name), tier)
        self.live.absorb(state["live"])

    def _origins_snapshot(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for (origin, outcome), n in sorted(self.origin_outcomes.items()):
            entry = out.setdefault(origin, {"outcomes": {}, "seconds_sum": 0.0})
            entry["outcomes"][outcome] = n
            entry["seconds_sum"] = round(self.origin_seconds.get(origin, 0.0), 6)
            counts = self.origin_latency.get(origin, [])
            entry["seconds_p50"] = _rounded(quantile(ORIGIN_BUCKETS, counts, 0.5))
            entry["seconds_p95"] = _rounded(quantile(ORIGIN_BUCKETS, counts, 0.95))
        return out


@dataclass
class SummedTier:
    """A cache tier as the sum of several processes' tiers (what `absorb` reports)."""

    entries: int = 0
    used_bytes: int = 0
    capacity_bytes: int = 0
    evictions: int = 0

    def __len__(self) -> int:
        return self.entries

    @classmethod
    def of(cls, tier: CacheTier | None, state: dict[str, int]) -> SummedTier:
        base = cls() if tier is None else cls(len(tier), tier.used_bytes, tier.capacity_bytes, tier.evictions)
        return cls(
            base.entries + state["entries"],
            base.used_bytes + state["bytes"],
            base.capacity_bytes + state["capacity_bytes"],
            base.evictions + state["evictions"],
        )


def _added(lists: Iterator[list[int]] | Any, size: int) -> list[int]:
    """Bucket counts added position by position."""
    out = [0] * size
    for counts in lists:
        for i, n in enumerate(counts):
            out[i] += n
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _tier_state(store: CacheTier) -> dict[str, int]:
    return {
        "entries": len(store),
        "bytes": store.used_bytes,
        "capacity_bytes": store.capacity_bytes,
        "evictions": store.evictions,
    }


class _EdgeCollector:
    """Builds the Prometheus families from an EdgeMetrics when the registry is scraped."""

    def __init__(self, metrics: EdgeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        # (name, help, labels, key positions of `responses` kept as labels, field summed)
        for name, doc, labels, by, field in (
            (
                "cdn_edge_requests",
                "Requests answered, by distribution and cache status",
                ["distribution", "cache_status"],
                (0, 1),
                0,
            ),
            ("cdn_edge_responses", "Responses sent, by HTTP status", ["status"], (2,), 0),
            ("cdn_edge_bytes_sent", "Bytes sent to viewers, by distribution", ["distribution"], (0,), 1),
        ):
            family = CounterMetricFamily(name, doc, labels=labels)
            for values, n in _sums(m.responses, by, field).items():
                family.add_metric(values, n)
            yield family
        yield from self._response_families()
        yield GaugeMetricFamily(
            "cdn_edge_start_time_seconds", "When the edge started, seconds since the epoch", value=m.started
        )
        yield GaugeMetricFamily(
            "cdn_edge_hit_ratio", "Share of requests served from cache since start", value=m.hit_ratio()
        )
        yield GaugeMetricFamily(
            "cdn_edge_offload_ratio",
            "Share of requests since start that made no origin request (hits and collapsed misses)",
            value=m.offload_ratio(),
        )
        yield from self._origin_families()
        yield from self._tier_families()
        yield from m.live.families()

    def _response_families(self) -> Iterator[Metric]:
        m = self.metrics
        latency = HistogramMetricFamily(
            "cdn_edge_response_seconds",
            "Seconds from a request's arrival to its last byte sent, by distribution",
            labels=["distribution"],
        )
        for dist, counts in sorted(m.response_latency.items()):
            latency.add_metric([dist], _cumulative(RESPONSE_BUCKETS, counts), m.response_seconds.get(dist, 0.0))
        yield latency

    def _origin_families(self) -> Iterator[Metric]:
        m = self.metrics
        outcomes = CounterMetricFamily(
            "cdn_edge_origin_requests",
            "Requests to origins, by outcome (2xx..5xx, failed)",
            labels=["origin", "outcome"],
        )
        for (origin, outcome), n in sorted(m.origin_outcomes.items()):
            outcomes.add_metric([origin, outcome], n)
        yield outcomes
        latency = HistogramMetricFamily(
            "cdn_edge_origin_seconds", "Seconds until an origin's response head, or its failure", labels=["origin"]
        )
        for origin, counts in sorted(m.origin_latency.items()):
            latency.add_metric([origin], _cumulative(ORIGIN_BUCKETS, counts), m.origin_seconds.get(origin, 0.0))
        yield latency

    def _tier_families(self) -> Iterator[Metric]:
        states = [(tier, _tier_state(store)) for tier, store in sorted(self.metrics.tiers.items())]
        for name, doc, field in (
            ("cdn_edge_cache_bytes", "Bytes held in each cache tier", "bytes"),
            ("cdn_edge_cache_capacity_bytes", "Bytes each cache tier may hold", "capacity_bytes"),
            ("cdn_edge_cache_entries", "Objects held in each cache tier", "entries"),
        ):
            gauge = GaugeMetricFamily(name, doc, labels=["tier"])
            for tier, state in states:
                gauge.add_metric([tier], state[field])
            yield gauge
        evictions = CounterMetricFamily("cdn_edge_cache_evictions", "Objects evicted to make room", labels=["tier"])
        for tier, state in states:
            evictions.add_metric([tier], state["evictions"])
        yield evictions


def _sums(cells: dict[tuple[str, str, int], list[int]], by: tuple[int, ...], field: int) -> dict[tuple[str, ...], int]:
    """`cells` summed over the key positions not in `by`, as label values (field 0 counts, 1 bytes)."""
    out: dict[tuple[str, ...], int] = {}
    for key, cell in cells.items():
        labels = tuple(str(key[i]) for i in by)
        out[labels] = out.get(labels, 0) + cell[field]
    return dict(sorted(out.items()))


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Prometheus' `le` buckets from counts per bucket."""
    total, out = 0, []
    for bound, n in zip((*map(repr, bounds), "+Inf"), counts, strict=True):
        total += n
        out.append((bound, float(total)))
    return out
