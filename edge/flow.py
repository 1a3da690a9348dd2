"""The edge's request state machine, after Varnish: recv -> lookup -> hit | miss | stale | pass
-> deliver, one method per step.

CloudFront's flow: look the object up; a fresh hit is answered from the cache; a miss is
fetched from the origin (one fetch however many viewers ask at once), stored and answered;
a stale hit is revalidated with the origin's validators, a 304 refreshes the entry and
anything else replaces it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from edge import compression
from edge.cache_key import cache_key, forwarded_headers, forwarded_query
from edge.coalesce import Coalescer, Flight, ResponseHead
from edge.deliver import Answer, Send, deliver
from edge.errors import EdgeError, error_body, from_upstream
from edge.freshness import corrected_initial_age, decide_lifetime, format_http_date
from edge.metrics import EdgeMetrics
from edge.store import CachedResponse, Headers, MemoryStore
from edge.upstream import OriginClient, UpstreamError, UpstreamResponse
from web_dist.behaviors import DistributionIndex, behavior_for
from web_dist.config import CacheBehavior, CdnConfig, Distribution, EdgeLocation

access_log = logging.getLogger("cdn.access")
Receive = Callable[[], Awaitable[dict[str, Any]]]

# Request headers passed to the origin on uploads and other forwarded methods.
PASS_HEADERS = ("content-type", "content-length", "content-md5", "content-encoding", "if-match",
                "if-none-match", "if-unmodified-since", "cache-control")
STORED_HEADERS_DROP = frozenset({"age", "set-cookie"})
UNCACHEABLE_MEMORY = 30.0  # seconds a "not storable" answer sends its key straight to the origin


class ClientGone(Exception):
    """The viewer disconnected while sending its request body."""


@dataclass
class EdgeRequest:
    method: str
    path: str  # as received, percent-encoded
    query: str
    headers: dict[str, str]  # lower-cased names, repeated headers comma-joined
    client: str
    receive: Receive
    started: float = field(default_factory=time.perf_counter)


@dataclass
class Route:
    """What recv decided: the distribution, behavior and key of a request."""

    dist: Distribution
    behavior: CacheBehavior
    key: str
    target: str  # path and forwarded query, sent to the origin
    forward: dict[str, str]

    @property
    def origin(self) -> str:
        return self.behavior.origin or self.dist.origin


class EdgeFlow:
    """Answers viewers' requests for the distributions of one edge location."""

    def __init__(
        self,
        config: CdnConfig,
        edge: EdgeLocation,
        *,
        clock: Callable[[], float] = time.time,
        store: MemoryStore | None = None,
        upstream: OriginClient | None = None,
    ) -> None:
        self.config = config
        self.edge = edge
        self.name = edge.name
        self.clock = clock
        self.store = store or MemoryStore(edge.cache_bytes, edge.max_object_bytes)
        self.upstream = upstream or OriginClient(config.origins, user_agent=f"cdn-edge/{edge.name}")
        self.flights = Coalescer()
        self.metrics = EdgeMetrics()
        self._index = DistributionIndex(config.distributions_of(edge.name))
        self._uncacheable: dict[str, float] = {}

    async def start(self) -> None:
        await self.upstream.start()

    async def close(self) -> None:
        await self.flights.close()
        await self.upstream.close()

    # -- recv ------------------------------------------------------------------------------
    async def handle(self, req: EdgeRequest, send: Send) -> None:
        route: Route | None = None
        status, sent, cache = 500, 0, "error"
        try:
            route = self.recv(req)
            if req.method in ("GET", "HEAD") and not self._remembered_uncacheable(route.key):
                status, sent, cache = await self.lookup(req, route, send)
            else:
                status, sent, cache = await self.pass_(req, route, send)
        except EdgeError as exc:
            status, sent, cache = await self.deliver_error(send, exc, route)
        except UpstreamError as exc:
            status, sent, cache = await self.deliver_error(send, from_upstream(exc), route)
        except ClientGone:
            status, cache = 499, "client-gone"
        finally:
            self._log(req, route, cache, status, sent)

    def recv(self, req: EdgeRequest) -> Route:
        dist = self._index.lookup(req.headers.get("host", ""))
        if dist is None:
            host = req.headers.get("host", "")
            raise EdgeError(421, f"Misdirected Request: edge {self.name} serves no distribution for host {host!r}")
        decoded = _checked_path(req.path)
        behavior = behavior_for(dist, decoded)
        if req.method not in behavior.allowed_methods:
            allow = ", ".join(sorted(behavior.allowed_methods))
            raise EdgeError(405, f"Method Not Allowed: {req.method} is not allowed for {decoded}", [("allow", allow)])
        query = forwarded_query(behavior, req.query)
        forward = forwarded_headers(behavior, req.headers)
        key = cache_key(dist.id, behavior, req.path, query, forward)
        return Route(dist, behavior, key, req.path + ("?" + query if query else ""), forward)

    # -- lookup ----------------------------------------------------------------------------
    async def lookup(self, req: EdgeRequest, route: Route, send: Send) -> tuple[int, int, str]:
        entry = self.store.get(route.key)
        now = self.clock()
        if entry is not None and entry.fresh(now):
            return await self.hit(req, route, entry, send, "hit")
        return await self.miss(req, route, send, stale=entry)

    async def hit(self, req: EdgeRequest, route: Route, entry: CachedResponse, send: Send, detail: str) -> tuple[int, int, str]:
        now = self.clock()
        age = int(entry.age(now))
        extra = self._stamp(f"{self.name}; {detail}; ttl={int(entry.ttl) - age}", age)
        compress = self._compress(req, route, entry.headers, len(entry.body))
        body: bytes = entry.body
        if compress and "range" not in req.headers and entry.status == 200:
            body = await self._gzipped(route.key, entry)
            answer = Answer(200, _gzip_headers(entry.headers), body, len(body))
            status, sent = await deliver(send, req.headers, req.method, answer, extra + [("content-encoding", "gzip")])
        else:
            answer = Answer(entry.status, entry.headers, body, len(body))
            status, sent = await deliver(send, req.headers, req.method, answer, extra)
        return status, sent, "hit"

    async def _gzipped(self, key: str, entry: CachedResponse) -> bytes:
        if entry.gzip_body is None:
            body = entry.body
            entry.gzip_body = (
                await asyncio.to_thread(compression.gzip_bytes, body) if len(body) > 256 * 1024
                else compression.gzip_bytes(body)
            )
            self.store.resize(key)
        return entry.gzip_body

    # -- miss and stale: one coalesced fetch ----------------------------------------------------
    async def miss(self, req: EdgeRequest, route: Route, send: Send, *, stale: CachedResponse | None) -> tuple[int, int, str]:
        flight, leader = self.flights.join(route.key, lambda f: self._fetch(f, route, stale, req))
        cursor = flight.subscribe()  # before any await, so no byte is trimmed before we read it
        try:
            head = await self._await_head(flight, route)
            if isinstance(head, CachedResponse):  # revalidated: a 304 refreshed the entry
                fwd = "stale" if stale is not None else "miss"
                return await self.hit(req, route, head, send, f"fwd={fwd}; fwd-status=304")
            if not head.shared and not leader:
                flight.release(cursor)
                return await self.pass_(req, route, send)
            detail = f"fwd={'stale' if stale is not None else 'miss'}; fwd-status={head.status}"
            detail += ("; stored" if head.stored else "") + ("" if leader else "; collapsed")
            return await self._deliver_flight(req, route, flight, cursor, head, send, detail)
        finally:
            flight.release(cursor)

    async def _await_head(self, flight: Flight, route: Route) -> ResponseHead | CachedResponse:
        """The flight's head, waited for no longer than the origin's own timeouts allow."""
        limit = sum(o.connect_timeout + o.read_timeout for o in self.config.origins_of(route.origin)) + 1
        try:
            return await asyncio.wait_for(asyncio.shield(flight.head), limit)
        except TimeoutError:
            raise EdgeError(504, f"the origin did not answer in time ({route.origin})") from None

    async def _deliver_flight(
        self, req: EdgeRequest, route: Route, flight: Flight, cursor: int, head: ResponseHead, send: Send, detail: str
    ) -> tuple[int, int, str]:
        size = _content_length(head.headers)
        answer = Answer(head.status, head.headers, None if req.method == "HEAD" else flight.body(cursor), size)
        compress = self._compress(req, route, head.headers, size)
        extra = self._stamp(f"{self.name}; {detail}", head.age)
        status, sent = await deliver(send, req.headers, req.method, answer, extra, compress=compress)
        return status, sent, detail.split(";")[0].removeprefix("fwd=")

    async def _fetch(self, flight: Flight, route: Route, stale: CachedResponse | None, req: EdgeRequest) -> None:
        headers = self._origin_headers(route.forward, req)
        if stale is not None:
            if stale.etag:
                headers["if-none-match"] = stale.etag
            if stale.last_modified:
                headers["if-modified-since"] = stale.last_modified
        request_time = self.clock()
        self.metrics.origin_requests += 1
        resp = await self.upstream.request(route.origin, "GET", route.target, headers)
        try:
            await self._fill(flight, route, stale, req, resp, request_time)
        finally:
            resp.close()

    async def _fill(
        self, flight: Flight, route: Route, stale: CachedResponse | None, req: EdgeRequest,
        resp: UpstreamResponse, request_time: float,
    ) -> None:
        now = self.clock()
        if stale is not None and resp.status == 304:
            flight.set_head(self._refresh(route, stale, resp.headers, request_time, now))
            return
        joined = _joined(resp.headers)
        life = decide_lifetime(
            resp.status, joined, route.behavior, has_authorization="authorization" in req.headers,
            error_ttl=route.dist.error_ttl, now=now,
        )
        length = resp.content_length
        storing = life.store and (length is None or length <= self.store.max_object_bytes)
        headers = _with_date(resp.headers, now)
        if not life.store:
            self._uncacheable[route.key] = now + UNCACHEABLE_MEMORY
        if not storing:
            self.flights.forget(flight)
            flight.stop_retaining()
        age = int(corrected_initial_age(joined, request_time, now))
        flight.set_head(ResponseHead(resp.status, headers, shared=life.store, stored=storing, age=age))
        async for chunk in resp.chunks():
            flight.feed(chunk)
            if storing and flight.received > self.store.max_object_bytes:
                storing = False
                self.flights.forget(flight)
                flight.stop_retaining()
            if not await flight.room():
                return  # nobody is reading and nothing is kept: stop fetching
        if storing:
            entry = CachedResponse(
                status=resp.status,
                headers=[h for h in headers if h[0] not in STORED_HEADERS_DROP],
                body=flight.collected(),
                response_time=now,
                initial_age=corrected_initial_age(joined, request_time, now),
                ttl=life.ttl,
                must_revalidate=life.must_revalidate,
            )
            self.store.put(route.key, entry)
            self._uncacheable.pop(route.key, None)

    def _refresh(
        self, route: Route, stale: CachedResponse, update: Headers, request_time: float, now: float
    ) -> CachedResponse:
        """RFC 9111 4.3.4: a 304 updates the stored headers and restarts the entry's age."""
        replaced = {k for k, _ in update if k not in ("content-length", "content-encoding", "content-range")}
        headers = [h for h in stale.headers if h[0] not in replaced]
        headers += [h for h in update if h[0] in replaced and h[0] not in STORED_HEADERS_DROP]
        joined = _joined(headers)
        life = decide_lifetime(stale.status, joined, route.behavior, error_ttl=route.dist.error_ttl, now=now)
        fresh = CachedResponse(
            status=stale.status,
            headers=headers,
            body=stale.body,
            response_time=now,
            initial_age=corrected_initial_age(_joined(update), request_time, now),
            ttl=life.ttl,
            must_revalidate=life.must_revalidate,
            gzip_body=stale.gzip_body,
        )
        if life.store:
            self.store.put(route.key, fresh)
        else:
            self.store.delete(route.key)
        return fresh

    # -- pass: straight to the origin ----------------------------------------------------------
    async def pass_(self, req: EdgeRequest, route: Route, send: Send) -> tuple[int, int, str]:
        headers = self._origin_headers(route.forward, req)
        if req.method not in ("GET", "HEAD"):
            headers.update({k: req.headers[k] for k in PASS_HEADERS if k in req.headers})
            headers.update({k: v for k, v in req.headers.items() if k.startswith("x-amz-")})
        else:
            headers.update({k: req.headers[k] for k in ("range", "if-range") if k in req.headers})
        has_body = req.method not in ("GET", "HEAD", "DELETE", "OPTIONS") or "content-length" in req.headers
        self.metrics.origin_requests += 1
        resp = await self.upstream.request(
            route.origin, req.method, route.target, headers, _request_body(req.receive) if has_body else None
        )
        try:
            if req.method not in ("GET", "HEAD", "OPTIONS") and resp.status < 400:
                # RFC 9111 4.4: a successful unsafe request invalidates the stored URL.
                self.store.delete(route.key)
            fwd = "method" if req.method not in ("GET", "HEAD") else "bypass"
            extra = self._stamp(f"{self.name}; fwd={fwd}; fwd-status={resp.status}", 0)
            headers_out = [h for h in resp.headers if h[0] not in ("cache-status", "x-cache")]
            answer = Answer(resp.status, headers_out, None if req.method == "HEAD" else resp.chunks(), resp.content_length)
            # Preconditions and ranges were the origin's to judge: send its answer as it is.
            status, sent = await deliver(send, {}, req.method, answer, extra)
        finally:
            resp.close()
        return status, sent, fwd

    # -- deliver -------------------------------------------------------------------------------
    async def deliver_error(self, send: Send, exc: EdgeError, route: Route | None) -> tuple[int, int, str]:
        body = error_body(exc.status, exc.message, self.name)
        headers = [("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store"),
                   ("date", format_http_date(self.clock())), *exc.headers]
        extra = self._stamp(f"{self.name}; fwd=miss; detail=error", 0)
        try:
            status, sent = await deliver(send, {}, "GET", Answer(exc.status, headers, body, len(body)), extra)
        except RuntimeError:  # the response had already started: nothing more can be said
            return exc.status, 0, "error"
        return status, sent, "error"

    def _stamp(self, cache_status: str, age: int) -> Headers:
        hit = "; hit" in cache_status or "fwd-status=304" in cache_status
        return [("cache-status", cache_status), ("x-cache", f"{'Hit' if hit else 'Miss'} from {self.name}"),
                ("age", str(age))]

    def _compress(self, req: EdgeRequest, route: Route, headers: Headers, size: int | None) -> bool:
        if not route.behavior.compress or not compression.accepts_gzip(req.headers.get("accept-encoding")):
            return False
        found = dict(headers)
        return compression.compressible(found.get("content-type"), found.get("content-encoding"), size)

    def _origin_headers(self, forward: dict[str, str], req: EdgeRequest) -> dict[str, str]:
        headers = dict(forward)
        headers["via"] = f"1.1 {self.name} (cdn)"
        prior = req.headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{prior}, {req.client}" if prior else req.client
        return headers

    def _remembered_uncacheable(self, key: str) -> bool:
        until = self._uncacheable.get(key)
        if until is None:
            return False
        if until < self.clock():
            del self._uncacheable[key]
            return False
        return True

    def _log(self, req: EdgeRequest, route: Route | None, cache: str, status: int, sent: int) -> None:
        ms = (time.perf_counter() - req.started) * 1000
        dist = route.dist.id if route else "-"
        self.metrics.count(dist, cache, status, sent)
        access_log.info(
            "%s dist=%s %s %s key=%s cache=%s status=%d bytes=%d time=%.1fms",
            self.name, dist, req.method, req.path + ("?" + req.query if req.query else ""),
            route.key if route else "-", cache, status, sent, ms,
        )


def _checked_path(raw: str) -> str:
    """The decoded path, refusing what could address something outside the distribution."""
    if not raw.startswith("/"):
        raise EdgeError(400, "Bad Request: the path must start with '/'")
    decoded = unquote(raw)
    if "\x00" in decoded or "\\" in decoded:
        raise EdgeError(400, "Bad Request: the path contains a NUL byte or a backslash")
    if any(seg in ("..", ".") for seg in decoded.split("/")):
        raise EdgeError(400, "Bad Request: the path contains a '.' or '..' segment")
    return decoded


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _joined(headers: Headers) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers:
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _with_date(headers: Headers, now: float) -> Headers:
    """A cache adds Date to a response that lacks one (RFC 9110 6.6.1)."""
    if any(name == "date" for name, _ in headers):
        return headers
    return [*headers, ("date", format_http_date(now))]


def _content_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name == "content-length" and value.isdigit():
            return int(value)
    return None


def _gzip_headers(headers: Headers) -> Headers:
    out: Headers = []
    for name, value in headers:
        if name == "etag":
            value = compression.weak_etag(value) or value
        if name == "vary":
            continue
        out.append((name, value))
    vary = [v for k, v in headers if k == "vary"]
    out.append(("vary", ", ".join([*vary, "Accept-Encoding"]) if vary else "Accept-Encoding"))
    return out
