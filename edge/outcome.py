"""How the edge served one request, as a value: what Cache-Status (RFC 9211) and X-Cache say,
and the cache status the access log and the metrics count.

Every step of the flow returns an Outcome instead of a Cache-Status string that later code
would parse again; only a Cache-Status that came over the wire (a parent's, or the worker
owning a key, edge/workers.py) is parsed, by `Outcome.parse`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """One hop's view: a hit, or forwarded (`fwd`: miss, stale, method, bypass) with what came back."""

    hit: bool = False
    fwd: str | None = None
    fwd_status: int | None = None
    stored: bool = False
    collapsed: bool = False
    detail: str | None = None  # stale-while-revalidate, stale-if-error, error, client-gone
    ttl: int | None = None  # seconds of freshness left, on an answer from the cache

    @property
    def label(self) -> str:
        """The cache status the access log and the metrics count (hit, miss, stale, ...)."""
        if self.detail in ("error", "client-gone"):
            return self.detail
        return "hit" if self.hit else self.fwd or "error"

    @functools.cached_property
    def kind(self) -> str:
        """X-Cache's word (CloudFront's): Hit, RefreshHit (revalidated or stale-if-error) or Miss."""
        if self.hit:
            return "Hit"
        return "RefreshHit" if self.fwd_status == 304 or self.detail == "stale-if-error" else "Miss"

    @functools.cached_property
    def params(self) -> str:
        """The Cache-Status parameters after the edge's name (made once per outcome: the
        common ones are module constants, so a hit formats only its ttl)."""
        out = ["hit" if self.hit else f"fwd={self.fwd or 'miss'}"]
        if self.fwd_status is not None:
            out.append(f"fwd-status={self.fwd_status}")
        if self.stored:
            out.append("stored")
        if self.collapsed:
            out.append("collapsed")
        if self.detail is not None and self.detail != "client-gone":
            out.append(f"detail={self.detail}")
        if self.ttl is not None:
            out.append(f"ttl={self.ttl}")
        return "; ".join(out)

    def cache_status(self, edge: str, ttl: int | None = None) -> str:
        """This hop's Cache-Status member; `ttl`: the freshness left, on an answer from the cache."""
        return f"{edge}; {self.params}" if ttl is None else f"{edge}; {self.params}; ttl={ttl}"

    @classmethod
    def parse(cls, member: str) -> Outcome:
        """One member of a Cache-Status list as this module writes it ("edge; fwd=miss; ...")."""
        found: dict[str, str] = {}
        for param in member.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            found[name] = value
        status = found.get("fwd-status", "")
        ttl = found.get("ttl", "")
        return cls(
            hit="hit" in found,
            fwd=found.get("fwd") or None,
            fwd_status=int(status) if status.isdigit() else None,
            stored="stored" in found,
            collapsed="collapsed" in found,
            detail=found.get("detail") or None,
            ttl=int(ttl) if ttl.lstrip("-").isdigit() else None,
        )


HIT = Outcome(hit=True)
SWR_HIT = Outcome(hit=True, detail="stale-while-revalidate")
ERROR = Outcome(fwd="miss", detail="error")
GONE = Outcome(detail="client-gone")


def stale_if_error(status: int) -> Outcome:
    return Outcome(fwd="stale", fwd_status=status, detail="stale-if-error")
