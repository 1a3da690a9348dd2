"""Which distribution answers a Host, and which cache behavior a path gets. Pure.

Path patterns follow CloudFront: `*` matches any run of characters (slashes included), `?`
exactly one, everything else literally and case-sensitively; the first matching behavior wins
and the default behavior (`*`) is always last.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from web_dist.config import CacheBehavior, Distribution, Network
from web_dist.config.glob import glob_match


def path_matches(pattern: str, path: str) -> bool:
    return glob_match(pattern, path)


def behavior_for(dist: Distribution, path: str) -> CacheBehavior:
    for behavior in dist.behaviors:
        if path_matches(behavior.path_pattern, path):
            return behavior
    return dist.default_behavior


def host_name(host_header: str) -> str:
    """The name part of a Host header: lower-cased, port and trailing dot removed."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


class DistributionIndex:
    """Finds the distribution for a Host among those one edge serves."""

    def __init__(self, distributions: Iterable[Distribution], edge_name: str | None = None) -> None:
        # An edge also answers to its own name in front of a domain ("edge-lon.live.example"):
        # the names the request router sends browsers to, which keep the distribution known.
        self._edge_prefix = f"{edge_name.lower()}." if edge_name else None
        self._exact: dict[str, Distribution] = {}
        self._wildcards: list[tuple[str, Distribution]] = []
        for dist in distributions:
            for domain in dist.domains:
                if domain.startswith("*."):
                    self._wildcards.append((domain[1:], dist))
                else:
                    self._exact[domain] = dist
        # Longest suffix first, so *.img.example.com beats *.example.com.
        self._wildcards.sort(key=lambda item: -len(item[0]))

    def lookup(self, host_header: str) -> Distribution | None:
        host = host_name(host_header)
        found = self._match(host)
        if found is None and self._edge_prefix and host.startswith(self._edge_prefix):
            found = self._match(host[len(self._edge_prefix) :])
        return found

    def _match(self, host: str) -> Distribution | None:
        found = self._exact.get(host)
        if found is not None:
            return found
        for suffix, dist in self._wildcards:
            if host.endswith(suffix) and len(host) > len(suffix):
                return dist
        return None


def region_of(regions: Sequence[tuple[Network, str]], client: str) -> str | None:
    """The region of the most specific configured network holding `client` (None: unknown).
    The router picks edges by it and the edge's geo restriction allows or refuses by it."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return None
    best: tuple[int, str] | None = None
    for network, region in regions:
        if address.version == network.version and address in network:
            if best is None or network.prefixlen > best[0]:
                best = (network.prefixlen, region)
    return best[1] if best else None
