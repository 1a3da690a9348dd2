"""Counters an edge keeps about what it served (read by /_cdn/metrics)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EdgeMetrics:
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (distribution, cache status)
    statuses: Counter[int] = field(default_factory=Counter)
    bytes_out: Counter[str] = field(default_factory=Counter)
    origin_requests: int = 0

    def count(self, dist: str, cache: str, status: int, sent: int) -> None:
        self.requests[dist, cache] += 1
        self.statuses[status] += 1
        self.bytes_out[dist] += sent

    def hit_ratio(self) -> float:
        hits = sum(n for (_, cache), n in self.requests.items() if cache == "hit")
        total = sum(self.requests.values())
        return hits / total if total else 0.0

    def snapshot(self) -> dict[str, Any]:
        by_dist: dict[str, dict[str, int]] = {}
        for (dist, cache), n in self.requests.items():
            by_dist.setdefault(dist, {})[cache] = n
        return {
            "requests": by_dist,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "bytes_out": dict(self.bytes_out),
            "origin_requests": self.origin_requests,
            "hit_ratio": round(self.hit_ratio(), 4),
        }
