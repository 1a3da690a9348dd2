"""The request router: sends each client to the nearest healthy edge of a distribution.

"Nearest" is decided by `rank_edges`, a pure function: an edge in the client's own region (the
`[router.regions]` CIDR map) first, then edges in the regions listed as nearby, nearest first;
ties, and clients of no known region, go to the lowest measured round-trip time. RTTs come
from the client's own network when it reported some (`POST /_router/rtt`), else from the
router's health checks. Edges that fail a health check are left out until one succeeds.
A client that came over HTTPS, or asks for a path whose behavior's `viewer_protocol` wants
HTTPS, is sent to an edge's HTTPS address, never downgraded to plain HTTP.

Two interfaces share one `Router`: this module's HTTP redirect service (302 to the chosen edge,
path and query kept; 503 when no edge is healthy) and the DNS server of `web_dist.router.dns`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from web_dist.config import CdnConfig, Distribution, RouterConfig
from web_dist.config.behaviors import DistributionIndex, behavior_for, host_name, region_of
from web_dist.router.dns import DnsServer
from web_dist.server import parse_listen

log = logging.getLogger("cdn.router")
HEALTH_PATH = "/_cdn/health"
RTT_WEIGHT = 0.3  # weight of a new sample in the moving average
MAX_NETWORKS = 10_000  # client networks whose reported RTTs are remembered


@dataclass
class EdgeState:
    """What the router knows of one edge: where clients reach it and how it answered lately."""

    name: str
    region: str | None
    address: str  # "host:port" clients are sent to
    https_address: str | None = None  # the same for HTTPS, when the edge has it
    healthy: bool = True
    rtt: float | None = None  # seconds, moving average of health-check round trips
    checked_at: float | None = None
    problem: str | None = None

    def snapshot(self) -> dict[str, object]:
        rtt_ms = None if self.rtt is None else round(self.rtt * 1000, 2)
        return {
            "edge": self.name,
            "region": self.region,
            "address": self.address,
            "https_address": self.https_address,
            "healthy": self.healthy,
            "rtt_ms": rtt_ms,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class Routing:
    """One decision: the distribution a host names, the edge chosen (None: none healthy), why."""

    distribution: Distribution | None
    edge: EdgeState | None
    region: str | None
    reason: str
    https: bool = False  # send the client to the edge's HTTPS address


# -- the choice, pure -------------------------------------------------------------------------------
def rank_edges(
    edges: Sequence[EdgeState],
    region: str | None,
    nearby: Mapping[str, Sequence[str]],
    rtts: Mapping[str, float],
) -> list[EdgeState]:
    """Healthy edges, nearest first: own region, then nearby regions in order, then by RTT."""
    near = [region, *nearby.get(region, ())] if region is not None else []

    def key(item: tuple[int, EdgeState]) -> tuple[int, float, int]:
        index, edge = item
        closeness = near.index(edge.region) if edge.region in near else len(near)
        return closeness, rtts.get(edge.name, math.inf), index

    ranked = sorted(((i, e) for i, e in enumerate(edges) if e.healthy), key=key)
    return [edge for _, edge in ranked]


def _reason(edge: EdgeState, region: str | None, rtts: Mapping[str, float]) -> str:
    if region is not None and edge.region == region:
        return f"region {region}"
    if edge.name in rtts:
        return f"rtt {rtts[edge.name] * 1000:.1f} ms"
    return f"region {edge.region}" if edge.region else "first healthy"


# -- measured round trips ---------------------------------------------------------------------------
def client_network(client: str) -> str:
    """The network RTT reports are kept for: a /24 for IPv4, a /48 for IPv6."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    bits = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


class LatencyTable:
    """RTTs clients reported per network and edge, as moving averages; oldest networks go first."""

    def __init__(self, capacity: int = MAX_NETWORKS) -> None:
        self._capacity = capacity
        self._networks: OrderedDict[str, dict[str, float]] = OrderedDict()

    def report(self, client: str, rtts: Mapping[str, float]) -> None:
        network = client_network(client)
        known = self._networks.pop(network, {})
        for edge, rtt in rtts.items():
            known[edge] = _average(known.get(edge), rtt)
        self._networks[network] = known
        while len(self._networks) > self._capacity:
            self._networks.popitem(last=False)

    def of(self, client: str) -> Mapping[str, float]:
        return self._networks.get(client_network(client), {})


def _average(old: float | None, sample: float) -> float:
    return sample if old is None else old + RTT_WEIGHT * (sample - old)


# -- the router ----------------------------------------------------------------------------------
class Router:
    """Routing state for every distribution of a config; `start()` begins the health checks."""

    def __init__(self, config: CdnConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        if config.router is None:
            raise ValueError(f"{config.source}: no [router] section")
        self.config = config
        self.settings: RouterConfig = config.router
        self.clock = clock
        self.edges = {
            e.name: EdgeState(
                e.name,
                e.region,
                self.settings.addresses.get(e.name, e.listen),
                self.settings.https_addresses.get(e.name, e.https_listen),
            )
            for e in config.edges.values()
        }
        self.latency = LatencyTable()
        self._index = DistributionIndex(config.distributions)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    def route(self, host: str, client: str, path: str = "/", *, secure: bool = False) -> Routing:
        """Where a client asking for `host` (and `path`; over HTTPS when `secure`) should go."""
        dist = self._index.lookup(host)
        region = region_of(self.settings.regions, client)
        if dist is None:
            return Routing(None, None, region, f"no distribution for host {host_name(host)!r}")
        https = secure or behavior_for(dist, path).viewer_protocol != "allow-all"
        edges = [self.edges[name] for name in dist.edges]
        if https and not any(e.https_address for e in edges):
            return Routing(dist, None, region, f"no edge of distribution {dist.id} has HTTPS", https)
        edges = [e for e in edges if e.https_address] if https else edges
        rtts = self.latency.of(client) or {e.name: e.rtt for e in edges if e.rtt is not None}
        ranked = rank_edges(edges, region, self.settings.nearby, rtts)
        if not ranked:
            down = ", ".join(f"{e.name} ({e.problem or 'down'})" for e in edges)
            return Routing(dist, None, region, f"no healthy edge for distribution {dist.id}: {down}", https)
        return Routing(dist, ranked[0], region, _reason(ranked[0], region, rtts), https)

    def named_edge(self, host: str) -> EdgeState | None:
        """The edge an "EDGE.DOMAIN" name points at, when DOMAIN's distribution uses that edge."""
        name = host_name(host)
        for edge in self.edges.values():
            if name.startswith(edge.name.lower() + "."):
                dist = self._index.lookup(name[len(edge.name) + 1 :])
                if dist is not None and edge.name in dist.edges:
                    return edge
        return None

    def location(self, edge: EdgeState, host: str, target: str, *, https: bool = False) -> str:
        """Where a 302 sends the client: the edge's address (its HTTPS one with `https`), or
        with `edge_hostnames` the edge's own name under the requested domain (only for a
        name: an address has no name to keep)."""
        scheme, address = ("https", edge.https_address) if https and edge.https_address else ("http", edge.address)
        name = host_name(host)
        if self.settings.edge_hostnames and name and not _is_address(name):
            port = parse_listen(address)[1]
            return f"{scheme}://{edge.name.lower()}.{name}:{port}{target}"
        return f"{scheme}://{address}{target}"

    # The two methods web_dist.router.dns.Resolver asks for.
    def serves(self, name: str) -> bool:
        return self._index.lookup(name) is not None or self.named_edge(name) is not None

    def resolve(self, name: str, client: str) -> str | None:
        edge = self.named_edge(name) or self.route(name, client).edge
        return None if edge is None else parse_listen(edge.address)[0]

    # -- health checks -------------------------------------------------------------------------
    async def start(self) -> None:
        """Check every edge once (so the first answer is informed), then keep checking."""
        timeout = aiohttp.ClientTimeout(total=self.settings.health_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"user-agent": "cdn-router"})
        await self.check_all()
        self._task = asyncio.create_task(self._check_forever(), name="router-health")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval)
            await self.check_all()

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(edge) for edge in self.edges.values()))

    async def _check(self, edge: EdgeState) -> None:
        assert self._session is not None, "Router.start() first"
        started = self.clock()
        try:
            async with self._session.get(f"http://{edge.address}{HEALTH_PATH}") as resp:
                await resp.read()
                problem = None if resp.status == 200 else f"health check answered {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            problem = f"health check failed: {type(exc).__name__} {exc}".strip()
        self._record(edge, problem, self.clock() - started)

    def _record(self, edge: EdgeState, problem: str | None, elapsed: float) -> None:
        if (problem is None) != edge.healthy:
            log.warning("edge %s is %s", edge.name, "back" if problem is None else f"down: {problem}")
        edge.healthy, edge.problem, edge.checked_at = problem is None, problem, self.clock()
        if problem is None:
            edge.rtt = _average(edge.rtt, elapsed)


# -- the HTTP redirect service ---------------------------------------------------------------------
def build_router_app(router: Router) -> Starlette:
    """302 to the nearest healthy edge; /_router/ has its health, the edges' state and RTT reports.

    The app's lifespan starts the health checks and, with `dns_listen` set, the DNS server
    (reachable as `app.state.dns`).
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await router.start()
        dns: DnsServer | None = None
        try:
            if router.settings.dns_listen is not None:
                dns = DnsServer(router, ttl=router.settings.dns_ttl)
                await dns.start(router.settings.dns_listen)
                app.state.dns = dns
            yield
        finally:
            if dns is not None:
                dns.close()
            await router.close()

    async def health(request: Request) -> Response:
        return JSONResponse({"router": "ok"})

    async def edges(request: Request) -> Response:
        return JSONResponse([e.snapshot() for e in router.edges.values()])

    async def report_rtt(request: Request) -> Response:
        """A client's measured RTTs, `{"edge-name": seconds, ...}`, for its network."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not all(
            name in router.edges and isinstance(v, int | float) and 0 <= v < 60 for name, v in body.items()
        ):
            return PlainTextResponse("expected a JSON object of edge name = seconds\n", 400)
        router.latency.report(_client(request), body)
        return Response(status_code=204)

    async def redirect(request: Request) -> Response:
        return _redirect(router, request)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/_router/health", health),
            Route("/_router/edges", edges),
            Route("/_router/rtt", report_rtt, methods=["POST"]),
            Route("/{path:path}", redirect, methods=methods),
        ],
        lifespan=lifespan,
    )


def _redirect(router: Router, request: Request) -> Response:
    routing = router.route(
        request.headers.get("host", ""), _client(request), request.url.path, secure=request.url.scheme == "https"
    )
    headers = {"cache-control": "no-store", "x-cdn-route": routing.reason}
    if routing.region is not None:
        headers["x-cdn-client-region"] = routing.region
    if routing.distribution is None:
        return PlainTextResponse(f"Misdirected Request: {routing.reason}\n", 421, headers)
    if routing.edge is None:
        headers["retry-after"] = str(math.ceil(router.settings.health_interval))
        return PlainTextResponse(f"Service Unavailable: {routing.reason}\n", 503, headers)
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    headers["location"] = router.location(routing.edge, request.headers.get("host", ""), target, https=routing.https)
    headers["x-cdn-edge"] = routing.edge.name
    return PlainTextResponse(f"Found: {headers['location']}\n", 302, headers)


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True
