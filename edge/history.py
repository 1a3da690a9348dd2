"""The edge's recent past, kept by the edge: opening the dashboard shows the last minutes.

Every `interval` seconds (at the first request or read of a new slot, so an idle edge does no
work) the edge's running totals are copied into a ring buffer of `keep` samples. A sample holds
only totals and bucket counts stamped with the start of its slot, so the samples of several
worker processes add up slot by slot into the samples of the whole edge. Rates and
percentiles are worked out when read (`rows`), from the difference between two samples.

Pure: the caller passes the time and the totals.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

HISTORY_INTERVAL = 5.0  # seconds between samples
HISTORY_SAMPLES = 180  # 15 minutes of them

Sample = dict[str, Any]  # "time" (slot start), numbers, and lists / dicts of numbers


class History:
    """A ring buffer of total samples, at most one per `interval`-second slot."""

    def __init__(self, interval: float = HISTORY_INTERVAL, keep: int = HISTORY_SAMPLES) -> None:
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=keep)
        self._next = -math.inf  # start of the next slot to sample

    def due(self, now: float) -> bool:
        """Whether `now` is in a slot that has no sample yet (one float comparison)."""
        return now >= self._next

    def record(self, now: float, totals: Mapping[str, Any]) -> None:
        """Keep `totals` as the sample of the slot `now` falls in (once per slot)."""
        slot = math.floor(now / self.interval) * self.interval
        if self.samples and self.samples[-1]["time"] >= slot:
            return
        self.samples.append({**totals, "time": slot})
        self._next = slot + self.interval

    def absorb(self, samples: Iterable[Sample]) -> None:
        """Another process's samples added in, slot by slot (edge/workers.py). Totals only grow,
        so a slot one side did not sample counts that side's latest sample before it."""
        mine, theirs = list(self.samples), list(samples)
        times = sorted({s["time"] for s in mine} | {s["time"] for s in theirs})
        merged = [{**_sum(_latest(mine, t), _latest(theirs, t)), "time": t} for t in times]
        self.samples = deque(merged[-(self.samples.maxlen or len(merged)) :], maxlen=self.samples.maxlen)


def _latest(samples: list[Sample], time: float) -> Sample | None:
    found = None
    for sample in samples:
        if sample["time"] > time:
            break
        found = sample
    return found


def _sum(a: Any, b: Any) -> Any:
    """Two samples (or parts of them) added: numbers, dicts and lists of numbers; None is nothing."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, dict):
        return {k: _sum(a.get(k), b.get(k)) for k in a.keys() | b.keys() if k != "time"}
    if isinstance(a, list):
        return [_sum(x, y) for x, y in zip(a, b, strict=True)] if len(a) == len(b) else a
    return a + b


def quantile(bounds: Sequence[float], counts: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram: `counts` per bucket (not cumulative), the last one
    above the last bound; linear within a bucket, as Prometheus' histogram_quantile. None when
    empty; the top bound when the quantile falls in the +Inf bucket."""
    total = sum(counts)
    if total <= 0:
        return None
    rank, below = q * total, 0.0
    for i, n in enumerate(counts):
        if n and below + n >= rank:
            if i >= len(bounds):
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (rank - below) / n
        below += n
    return bounds[-1]


def _minus(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)] if len(a) == len(b) else list(a)


def rows(
    samples: Iterable[Sample], *, response_bounds: Sequence[float], origin_bounds: Sequence[float]
) -> list[dict[str, Any]]:
    """Per interval between consecutive samples: rates per second, ratios and percentiles."""
    out: list[dict[str, Any]] = []
    previous: Sample | None = None
    for sample in samples:
        if previous is not None and sample["time"] > previous["time"]:
            out.append(_row(previous, sample, response_bounds, origin_bounds))
        previous = sample
    return out


def _row(a: Sample, b: Sample, response_bounds: Sequence[float], origin_bounds: Sequence[float]) -> dict[str, Any]:
    dt = b["time"] - a["time"]
    requests = b["requests"] - a["requests"]
    origin = b["origin_requests"] - a["origin_requests"]
    response = _minus(b["response_buckets"], a["response_buckets"])
    origin_buckets = _minus(b["origin_buckets"], a["origin_buckets"])
    origin_seconds = b["origin_seconds"] - a["origin_seconds"]

    def rounded(value: float | None, digits: int = 4) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "time": b["time"],
        "seconds": round(dt, 3),
        "requests_per_second": round(requests / dt, 2),
        "bytes_per_second": round((b["bytes"] - a["bytes"]) / dt, 1),
        "hit_ratio": rounded((b["hits"] - a["hits"]) / requests) if requests else None,
        "statuses_per_second": {
            k: round((n - a["statuses"].get(k, 0)) / dt, 3) for k, n in sorted(b["statuses"].items())
        },
        "errors_per_second": round((b["errors"] - a["errors"]) / dt, 3),
        "origin_requests_per_second": round(origin / dt, 3),
        "origin_seconds_mean": rounded(origin_seconds / origin) if origin else None,
        "origin_seconds_p95": rounded(quantile(origin_bounds, origin_buckets, 0.95)),
        "response_seconds_p50": rounded(quantile(response_bounds, response, 0.50)),
        "response_seconds_p95": rounded(quantile(response_bounds, response, 0.95)),
        "response_seconds_p99": rounded(quantile(response_bounds, response, 0.99)),
        "live_viewers": b.get("live_viewers", 0),
    }
