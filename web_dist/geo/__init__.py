"""A geography you can run: locations as network namespaces, links with real one-way delays.

`python -m web_dist.geo demo` reads a topology (geo/topology.toml: origin in London, an edge
location in Mumbai, a user in Sydney), gives each location a network namespace, joins linked
locations with a veth pair, starts the origin and the edge in theirs, and times requests from
the user's namespace: straight to the origin, and through the edge (a miss, then a hit); then a
live stream's startup and latency behind live, straight and through the edge (web_dist.geo.live).
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
import html
import json
import re
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web_dist.geo import live as geo_live
from web_dist.geo.live import LIVE_PORT, LiveRow
from web_dist.geo.netns import DelayRelay, Geography, netns_available
from web_dist.geo.topology import Location, Topology, TopologyError, load_topology

ORIGIN_PORT, EDGE_PORT = 8081, 8091
DOMAIN = "site.cdn.test"


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


async def run_geography(
    topology: Topology, workdir: Path, *, repeat: int = 3, web: bool = True, live: bool = False, follow: float = 4.0
) -> GeoResult:
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
            *(
                [geo.spawn(origin.name, [*cli, "origin", "--config", str(config), "--name", "live"], "media origin")]
                if live
                else []
            ),
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


async def _time_objects(
    geo: Geography, client: Location, edge: Location, origin: Location, repeat: int
) -> dict[str, Row]:
    topology = geo.topology
    to_edge, to_origin = topology.link(client.name, edge.name), topology.link(client.name, origin.name)
    edge_origin = topology.link(edge.name, origin.name)
    at_edge = f"{geo.address(edge.name, client.name)}:{EDGE_PORT}"
    at_origin = f"{geo.address(origin.name, client.name)}:{ORIGIN_PORT}"
    rows = {
        "origin": Row(f"straight to the origin ({origin.name})", 2 * to_origin.rtt),
        "first": Row(
            f"via edge {edge.name}: first request (miss, new edge-origin connection)",
            2 * to_edge.rtt + 2 * edge_origin.rtt,
        ),
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


async def _time_live(
    geo: Geography, client: Location, edge: Location, origin: Location, repeat: int, follow: float
) -> dict[str, LiveRow]:
    topology = geo.topology
    to_edge, to_origin = topology.link(client.name, edge.name), topology.link(client.name, origin.name)
    edge_origin = topology.link(edge.name, origin.name)
    rows = geo_live.live_rows(to_origin.rtt, to_edge.rtt, edge_origin.rtt, edge.name, origin.name)
    argv = [
        "-m",
        "web_dist.geo.live",
        "measure",
        "--repeat",
        str(repeat),
        "--follow",
        str(follow),
        "--origin",
        f"{geo.address(origin.name, client.name)}:{LIVE_PORT}",
        "--edge",
        f"{geo.address(edge.name, client.name)}:{EDGE_PORT}",
    ]
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
    return {
        "status": int(lines[0].split()[1]),
        "bytes": len(body),
        "ttfb": ttfb,
        "total": total,
        "cache": headers.get("x-cache", ""),
    }


async def _measure(plan: list[list[str]]) -> list[dict[str, Any]]:
    return [await timed_get(address, path) for _, address, path in plan]


# -- the report -----------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def format_table(result: GeoResult) -> str:
    topo = result.topology
    delays = ", ".join(f"{link.a}-{link.b} {_ms(link.delay)} ms" for link in topo.links)
    lines = [
        f"client in {result.client}, edge in {result.edge}, origin in {result.origin}",
        f"one-way delays: {delays}; object {topo.object_bytes} bytes, new connection per request",
    ]
    if result.rows:
        lines += ["", f"{'request':<70} {'TTFB ms':>8} {'total ms':>9} {'model':>6}  x-cache"]
        for row in result.rows.values():
            lines.append(
                f"{row.label:<70} {_ms(row.ttfb):>8} {_ms(row.total):>9} {_ms(row.model_ttfb):>6}  {row.cache}"
            )
        lines.append("(medians; model = the TTFB the link delays alone give, handshake included)")
    if result.live:
        lines += [
            "",
            f"{'live stream (320x180, 1 s segments, 0.25 s parts)':<70} {'startup':>8} {'latency':>9} "
            f"{'model':>6}  x-cache at startup",
        ]
        for live in result.live.values():
            lines.append(
                f"{live.label:<70} {_ms(live.startup):>8} {_ms(live.latency):>9} "
                f"{_ms(live.model_startup):>6}  {live.cache}"
            )
        lines.append(
            "(ms, medians; startup = multivariant playlist request to the last byte of the first "
            "independent part,\n model = its link delays alone; latency = a part's last byte arriving "
            "vs its PROGRAM-DATE-TIME)"
        )
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
            svg.append(
                f'<rect x="{left}" y="{y + j * bar_h}" width="{w:.1f}" height="{bar_h - 2}" fill="{colour}"/>'
                f'<text x="{left + w + 4:.1f}" y="{y + j * bar_h + 13}">{name} {_ms(value)} ms</text>'
            )
        y += len(bars) * bar_h + gap
    return f'<svg width="{left + width + 160}" height="{y}">{"".join(svg)}</svg>'


def write_html(result: GeoResult, path: Path) -> None:
    """The tables and a bar chart (TTFB and total per kind of request; a live viewer's startup and
    latency behind live) as one self-contained page."""
    groups: list[tuple[str, list[Bar]]] = [
        (r.label, [(r.ttfb, "#2b7bb9", "TTFB"), (r.total, "#9cc3e4", "total")]) for r in result.rows.values()
    ]
    groups += [
        (r.label, [(r.startup, "#d9822b", "startup"), (r.latency, "#f2c18d", "latency behind live")])
        for r in result.live.values()
    ]
    tables = ""
    if result.rows:
        tables += (
            "<table><tr><th>request</th><th>TTFB ms</th><th>total ms</th><th>model TTFB ms</th><th>x-cache</th></tr>"
        )
        tables += "".join(
            f"<tr><td>{html.escape(r.label)}</td><td>{_ms(r.ttfb)}</td><td>{_ms(r.total)}</td>"
            f"<td>{_ms(r.model_ttfb)}</td><td>{html.escape(r.cache)}</td></tr>"
            for r in result.rows.values()
        )
        tables += "</table><p>Medians; model = what the link delays alone give (a TCP handshake and the request).</p>"
    if result.live:
        tables += (
            "<table><tr><th>live viewer</th><th>startup ms</th><th>latency behind live ms</th>"
            "<th>model startup ms</th><th>x-cache at startup</th></tr>"
        )
        tables += "".join(
            f"<tr><td>{html.escape(r.label)}</td><td>{_ms(r.startup)}</td><td>{_ms(r.latency)}</td>"
            f"<td>{_ms(r.model_startup)}</td><td>{html.escape(r.cache)}</td></tr>"
            for r in result.live.values()
        )
        tables += (
            "</table><p>Startup: from the multivariant playlist request to the last byte of the first "
            "independent part (playlists, init, part). Latency: the wall clock when a part's last byte "
            "arrives minus its EXT-X-PROGRAM-DATE-TIME, while following the live edge with blocking "
            "reloads, each sent with a request for the hinted next part (a part's own 0.25 s "
            "included).</p>"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""<!doctype html><meta charset="utf-8"><title>CDN geography</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}td,th{{padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}svg text{{font-size:12px}}</style>
<h1>Edge locations near users</h1><pre>{html.escape(format_table(result).split(chr(10) + chr(10))[0])}</pre>
{_chart(groups)}
{tables}
""",
        encoding="utf-8",
    )


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
    result = asyncio.run(
        run_geography(
            topology, args.workdir.resolve(), repeat=args.repeat, web=args.web, live=args.live, follow=args.follow
        )
    )
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
