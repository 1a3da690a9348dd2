"""A geography you can run: locations as network namespaces, links with real one-way delays.

`python -m web_dist.geo demo` reads a topology (geo/topology.toml: origin in London, an edge
location in Mumbai, a user in Sydney), gives each location a network namespace, joins linked
locations with a veth pair, starts the origin and the edge in theirs, and times requests from
the user's namespace: straight to the origin, and through the edge (a miss, then a hit); then a
live stream's startup and latency behind live, straight and through the edge (web_dist.geo_live).
It prints a table and writes an HTML report with a chart; namespaces and processes are removed
at the end, whatever happens. Needs root.

This kernel has no netem, so a link's delay comes from a `DelayRelay` in the serving
location's namespace: servers listen on that namespace's loopback, and the relay exposes them
on the link's address, holding every chunk for the link's one-way delay each way. The kernel
finishes a TCP handshake with the relay at once; the relay makes up for it by holding a new
connection's first bytes until one round trip more has passed, as a real handshake would.
Bandwidth, when a link has `rate_mbit`, is tc's tbf on both ends of the veth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from web_dist import geo_live
from web_dist.geo_live import LIVE_PORT, LiveRow

ROLES = ("origin", "edge", "client")
ORIGIN_PORT, EDGE_PORT = 8081, 8091
DOMAIN = "site.cdn.test"
NS_PREFIX = "cdn-g"  # every namespace is cdn-g<pid>-<n>-<location>; stale ones are removed
_STALE = re.compile(rf"^{NS_PREFIX}(\d+)-")
READY_TIMEOUT = 30.0
RELAY_CHUNK = 64 * 1024
RELAY_QUEUE = 64  # chunks held per direction (4 MiB): a slow reader stops the relay reading


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


# -- the delay relay --------------------------------------------------------------------------------
class DelayRelay:
    """A TCP relay that delivers every chunk `delay` seconds after it arrived, both ways.

    `handshake`: a new connection's first bytes toward the target wait until 1.5 round trips
    after the accept, the time the first data takes over a real link (SYN, SYN-ACK, data).
    `delay` may be changed while connections are open: later chunks take the new one.
    """

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], delay: float, *, handshake: bool = True) -> None:
        self.listen, self.target, self.delay, self.handshake = listen, target, delay, handshake
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], list[asyncio.WriteTransport]] = {}

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen)

    async def close(self) -> None:
        """Stop accepting and reset open connections (aborted, not cancelled: their tasks end)."""
        if self._server is not None:
            self._server.close()
        for transports in self._connections.values():
            for transport in transports:
                transport.abort()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = transports = [writer.transport]
        accepted = asyncio.get_running_loop().time()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            transports.append(up_writer.transport)
            first = accepted + 3 * self.delay if self.handshake else 0.0
            await asyncio.gather(self._pipe(reader, up_writer, first), self._pipe(up_reader, writer, 0.0))
        except (OSError, asyncio.IncompleteReadError):
            pass  # a refused target or a reset: the other side sees a reset too
        finally:
            for transport in transports:
                transport.abort()
            del self._connections[task]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, not_before: float) -> None:
        """Copy one direction, each chunk leaving `delay` after it came (never before `not_before`)."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(RELAY_QUEUE)
        sender = asyncio.create_task(_deliver(line, writer))
        try:
            while not sender.done():
                chunk = await reader.read(RELAY_CHUNK)
                await line.put((max(loop.time() + self.delay, not_before), chunk))
                if not chunk:
                    break
            await sender
        finally:
            sender.cancel()


async def _deliver(line: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due, chunk = await line.get()
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        if not chunk:  # the sender finished: pass the half-close on
            if writer.can_write_eof():
                writer.write_eof()
            return
        writer.write(chunk)
        await writer.drain()


# -- namespaces, links and processes ------------------------------------------------------------
def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def netns_available() -> str | None:
    """Why namespaces cannot be built here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    try:
        done = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` is not available: {exc}"
    return None if done.returncode == 0 else f"`ip netns list` failed: {done.stderr.decode().strip()}"


def _namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _remove_namespace(ns: str) -> None:
    """Kill what still runs in `ns` (only ours live there), then delete it and its links."""
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10, check=False)
    for pid in done.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


def remove_stale_namespaces() -> list[str]:
    """Delete geography namespaces left by processes that no longer run (a killed test run)."""
    removed = []
    for ns in _namespaces():
        match = _STALE.match(ns)
        if match and not _alive(int(match.group(1))):
            _remove_namespace(ns)
            removed.append(ns)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SEQUENCE = iter(range(1, 1_000_000))


def _log_file(path: Path) -> BinaryIO:
    return path.open("wb")


class Geography:
    """The topology built as namespaces and veth links; an async context manager that removes
    everything it made (processes first, then namespaces, which take their links along)."""

    def __init__(self, topology: Topology, workdir: Path) -> None:
        self.topology = topology
        self.workdir = workdir
        self.prefix = f"{NS_PREFIX}{os.getpid()}-{next(_SEQUENCE)}-"
        self._addresses: dict[tuple[str, str], str] = {}
        self._processes: list[asyncio.subprocess.Process] = []
        self._made: list[str] = []

    def namespace(self, location: str) -> str:
        return self.prefix + location

    def address(self, of: str, toward: str) -> str:
        """The address `of` has on its link to `toward`: what `toward` connects to."""
        return self._addresses[of, toward]

    async def __aenter__(self) -> Geography:
        try:
            await asyncio.to_thread(self._build)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _build(self) -> None:
        remove_stale_namespaces()
        for loc in self.topology.locations:
            ns = self.namespace(loc.name)
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        for i, link in enumerate(self.topology.links):
            self._build_link(i, link)

    def _build_link(self, i: int, link: Link) -> None:
        ends = ((link.a, link.b, f"10.99.{i}.1"), (link.b, link.a, f"10.99.{i}.2"))
        dev = {loc: f"v{i}-{peer}" for loc, peer, _ in ends}
        _ip("link", "add", dev[link.a], "netns", self.namespace(link.a), "type", "veth",
            "peer", "name", dev[link.b], "netns", self.namespace(link.b))
        for loc, peer, address in ends:
            ns = self.namespace(loc)
            _ip("-n", ns, "addr", "add", f"{address}/30", "dev", dev[loc])
            _ip("-n", ns, "link", "set", dev[loc], "up")
            self._addresses[loc, peer] = address
            if link.rate_mbit:
                rate_bytes = link.rate_mbit * 1e6 / 8
                burst = max(64 * 1024, int(rate_bytes / 250))  # >= one GSO super-packet
                subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", dev[loc], "root", "tbf",
                                "rate", f"{link.rate_mbit}mbit", "burst", str(burst), "latency", "100ms"],
                               check=True, capture_output=True, timeout=10)

    async def spawn(self, location: str, argv: Sequence[str], what: str) -> asyncio.subprocess.Process:
        """Start `python -m ...argv` in `location`'s namespace; return once it prints "ready"."""
        log = _log_file(self.workdir / f"{what.replace(' ', '-')}.log")
        with log:
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.namespace(location), sys.executable, *argv,
                stdout=asyncio.subprocess.PIPE, stderr=log, start_new_session=True,
            )
        self._processes.append(proc)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                while not (line := await proc.stdout.readline()).startswith(b"ready"):
                    if not line:
                        raise OSError(f"{what} exited before it was ready; see {log.name}")
        except TimeoutError:
            raise OSError(f"{what} was not ready within {READY_TIMEOUT:.0f} s; see {log.name}") from None
        return proc

    async def run(self, location: str, argv: Sequence[str], time_limit: float) -> str:
        """Run `python -m ...argv` to its end in `location`'s namespace; its standard output."""
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.namespace(location), sys.executable, *argv,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
        self._processes.append(proc)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), time_limit)
        except TimeoutError:
            raise OSError(f"{' '.join(argv)} took more than {time_limit:.0f} s") from None
        if proc.returncode != 0:
            raise OSError(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode()[-2000:]}")
        return out.decode()

    async def close(self) -> None:
        for proc in self._processes:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._processes:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        for ns in reversed(self._made):
            await asyncio.to_thread(_remove_namespace, ns)
        self._made.clear()


# -- the CDN in the geography ---------------------------------------------------------------------
def _make_site(root: Path, object_bytes: int, count: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pattern = f"object {i} ".encode()
        (root / f"object-{i}.bin").write_bytes((pattern * (object_bytes // len(pattern) + 1))[:object_bytes])


def _edge_config(geo: Geography, edge: Location, origin: Location, site: Path, live: bool) -> Path:
    """The CDN config one edge runs with: the origins' URLs as seen from the edge's location."""
    text = f"""\
[origins.origin]
kind = "web"
root = {json.dumps(str(site))}
listen = "127.0.0.1:{ORIGIN_PORT}"
url = "http://{geo.address(origin.name, edge.name)}:{ORIGIN_PORT}"

[edges.edge-{edge.name}]
listen = "127.0.0.1:{EDGE_PORT}"
region = {json.dumps(edge.region or edge.name)}

[distributions.site]
domains = [{json.dumps(DOMAIN)}]
origin = "origin"

[distributions.site.default_behavior]
default_ttl = 3600
"""
    if live:
        text += geo_live.live_config(f"http://{geo.address(origin.name, edge.name)}:{LIVE_PORT}")
    path = geo.workdir / f"cdn-{edge.name}.toml"
    path.write_text(text)
    return path


async def _expose(geo: Geography, location: Location, *ports: int) -> None:
    """A relay process in `location` exposing its local `ports` on each of its links."""
    maps = []
    for link in geo.topology.links:
        if location.name in (link.a, link.b):
            peer = link.b if link.a == location.name else link.a
            maps += [f"{geo.address(location.name, peer)}:{port}=127.0.0.1:{port}@{link.delay:.6f}" for port in ports]
    await geo.spawn(location.name, ["-m", "web_dist.geo", "relay", *maps], f"relay {location.name}")


@dataclass
class Row:
    """One kind of request, timed several times from a client location."""

    label: str
    model_ttfb: float  # what the delays alone predict, seconds
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ttfb(self) -> float:
        return float(statistics.median(s["ttfb"] for s in self.samples))

    @property
    def total(self) -> float:
        return float(statistics.median(s["total"] for s in self.samples))

    @property
    def cache(self) -> str:
        return ", ".join(sorted({s.get("cache", "").lower() or "-" for s in self.samples}))


@dataclass
class GeoResult:
    topology: Topology
    client: str
    edge: str
    origin: str
    rows: dict[str, Row]
    live: dict[str, LiveRow] = field(default_factory=dict)


async def run_geography(topology: Topology, workdir: Path, *, repeat: int = 3, web: bool = True,
                        live: bool = False, follow: float = 4.0) -> GeoResult:
    """Build the geography, start origin and edge, time the requests, tear everything down.

    `web`: objects from a web origin; `live`: a live stream's startup and latency (geo_live),
    each viewer following the live edge for `follow` seconds."""
    origin = topology.of_role("origin")[0]
    edge = topology.of_role("edge")[0]
    client = topology.of_role("client")[0]
    site = workdir / "site"
    _make_site(site, topology.object_bytes, repeat + 1)
    async with Geography(topology, workdir) as geo:
        config = _edge_config(geo, edge, origin, site, live)
        cli = ["-m", "web_dist.cli", "--log-level", "warning"]
        await asyncio.gather(
            geo.spawn(origin.name, [*cli, "origin", "--config", str(config), "--name", "origin"], "origin"),
            *([geo.spawn(origin.name, [*cli, "origin", "--config", str(config), "--name", "live"], "media origin")]
              if live else []),
            geo.spawn(edge.name, [*cli, "edge", "--config", str(config), "--name", f"edge-{edge.name}"], "edge"),
            _expose(geo, origin, ORIGIN_PORT, *([LIVE_PORT] if live else [])),
            _expose(geo, edge, EDGE_PORT),
        )
        result = GeoResult(topology, client.name, edge.name, origin.name, {})
        if web:
            result.rows = await _time_objects(geo, client, edge, origin, repeat)
        if live:
            result.live = await _time_live(geo, client, edge, origin, repeat, follow)
    return result


async def _time_objects(geo: Geography, client: Location, edge: Location, origin: Location, repeat: int) -> dict[str, Row]:
    topology = geo.topology
    to_edge, to_origin = topology.link(client.name, edge.name), topology.link(client.name, origin.name)
    edge_origin = topology.link(edge.name, origin.name)
    at_edge = f"{geo.address(edge.name, client.name)}:{EDGE_PORT}"
    at_origin = f"{geo.address(origin.name, client.name)}:{ORIGIN_PORT}"
    rows = {
        "origin": Row(f"straight to the origin ({origin.name})", 2 * to_origin.rtt),
        "first": Row(f"via edge {edge.name}: first request (miss, new edge-origin connection)",
                     2 * to_edge.rtt + 2 * edge_origin.rtt),
        "miss": Row(f"via edge {edge.name}: miss", 2 * to_edge.rtt + edge_origin.rtt),
        "hit": Row(f"via edge {edge.name}: repeat (hit)", 2 * to_edge.rtt),
    }
    plan = [("first", at_edge, f"/object-{repeat}.bin")]
    for i in range(repeat):
        path = f"/object-{i}.bin"
        plan += [("origin", at_origin, path), ("miss", at_edge, path), ("hit", at_edge, path)]
    budget = 30 + len(plan) * 3 * max(to_origin.rtt, to_edge.rtt + edge_origin.rtt) * 4
    out = await geo.run(client.name, ["-m", "web_dist.geo", "measure", json.dumps(plan)], budget)
    for (kind, _, _), sample in zip(plan, json.loads(out), strict=True):
        rows[kind].samples.append(sample)
    return rows


async def _time_live(geo: Geography, client: Location, edge: Location, origin: Location,
                     repeat: int, follow: float) -> dict[str, LiveRow]:
    topology = geo.topology
    to_edge, to_origin = topology.link(client.name, edge.name), topology.link(client.name, origin.name)
    edge_origin = topology.link(edge.name, origin.name)
    rows = geo_live.live_rows(to_origin.rtt, to_edge.rtt, edge_origin.rtt, edge.name, origin.name)
    argv = ["-m", "web_dist.geo_live", "measure", "--repeat", str(repeat), "--follow", str(follow),
            "--origin", f"{geo.address(origin.name, client.name)}:{LIVE_PORT}",
            "--edge", f"{geo.address(edge.name, client.name)}:{EDGE_PORT}"]
    budget = geo_live.READY_TIMEOUT + 2 * repeat * (follow + 20 * max(to_origin.rtt, to_edge.rtt + edge_origin.rtt) + 5)
    out = await geo.run(client.name, argv, budget)
    for kind, samples in json.loads(out).items():
        rows[kind].samples += samples
    return rows


# -- the client's stopwatch ---------------------------------------------------------------------
async def timed_get(address: str, path: str, host: str = DOMAIN) -> dict[str, Any]:
    """GET over a new connection, as a new user would: status, cache status, TTFB and total."""
    hostname, _, port = address.rpartition(":")
    async with asyncio.timeout(60):
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(hostname, int(port))
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cdn-geo\r\n\r\n".encode())
            first = await reader.readexactly(1)
            ttfb = time.perf_counter() - started
            head = first + await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length)
            total = time.perf_counter() - started
        finally:
            writer.close()
    return {"status": int(lines[0].split()[1]), "bytes": len(body), "ttfb": ttfb, "total": total,
            "cache": headers.get("x-cache", "")}


async def _measure(plan: list[list[str]]) -> list[dict[str, Any]]:
    return [await timed_get(address, path) for _, address, path in plan]


# -- the report -----------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def format_table(result: GeoResult) -> str:
    topo = result.topology
    delays = ", ".join(f"{link.a}-{link.b} {_ms(link.delay)} ms" for link in topo.links)
    lines = [f"client in {result.client}, edge in {result.edge}, origin in {result.origin}",
             f"one-way delays: {delays}; object {topo.object_bytes} bytes, new connection per request"]
    if result.rows:
        lines += ["", f"{'request':<70} {'TTFB ms':>8} {'total ms':>9} {'model':>6}  x-cache"]
        for row in result.rows.values():
            lines.append(f"{row.label:<70} {_ms(row.ttfb):>8} {_ms(row.total):>9} {_ms(row.model_ttfb):>6}  {row.cache}")
        lines.append("(medians; model = the TTFB the link delays alone give, handshake included)")
    if result.live:
        lines += ["", f"{'live stream (320x180, 1 s segments, 0.25 s parts)':<70} {'startup':>8} {'latency':>9} "
                  f"{'model':>6}  x-cache at startup"]
        for live in result.live.values():
            lines.append(f"{live.label:<70} {_ms(live.startup):>8} {_ms(live.latency):>9} "
                         f"{_ms(live.model_startup):>6}  {live.cache}")
        lines.append("(ms, medians; startup = multivariant playlist request to the last byte of the first "
                     "independent part,\n model = its link delays alone; latency = a part's last byte arriving "
                     "vs its PROGRAM-DATE-TIME)")
    return "\n".join(lines)


Bar = tuple[float, str, str]  # value in seconds, colour, name


def _chart(groups: list[tuple[str, list[Bar]]]) -> str:
    """Horizontal bars, a group of them per label, on one scale."""
    top = max(value for _, bars in groups for value, _, _ in bars) * 1.1
    bar_h, gap, left, width = 18, 16, 410, 520
    svg, y = [], 0
    for label, bars in groups:
        svg.append(f'<text x="{left - 8}" y="{y + bar_h + 4}" text-anchor="end">{html.escape(label[:62])}</text>')
        for j, (value, colour, name) in enumerate(bars):
            w = max(1.0, width * value / top)
            svg.append(f'<rect x="{left}" y="{y + j * bar_h}" width="{w:.1f}" height="{bar_h - 2}" fill="{colour}"/>'
                       f'<text x="{left + w + 4:.1f}" y="{y + j * bar_h + 13}">{name} {_ms(value)} ms</text>')
        y += len(bars) * bar_h + gap
    return f'<svg width="{left + width + 160}" height="{y}">{"".join(svg)}</svg>'


def write_html(result: GeoResult, path: Path) -> None:
    """The tables and a bar chart (TTFB and total per kind of request; a live viewer's startup and
    latency behind live) as one self-contained page."""
    groups: list[tuple[str, list[Bar]]] = [
        (r.label, [(r.ttfb, "#2b7bb9", "TTFB"), (r.total, "#9cc3e4", "total")]) for r in result.rows.values()]
    groups += [(r.label, [(r.startup, "#d9822b", "startup"), (r.latency, "#f2c18d", "latency behind live")])
               for r in result.live.values()]
    tables = ""
    if result.rows:
        tables += "<table><tr><th>request</th><th>TTFB ms</th><th>total ms</th><th>model TTFB ms</th><th>x-cache</th></tr>"
        tables += "".join(
            f"<tr><td>{html.escape(r.label)}</td><td>{_ms(r.ttfb)}</td><td>{_ms(r.total)}</td>"
            f"<td>{_ms(r.model_ttfb)}</td><td>{html.escape(r.cache)}</td></tr>" for r in result.rows.values())
        tables += "</table><p>Medians; model = what the link delays alone give (a TCP handshake and the request).</p>"
    if result.live:
        tables += ("<table><tr><th>live viewer</th><th>startup ms</th><th>latency behind live ms</th>"
                   "<th>model startup ms</th><th>x-cache at startup</th></tr>")
        tables += "".join(
            f"<tr><td>{html.escape(r.label)}</td><td>{_ms(r.startup)}</td><td>{_ms(r.latency)}</td>"
            f"<td>{_ms(r.model_startup)}</td><td>{html.escape(r.cache)}</td></tr>" for r in result.live.values())
        tables += ("</table><p>Startup: from the multivariant playlist request to the last byte of the first "
                   "independent part (playlists, init, part). Latency: the wall clock when a part's last byte "
                   "arrives minus its EXT-X-PROGRAM-DATE-TIME, while following the live edge with blocking "
                   "reloads, each sent with a request for the hinted next part (a part's own 0.25 s "
                   "included).</p>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""<!doctype html><meta charset="utf-8"><title>CDN geography</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}td,th{{padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}svg text{{font-size:12px}}</style>
<h1>Edge locations near users</h1><pre>{html.escape(format_table(result).split(chr(10) + chr(10))[0])}</pre>
{_chart(groups)}
{tables}
""", encoding="utf-8")


# -- command line ---------------------------------------------------------------------------------
async def _serve_relays(maps: Sequence[str]) -> None:
    relays = []
    for spec in maps:
        match = re.match(r"^(.+):(\d+)=(.+):(\d+)@([\d.]+)$", spec)
        if match is None:
            raise SystemExit(f"relay: {spec!r} is not LISTEN_HOST:PORT=TARGET_HOST:PORT@SECONDS")
        listen, lport, target, tport, delay = match.groups()
        relays.append(DelayRelay((listen, int(lport)), (target, int(tport)), float(delay)))
    for relay in relays:
        await relay.start()
    print("ready relay", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.gather(*(relay.close() for relay in relays))


def _demo(args: argparse.Namespace) -> int:
    if (problem := netns_available()) is not None:
        print(f"geo: {problem}", file=sys.stderr)
        return 1
    topology = load_topology(args.topology)
    if args.scale != 1:
        topology = topology.scaled(args.scale)
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run_geography(topology, args.workdir.resolve(), repeat=args.repeat,
                                       web=args.web, live=args.live, follow=args.follow))
    print(format_table(result))
    write_html(result, args.report)
    print(f"\nreport: {args.report}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web_dist.geo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="build the geography, time requests, print and chart them")
    demo.add_argument("--topology", type=Path, default=Path("geo/topology.toml"))
    demo.add_argument("--scale", type=float, default=1.0, help="multiply every delay by this")
    demo.add_argument("--repeat", type=int, default=3, help="samples per kind of request")
    demo.add_argument("--report", type=Path, default=Path("var/geo/report.html"))
    demo.add_argument("--no-live", dest="live", action="store_false", help="objects only, no live stream")
    demo.add_argument("--no-web", dest="web", action="store_false", help="the live stream only")
    demo.add_argument("--follow", type=float, default=4.0, help="seconds each live viewer follows the stream")
    demo.add_argument("--workdir", type=Path, default=Path("var/geo"))
    demo.set_defaults(run=_demo)
    relay = sub.add_parser("relay", help="(in a namespace) delay relays LISTEN=TARGET@SECONDS")
    relay.add_argument("maps", nargs="+")
    relay.set_defaults(run=lambda a: asyncio.run(_serve_relays(a.maps)) or 0)
    measure = sub.add_parser("measure", help="(in a namespace) time a JSON plan of requests")
    measure.add_argument("plan")
    measure.set_defaults(run=lambda a: print(json.dumps(asyncio.run(_measure(json.loads(a.plan))))) or 0)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except (TopologyError, OSError) as exc:
        print(f"geo: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
