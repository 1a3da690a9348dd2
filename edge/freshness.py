"""Freshness and age (RFC 9111 section 4.2) with CloudFront's TTL clamping. Pure functions.

CloudFront's rule, which the behaviors configure: when the origin states a lifetime
(`s-maxage`, `max-age`, `Expires`) the edge keeps the object that long clamped to the
behavior's [min_ttl, max_ttl]; when it states none, `default_ttl`. `no-store` and `private`
are never stored by this shared cache; `no-cache` means a stated lifetime of 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edge.structured_fields import cdn_cache_control
from web_dist.config import CacheBehavior
from web_dist.http.semantics import format_http_date, parse_http_date

__all__ = ["format_http_date", "parse_http_date"]

# RFC 9110 section 15.1: statuses a cache may store without an explicit lifetime.
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# Error statuses CloudFront caches for the distribution's error caching TTL.
CACHED_ERRORS = frozenset({400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504})
HEURISTIC_FRACTION = 0.1
HEURISTIC_CAP = 86400.0
MAX_AGE = 2**31  # RFC 9111 1.2.2: the largest delta-seconds a cache need keep


@dataclass(frozen=True)
class CacheControl:
    """Parsed Cache-Control directives: names lower-cased, values unquoted (None if absent)."""

    directives: Mapping[str, str | None]

    def has(self, name: str) -> bool:
        return name in self.directives

    def seconds(self, name: str) -> int | None:
        """A delta-seconds directive; a malformed value counts as 0 (RFC 9111 1.2.2)."""
        if name not in self.directives:
            return None
        value = self.directives[name]
        if value is None or not value.isdigit():
            return 0
        return min(int(value), 2**31)


def parse_cache_control(values: Iterable[str]) -> CacheControl:
    directives: dict[str, str | None] = {}
    for value in values:
        for part in _split_commas(value):
            name, sep, arg = part.partition("=")
            name = name.strip().lower()
            if not name:
                continue
            arg = arg.strip()
            if len(arg) >= 2 and arg[0] == arg[-1] == '"':
                arg = arg[1:-1]
            directives.setdefault(name, arg if sep else None)
    return CacheControl(directives)


def _split_commas(value: str) -> list[str]:
    """Split on commas outside quoted strings (no-cache="a, b")."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


@dataclass(frozen=True)
class Lifetime:
    """What the edge decided for one response: store it or not, and for how long."""

    store: bool
    ttl: float = 0.0
    reason: str = ""
    must_revalidate: bool = False


def response_cache_control(headers: Mapping[str, str]) -> CacheControl:
    """CDN-Cache-Control (RFC 9213) wins over Cache-Control when present and valid: a value
    that is not a Structured Field dictionary, or has a directive of the wrong type, is
    ignored as a whole."""
    targeted = headers.get("cdn-cache-control")
    parsed = cdn_cache_control(targeted) if targeted is not None else None
    if parsed is None:
        return parse_cache_control([headers.get("cache-control", "")])
    directives: dict[str, str | None] = {}
    for name, value in parsed.items():
        if value is True:
            directives[name] = None
        elif value is not False:
            directives[name] = str(value)
    return CacheControl(directives)


def decide_lifetime(
    status: int,
    headers: Mapping[str, str],
    behavior: CacheBehavior,
    *,
    has_authorization: bool = False,
    error_ttl: float = 10.0,
    now: float,
) -> Lifetime:
    """Whether and how long to keep a response to GET; `headers` lower-cased and comma-joined."""
    cc = response_cache_control(headers)
    if cc.has("no-store"):
        return Lifetime(False, reason="no-store")
    if cc.has("private"):
        return Lifetime(False, reason="private")
    if status in (206, 304) or status < 200:
        return Lifetime(False, reason=f"status {status}")
    if has_authorization and not (cc.has("public") or cc.has("s-maxage") or cc.has("must-revalidate")):
        return Lifetime(False, reason="authorization")
    if "*" in vary_names(headers.get("vary")):
        return Lifetime(False, reason="vary *")
    no_cache = cc.has("no-cache") and not cc.directives["no-cache"]  # with field names: see _shareable
    # s-maxage carries proxy-revalidate's meaning (RFC 9111 5.2.2.10): no stale answers, unless
    # the same response grants them explicitly (RFC 5861's stale-while-revalidate / -if-error).
    stale_granted = cc.has("stale-while-revalidate") or cc.has("stale-if-error")
    revalidate = (
        cc.has("must-revalidate")
        or cc.has("proxy-revalidate")
        or no_cache
        or (cc.has("s-maxage") and not stale_granted)
    )
    explicit = explicit_lifetime(cc, headers)
    if explicit is not None:
        ttl = min(max(explicit, behavior.min_ttl), behavior.max_ttl)
        return Lifetime(True, ttl, "explicit", revalidate)
    if status >= 400:
        # Errors without a stated lifetime: only for the operator's error_ttl (0: never).
        if status in CACHED_ERRORS and error_ttl > 0:
            return Lifetime(True, error_ttl, "error-ttl", revalidate)
        return Lifetime(False, reason=f"status {status}")
    if status not in HEURISTICALLY_CACHEABLE and not cc.has("public"):
        return Lifetime(False, reason=f"status {status}")
    if behavior.default_ttl > 0:
        return Lifetime(True, behavior.default_ttl, "default-ttl", revalidate)
    return Lifetime(True, heuristic_lifetime(headers, now), "heuristic", revalidate)


def explicit_lifetime(cc: CacheControl, headers: Mapping[str, str]) -> float | None:
    """no-cache (RFC 9111 5.2.2.4: never reused without revalidation) over s-maxage over max-age
    over Expires - Date; an invalid Expires means already stale."""
    if cc.has("no-cache") and not cc.directives["no-cache"]:
        return 0.0
    for name in ("s-maxage", "max-age"):
        value = cc.seconds(name)
        if value is not None:
            return float(value)
    if "expires" not in headers:
        return None
    expires = parse_http_date(headers["expires"])
    date = parse_http_date(headers.get("date"))
    if expires is None or date is None:
        return 0.0
    return max(0.0, expires - date)


def heuristic_lifetime(headers: Mapping[str, str], now: float) -> float:
    """A fraction of the time since Last-Modified, capped (RFC 9111 4.2.2)."""
    modified = parse_http_date(headers.get("last-modified"))
    date = parse_http_date(headers.get("date")) or now
    if modified is None or modified >= date:
        return 0.0
    return min((date - modified) * HEURISTIC_FRACTION, HEURISTIC_CAP)


def vary_names(vary: str | None) -> tuple[str, ...]:
    """Request headers a response varies on, lower-cased and sorted.

    Accept-Encoding is left out: the edge asks origins for identity and compresses itself.
    """
    if not vary:
        return ()
    names = {v.strip().lower() for v in vary.split(",") if v.strip()}
    return tuple(sorted(names - {"accept-encoding"}))


def corrected_initial_age(
    headers: Mapping[str, str], request_time: float, response_time: float, *, held: bool = False
) -> float:
    """RFC 9111 4.2.3: the age a response already had when it arrived.

    This is the RFC's corrected_age_value: Age plus response_delay, the request's round trip.
    Like Varnish we leave out apparent_age (now - Date): a skewed origin clock would otherwise
    age, or even expire, every object on arrival. But the round trip is no age when the origin
    held the request on purpose and made the response when it answered (`held`: an LL-HLS
    blocking reload, RFC 8216bis 6.2.5.2), and no more than `response_time - Date` when Date
    says the response was made after the request was sent (a held part): the hold is not age.
    """
    delay = 0.0 if held else max(0.0, response_time - request_time)
    date = parse_http_date(headers.get("date"))
    if date is not None and date > request_time:
        delay = min(delay, max(0.0, response_time - date))
    return age_value(headers.get("age")) + delay


def age_value(header: str | None) -> float:
    """RFC 9111 5.1: Age is a non-negative integer; of several lines the first counts; any
    other value makes the response stale (taken as the largest age, 2**31)."""
    if header is None:
        return 0.0
    first = header.split(",", 1)[0].strip()
    if not first.isascii() or not first.isdigit():
        return float(MAX_AGE)
    return float(min(int(first), MAX_AGE))
