"""A geography's topology: locations (origin, edge, client) and the links between them, with
their one-way delays and bandwidths, read from a TOML file (geo/topology.toml). Pure."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROLES = ("origin", "edge", "client")


class TopologyError(ValueError):
    """A topology file that cannot be used; the message names file and key."""


# -- the topology ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Location:
    name: str
    role: str  # origin, edge or client
    region: str | None = None


@dataclass(frozen=True)
class Link:
    """Two locations joined directly; `delay` is one-way, in seconds."""

    a: str
    b: str
    delay: float
    rate_mbit: float | None = None

    @property
    def rtt(self) -> float:
        return 2 * self.delay


@dataclass(frozen=True)
class Topology:
    locations: tuple[Location, ...]
    links: tuple[Link, ...]
    object_bytes: int = 256 * 1024
    source: Path = Path("<topology>")

    def of_role(self, role: str) -> list[Location]:
        return [loc for loc in self.locations if loc.role == role]

    def link(self, a: str, b: str) -> Link:
        for link in self.links:
            if {link.a, link.b} == {a, b}:
                return link
        raise TopologyError(f"{self.source}: links: no link between {a} and {b}")

    def scaled(self, factor: float) -> Topology:
        """The same geography with every delay multiplied by `factor` (tests use < 1)."""
        return replace(self, links=tuple(replace(link, delay=link.delay * factor) for link in self.links))


def load_topology(path: str | Path) -> Topology:
    source = Path(path)
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TopologyError(f"{source}: {exc}") from None
    return parse_topology(raw, source)


def parse_topology(raw: dict[str, Any], source: Path = Path("<topology>")) -> Topology:
    def fail(key: str, message: str) -> TopologyError:
        return TopologyError(f"{source}: {key}: {message}")

    locations = []
    for name, body in raw.get("locations", {}).items():
        if not re.match(r"^[a-z][a-z0-9]{0,9}$", name):
            raise fail(f"locations.{name}", "names are 1-10 lower-case letters or digits")
        if body.get("role") not in ROLES:
            raise fail(f"locations.{name}.role", f"must be one of {', '.join(ROLES)}")
        locations.append(Location(name, body["role"], body.get("region")))
    names = {loc.name for loc in locations}
    links = []
    for i, body in enumerate(raw.get("links", [])):
        ends = body.get("between")
        if not isinstance(ends, list) or len(ends) != 2 or not set(ends) <= names or ends[0] == ends[1]:
            raise fail(f"links[{i}].between", f"must name two different locations (known: {', '.join(sorted(names))})")
        delay = body.get("delay_ms")
        if not isinstance(delay, int | float) or delay < 0:
            raise fail(f"links[{i}].delay_ms", "must be a number of milliseconds >= 0")
        links.append(Link(ends[0], ends[1], delay / 1000, body.get("rate_mbit")))
    topology = Topology(tuple(locations), tuple(links), int(raw.get("object_bytes", 256 * 1024)), source)
    if len(topology.of_role("origin")) != 1 or not topology.of_role("edge") or not topology.of_role("client"):
        raise fail("locations", "needs exactly one origin, and at least one edge and one client")
    for edge in topology.of_role("edge"):
        topology.link(edge.name, topology.of_role("origin")[0].name)
    return topology
