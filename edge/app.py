"""The edge node as an ASGI app: viewers' requests go to the flow, /_cdn/health answers here.

The proxy path is a bare ASGI callable (no router on the hot path). Metrics and the dashboard
are never on this port: `build_admin_app` (edge/admin.py) serves them on the admin listener.
`build_edge_app` takes the clock, store and origin client as arguments so tests and
benchmarks can supply their own.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge.admin import build_admin_app as build_admin_app
from edge.control_sync import ControlSync
from edge.flow import EdgeFlow, EdgeRequest
from edge.store import MemoryStore
from edge.upstream import OriginClient, connection_names
from edge.webrtc import MAX_OFFER_BYTES, WHEP_PREFIX, WhepService, WhepSettings
from edge.workers import PeerApp, WorkerPlan, Workers
from web_dist.config import CdnConfig
from web_dist.server.fast_lane import QuickAnswer

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ADMIN_PREFIX = "/_cdn/"


class EdgeApp:
    """ASGI entry point of one edge location."""

    def __init__(self, flow: EdgeFlow, sync: ControlSync | None = None, whep: WhepSettings | None = None) -> None:
        self.flow = flow
        self.sync = sync  # follows the control plane's invalidations when [control] is configured
        self.admin = _public_admin_app(flow)
        self.whep = WhepService(flow.config, flow.edge, flow.upstream, whep)
        flow.metrics.live.webrtc_viewers = self.whep.viewers_by_stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith(ADMIN_PREFIX):
                await self.admin(scope, receive, send)  # type: ignore[arg-type]
                return
            if scope.get("scheme") == "https":
                send = self._with_hsts(scope, send)
            if self.whep.serves(scope):
                workers = self.flow.workers
                if workers is not None and not workers.leader:  # WHEP sessions live in the leader
                    await workers.relay(scope, receive, send, MAX_OFFER_BYTES)
                else:
                    await self.whep(scope, receive, send)
                return
            await self.flow.handle(_edge_request(scope, receive), send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def shortcut(
        self, method: str, target: bytes, raw_headers: list[tuple[bytes, bytes]], client: str
    ) -> QuickAnswer | None:
        """web_dist.server.fast_lane's question: can the flow answer this head at once (a fresh
        hit)? None for anything __call__ routes elsewhere or the flow must wait for."""
        path, _, query = target.decode("latin-1").partition("?")
        routed = unquote(path) if "%" in path else path
        if routed.startswith((ADMIN_PREFIX, WHEP_PREFIX)):
            return None
        return self.flow.quick_hit(edge_request(method, path, query, raw_headers, client, _no_body))

    def peer_app(self) -> PeerApp:
        """The app of this worker's loopback port, where its sibling workers reach it."""
        flow = self.flow
        workers = flow.workers
        assert workers is not None, "a peer port belongs to an edge with workers"

        def published(dist_id: str, path: str) -> None:
            if flow.on_invalidate is not None:
                flow.on_invalidate(dist_id, path)

        return PeerApp(flow, workers, whep=self.whep, request=_edge_request, on_written=published)

    def _with_hsts(self, scope: Scope, send: Send) -> Send:
        """`send`, adding Strict-Transport-Security when the distribution asks for it (HTTPS only:
        RFC 6797 8.1, a browser ignores it over HTTP)."""
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        dist = self.flow.distribution_for(host)
        if dist is None or dist.hsts_max_age is None:
            return send
        value = f"max-age={dist.hsts_max_age}".encode()

        async def stamped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"strict-transport-security", value)]}
            await send(message)

        return stamped

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.flow.start()
                    if self.flow.workers is not None:
                        await self.flow.workers.start()
                    await self.whep.start()
                    if self.sync is not None:
                        await self.sync.start()
                except Exception as exc:  # reported to the server, which refuses to start
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.whep.close()
                if self.sync is not None:
                    await self.sync.close()
                await self.flow.close()
                if self.flow.workers is not None:
                    await self.flow.workers.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_edge_app(
    config: CdnConfig,
    name: str,
    *,
    clock: Callable[[], float] = time.time,
    store: MemoryStore | None = None,
    upstream: OriginClient | None = None,
    whep: WhepSettings | None = None,
    control_token: str | None = None,
    workers: WorkerPlan | None = None,
) -> EdgeApp:
    """The ASGI app of edge location `name` of `config` (KeyError names unknown edges).
    With [control] it follows the control plane, using `control_token` (else control.token).
    `workers`: this process is one of the edge's worker processes (edge/workers.py): it gets
    its share of the memory tier and a disk tier folder of its own; the leader follows the
    control plane for all."""
    if name not in config.edges:
        raise KeyError(f"{config.source}: no edge named {name!r} (edges: {', '.join(config.edges)})")
    edge = config.edges[name]
    if workers is not None:
        edge = dataclasses.replace(
            edge,
            cache_bytes=max(edge.max_object_bytes, edge.cache_bytes // workers.count),
            disk_path=edge.disk_path / f"worker-{workers.index}" if edge.disk_path is not None else None,
        )
    flow = EdgeFlow(config, edge, clock=clock, store=store, upstream=upstream)
    if workers is not None:
        held = max((o.read_timeout for o in config.origins.values()), default=0.0)
        flow.workers = Workers(workers, hold=max(60.0, held + 5.0))
    control = config.control
    leader = workers is None or workers.index == 0
    sync = ControlSync(flow, control, token=control_token or control.token, clock=clock) if control and leader else None
    return EdgeApp(flow, sync, whep)


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _edge_request(scope: Scope, receive: Receive) -> EdgeRequest:
    raw_path = scope.get("raw_path") or scope["path"].encode()
    client = scope.get("client") or ("-", 0)
    return edge_request(
        scope["method"],
        raw_path.decode("latin-1").split("?", 1)[0],
        scope.get("query_string", b"").decode("latin-1"),
        scope["headers"],
        str(client[0]),
        receive,
        scope.get("scheme", "http"),
    )


def edge_request(
    method: str,
    path: str,
    query: str,
    raw_headers: Iterable[tuple[bytes, bytes]],
    client: str,
    receive: Receive,
    scheme: str = "http",
) -> EdgeRequest:
    """The flow's view of a request: header names lower-cased, repeats joined, hop-by-hop
    fields dropped, a malformed Host noted as the request's problem."""
    headers: dict[str, str] = {}
    problem: str | None = None
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in headers:
            if name == "host":
                problem = "Bad Request: more than one Host header"
            # RFC 6265 5.4: one Cookie field, pairs joined by "; "; other fields by ", "
            headers[name] = f"{headers[name]}{'; ' if name == 'cookie' else ', '}{value}"
        else:
            headers[name] = value
    if "connection" in headers:
        for named in connection_names(headers["connection"]):
            headers.pop(named, None)  # RFC 9110 7.6.1: these were for the hop, not for us to pass on
    return EdgeRequest(
        method=method,
        path=path,
        query=query,
        headers=headers,
        client=client,
        receive=receive,
        problem=problem or _host_problem(headers.get("host", "")),
        scheme=scheme,
    )


@functools.lru_cache(maxsize=4096)  # a viewer's Host repeats: judged once (bounded: any Host may come)
def _host_problem(host: str) -> str | None:
    """Why a Host value is malformed (RFC 9110 7.2: uri-host [":" port]), or None."""
    name, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return "Bad Request: the Host header is malformed"
        name, port = host[: end + 1], host[end + 1 :].removeprefix(":")
        if host[end + 1 :] and not host[end + 1 :].startswith(":"):
            return "Bad Request: the Host header is malformed"
    elif ":" in host:
        name, _, port = host.rpartition(":")
    if (port and not port.isdigit()) or len(port) > 5:
        return "Bad Request: the Host header's port must be a number"
    if any(c in name for c in " \t/@?#,"):
        return "Bad Request: the Host header is malformed"
    return None


def _public_admin_app(flow: EdgeFlow) -> Starlette:
    """The one /_cdn/ page viewers may see; any other /_cdn/ path is a 404."""

    async def health(request: Request) -> Response:
        return JSONResponse({"edge": flow.name, "status": "ok"})

    return Starlette(routes=[Route("/_cdn/health", health)])
