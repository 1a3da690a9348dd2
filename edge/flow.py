"""The edge's request state machine, after Varnish: recv -> lookup -> hit | miss | stale | pass
-> deliver, one method per step.

CloudFront's flow: look the object up; a fresh hit is answered from the cache; a miss is
fetched from the origin (one fetch however many viewers ask at once), stored and answered;
a stale hit is revalidated with the origin's validators, a 304 refreshes the entry and
anything else replaces it. RFC 5861 adds two ways to answer with a stale copy: at once while
a background fetch refreshes it (stale-while-revalidate) and when the origin fails
(stale-if-error). Misses go to the parent edge first when one is configured (tiered caching).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from edge import compression
from edge.access import (
    check_access,
    check_doors,
    in_any,
    needs_check,
    signer_hosts,
    without_signing_params,
)
from edge.access_log import AccessLog
from edge.cache_key import (
    cache_key,
    forwarded_cookies,
    forwarded_headers,
    forwarded_query,
    key_field,
)
from edge.coalesce import Coalescer, Flight, Head, ResponseHead, ServeStale
from edge.deliver import RECOMPUTED, SHAPING_HEADERS, WHOLE, Answer, Departure, Send, ViewerLeft, deliver, send_body
from edge.disk_store import DiskStore
from edge.errors import EdgeError, error_body, from_upstream
from edge.freshness import (
    corrected_initial_age,
    decide_lifetime,
    format_http_date,
    parse_cache_control,
    response_cache_control,
    vary_names,
)
from edge.live import session_of
from edge.metrics import EdgeMetrics
from edge.outcome import ERROR, GONE, HIT, SWR_HIT, Outcome, stale_if_error
from edge.store import CachedResponse, Headers, MemoryStore
from edge.tiers import Tiers
from edge.upload import IDLE_TIMEOUT, ClientGone, UploadBody, declared_length, upload_limit
from edge.upstream import HOP_BY_HOP, OriginClient, UpstreamError, UpstreamResponse
from web_dist.config import CacheBehavior, CdnConfig, Distribution, EdgeLocation, Origin
from web_dist.config.behaviors import DistributionIndex, behavior_for
from web_dist.http.semantics import response_length
from web_dist.server.fast_lane import QuickAnswer, response_head

if TYPE_CHECKING:
    from edge.workers import Workers

log = logging.getLogger("cdn.edge")
Receive = Callable[[], Awaitable[dict[str, Any]]]
Result = tuple[int, int, Outcome]  # status, body bytes sent, how the cache served it

# Request headers an upload (or any forwarded method) carries to the origin.
PASS_HEADERS = (
    "content-type",
    "content-length",
    "content-md5",
    "content-encoding",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "cache-control",
    "authorization",
)
# Request headers never copied onto a cache fill: the edge sets its own, or they would make one
# viewer's answer differ from another's without the cache key knowing (cookies, credentials).
NOT_FORWARDED = HOP_BY_HOP | frozenset(
    {
        "host",
        "cookie",
        "authorization",
        "accept-encoding",
        "range",
        "if-range",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "content-length",
        "content-type",
        "expect",
        "via",
        "x-forwarded-for",
        "forwarded",
        "cache-control",
        "pragma",
    }
)
# Surrogate-Key and Cache-Tag are for the CDN (purge by tag), not for viewers.
CDN_ONLY_HEADERS = frozenset({"cache-status", "x-cache", "surrogate-key", "cache-tag"})
STORED_HEADERS_DROP = frozenset({"age", "set-cookie"}) | CDN_ONLY_HEADERS
UNCACHEABLE_MEMORY = 30.0  # seconds a "not storable" answer sends its key straight to the origin
MAX_UNCACHEABLE = 50_000  # keys remembered as not storable, oldest forgotten first
WHOLE_BEFORE_HEAD = 256 * 1024  # bodies up to this size are read whole before the viewer's head
MAX_VARY_SPECS = 100_000
MAX_ROUTES = 10_000


@dataclass
class EdgeRequest:
    method: str
    path: str  # as received, percent-encoded
    query: str
    headers: dict[str, str]  # lower-cased names, repeated headers comma-joined
    client: str
    receive: Receive
    started: float = field(default_factory=time.perf_counter)
    problem: str | None = None  # malformed at the protocol level (a 400 before anything else)
    scheme: str = "http"  # "https" on the edge's TLS listener


@dataclass
class Route:
    """What recv decided: the distribution, behavior and keys of a request."""

    dist: Distribution
    behavior: CacheBehavior
    primary: str  # the cache key of the URL
    target: str  # path and forwarded query, sent upstream
    forward: dict[str, str]
    key: str = ""  # the key of the variant this request selects (primary when nothing varies)

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
        self.store = (
            store if store is not None else MemoryStore(edge.cache_bytes, edge.max_object_bytes)
        )  # (an empty store is falsy)
        self.disk = DiskStore(edge.disk_path, edge.disk_bytes, edge.disk_max_object_bytes) if edge.disk_path else None
        self.cache = Tiers(self.store, self.disk)
        self.metrics = EdgeMetrics()
        self.metrics.bind_store("memory", self.store)
        if self.disk is not None:
            self.metrics.bind_store("disk", self.disk)
        self.upstream = upstream if upstream is not None else OriginClient(user_agent=f"cdn-edge/{edge.name}")
        self.flights = Coalescer()
        self.access = AccessLog()
        self.upload_idle_timeout = IDLE_TIMEOUT
        self._index = DistributionIndex(config.distributions_of(edge.name), edge.name)
        self._uncacheable: dict[str, float] = {}
        self._vary: dict[str, tuple[str, ...]] = {}  # primary key -> headers its responses vary on
        self._tags: dict[str, set[str]] = {}  # cache tag -> keys stored with it
        self._tagged = 0  # (tag, key) pairs in _tags, for pruning
        self._routes: dict[tuple[str, str, str], tuple[Distribution, CacheBehavior, str, str, str]] = {}
        self._pages: dict[str, asyncio.Future[CachedResponse | None]] = {}  # error pages being fetched
        self._via_token = f" {edge.name} "
        self._parent = _parent_origin(config, edge)
        # (distribution, path) of a PUT/DELETE through this edge: the control plane tells the others
        self.on_invalidate: Callable[[str, str], None] | None = None
        self.workers: Workers | None = None  # the edge's other worker processes (edge/workers.py)

    async def start(self) -> None:
        for key, tags in (await self.cache.open()).items():
            self._index_tags(key, tags)
        await self.upstream.start()
        self.access.start()

    async def close(self) -> None:
        await self.flights.close()
        await self.upstream.close()
        await self.access.close()
        await self.cache.close()

    # -- the tiers (edge/tiers.py) --------------------------------------------------------------
    async def _get(self, key: str) -> CachedResponse | None:
        return await self.cache.get(key)

    def _put(self, key: str, entry: CachedResponse, *, live: bool = False) -> None:
        self.cache.put(key, entry, now=self.clock(), live=live)
        self._index_tags(key, entry.tags)

    def _delete(self, key: str) -> None:
        self.cache.delete(key)

    # -- recv ------------------------------------------------------------------------------
    async def handle(self, req: EdgeRequest, send: Send, *, worker: bool = False) -> None:
        """Answer a viewer's request; `worker`: a sibling worker's fill of a key this worker owns
        (edge/workers.py), answered as stored and not logged or counted here (the asking worker
        does that for its viewer)."""
        route: Route | None = None
        status, sent, cache = 500, 0, ERROR
        try:
            route = self.recv(req, trusted=worker)
            if self._cacheable(req, route):
                status, sent, cache = await self.lookup(req, route, send, worker=worker)
            else:
                status, sent, cache = await self.pass_(req, route, send)
        except EdgeError as exc:
            status, sent, cache = await self.deliver_error(send, exc)
        except UpstreamError as exc:
            status, sent, cache = await self.deliver_error(send, from_upstream(exc))
        except ClientGone:
            # The server reports a malformed chunked body as a disconnect: answer 400 in case
            # the viewer is still there (to one who left, nothing is sent).
            bad_body = EdgeError(400, "Bad Request: the request body ended early or was malformed")
            status, sent, cache = await self._try_error(send, bad_body)
        except ViewerLeft as gone:  # mid-body: the log says what really went out
            status, sent, cache = gone.status, gone.sent, GONE
        except Exception:  # a fault of the edge's own: the viewer gets a 500, the log the traceback
            log.exception("%s: %s %s failed", self.name, req.method, req.path)
            try:
                status, sent, cache = await self.deliver_error(
                    send, EdgeError(500, "Internal Server Error: the edge failed")
                )
            except Exception:  # the connection is gone too
                status, sent, cache = 500, 0, ERROR
        finally:
            if not worker:
                self._log(req, route, cache.label, status, sent)

    def _cacheable(self, req: EdgeRequest, route: Route) -> bool:
        """Whether the request goes to the cache (lookup) rather than straight to the origin (pass)."""
        return (
            req.method in ("GET", "HEAD")
            and route.behavior.cookie_keys == "none"
            and not self._remembered_uncacheable(route.primary)
        )

    def recv(self, req: EdgeRequest, *, trusted: bool = False) -> Route:
        """The request's route, after the checks a viewer's request must pass (`trusted`: a
        sibling worker's fill, whose viewer passed them there)."""
        if req.problem is not None:
            raise EdgeError(400, req.problem)
        host = req.headers.get("host", "")
        memo = (host, req.path, req.query)
        known = self._routes.get(memo)
        if known is None:
            known = self._route(host, req.path, req.query)
        dist, behavior, decoded, query, primary = known
        if "via" in req.headers and self._via_token in f" {req.headers['via']} ".replace(",", " "):
            raise EdgeError(508, f"Loop Detected: the request already passed through {self.name}")
        if req.method not in behavior.allowed_methods:
            allow = ", ".join(sorted(behavior.allowed_methods))
            raise EdgeError(405, f"Method Not Allowed: {req.method} is not allowed for {decoded}", [("allow", allow)])
        if not trusted:
            aliases = signer_hosts(host, dist, self.name, self._router_port) if dist.trusted_keys else ()
            if needs_check(dist, behavior):  # before any lookup: a refusal must not reveal what is cached
                check_access(
                    self.config,
                    dist,
                    behavior,
                    req,
                    self.clock(),
                    trusted_proxies=self.edge.trusted_proxies,
                    aliases=aliases,
                )
            check_doors(
                dist,
                behavior,
                req,
                req.method,
                decoded,
                self.clock(),
                trusted_proxies=self.edge.trusted_proxies,
                https_port=self.edge.https_port,
                aliases=aliases,
            )
        forward = forwarded_headers(behavior, req.headers) if behavior.header_keys else {}
        if forward or behavior.header_keys:
            primary = cache_key(dist.id, behavior, req.path, query, forward)
        return Route(dist, behavior, primary, req.path + ("?" + query if query else ""), forward, primary)

    @property
    def _router_port(self) -> int | None:
        """The request router's port: a URL signed for the router's address names it."""
        router = self.config.router
        port = router.listen.rpartition(":")[2] if router is not None else ""
        return int(port) if port.isdigit() and port != "0" else None

    def distribution_for(self, host: str) -> Distribution | None:
        """The distribution of this edge that answers for a Host header (None: none does)."""
        return self._index.lookup(host)

    def _route(self, host: str, path: str, raw_query: str) -> tuple[Distribution, CacheBehavior, str, str, str]:
        """Distribution, behavior, decoded path, forwarded query and key of a URL, remembered:
        a hit should not match patterns and parse queries again."""
        dist = self.distribution_for(host)
        if dist is None:
            raise EdgeError(421, f"Misdirected Request: edge {self.name} serves no distribution for host {host!r}")
        decoded = _checked_path(path)
        behavior = behavior_for(dist, decoded)
        # Signing parameters are for the edge: never in the cache key, never sent to the origin.
        query = forwarded_query(behavior, without_signing_params(raw_query) if behavior.signed else raw_query)
        known = (dist, behavior, decoded, query, cache_key(dist.id, behavior, path, query, {}))
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        self._routes[(host, path, raw_query)] = known
        return known

    # -- lookup ----------------------------------------------------------------------------
    async def lookup(
        self, req: EdgeRequest, route: Route, send: Send, *, retry: bool = True, worker: bool = False
    ) -> Result:
        """Answer from the cache, or through one coalesced fetch. `worker`: the request is a
        sibling worker's fill (edge/workers.py), answered with the response as stored rather
        than shaped for a viewer; the decisions are the same."""
        entry = self._peek(req, route)
        if entry is None and self.disk is not None:
            entry = await self._get(route.key)
        if entry is None:
            return await self.miss(req, route, send, stale=None, retry=retry, worker=worker)
        stored = self._send_stored if worker else self.hit
        now = self.clock()
        if entry.fresh(now):
            return await stored(req, route, entry, send, HIT)
        if entry.usable_while_revalidating(now):
            self._refresh_in_background(req, route, entry)
            return await stored(req, route, entry, send, SWR_HIT)
        return await self.miss(req, route, send, stale=entry, retry=retry, worker=worker)

    def _peek(self, req: EdgeRequest, route: Route) -> CachedResponse | None:
        """The memory tier's entry for the variant the request selects (route.key is set to its key)."""
        names = self._vary.get(route.primary)
        route.key = _variant_key(route.primary, names, req.headers) if names else route.primary
        return self.cache.peek(route.key)

    def quick_hit(self, req: EdgeRequest) -> QuickAnswer | None:
        """A fresh plain hit of the memory tier as bytes for the wire, or None when answering
        needs anything but this (a miss, a stale or shaped answer, a refusal): `handle` then
        takes the request. The same steps as handle -> lookup -> hit, without waiting, for
        web_dist.server.fast_lane."""
        if req.problem is not None:
            return None
        try:
            route = self.recv(req)
        except EdgeError:
            return None
        if not self._cacheable(req, route):
            return None
        entry = self._peek(req, route)
        now = self.clock()
        # (a 200 is never an error page: those are for 4xx and 5xx)
        if entry is None or entry.status != 200 or not isinstance(entry.body, bytes) or not entry.fresh(now):
            return None
        if not req.headers.keys().isdisjoint(SHAPING_HEADERS) or self._negotiable(
            route, entry.headers, len(entry.body)
        ):
            return None
        if entry.head is None:
            entry.head = response_head(200, self._plain_wire(entry)) or b""
        if not entry.head:
            return None  # a stored field uvicorn refuses to write: handle answers (its 500)
        age = int(entry.age(now))
        stamp = b"".join(b"%s: %s\r\n" % field for field in self._hit_fields(entry, HIT, age)) + b"\r\n"
        body = entry.body if req.method == "GET" else b""
        if len(body) <= WHOLE:
            self._log(req, route, HIT.label, 200, len(body))
            return QuickAnswer((entry.head, stamp), body)

        def done(unsent: int) -> None:  # the log says what really went out
            self._log(req, route, (GONE if unsent else HIT).label, 200, len(body) - unsent)

        return QuickAnswer((entry.head, stamp), body, done)

    async def hit(self, req: EdgeRequest, route: Route, entry: CachedResponse, send: Send, outcome: Outcome) -> Result:
        if route.dist.error_pages and entry.status in route.dist.error_pages:
            page = await self._error_page(route.dist, entry.status)
            if page is not None:
                entry = _with_page(entry, page)
        age = int(entry.age(self.clock()))
        negotiable = entry.status == 200 and self._negotiable(route, entry.headers, len(entry.body))
        coding = self._coding(req) if negotiable and "range" not in req.headers else None
        if not negotiable and entry.status == 200 and req.headers.keys().isdisjoint(SHAPING_HEADERS):
            return await self._plain_hit(req, entry, send, outcome, age)
        extra = self._stamp(outcome.cache_status(self.name, int(entry.ttl) - age), outcome, age)
        body = entry.body if coding is None else await self._encoded(route.key, entry, coding)
        headers = entry.headers if coding is not None or not negotiable else compression.vary_on_coding(entry.headers)
        answer = Answer(entry.status, headers, body, len(body))
        with _departure(req) if len(body) > WHOLE else Departure(None) as departure:
            status, sent = await deliver(
                send, req.headers, req.method, answer, extra, coding=coding, departure=departure
            )
        return status, sent, outcome

    async def _plain_hit(
        self, req: EdgeRequest, entry: CachedResponse, send: Send, outcome: Outcome, age: int
    ) -> Result:
        """The common hit, with the stored headers encoded once per entry, not per request."""
        headers = [*self._plain_wire(entry), *self._hit_fields(entry, outcome, age)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = b"" if req.method == "HEAD" else entry.body
        if len(body) > WHOLE or not isinstance(body, bytes):
            with _departure(req) as departure:
                sent = await send_body(send, 200, body, departure)
        else:
            await send({"type": "http.response.body", "body": body})
            sent = len(body)
        return 200, sent, outcome

    def _hit_fields(self, entry: CachedResponse, outcome: Outcome, age: int) -> list[tuple[bytes, bytes]]:
        """What a plain hit adds to the stored fields: Cache-Status, X-Cache and Age."""
        return [
            (b"cache-status", outcome.cache_status(self.name, int(entry.ttl) - age).encode()),
            (b"x-cache", f"{outcome.kind} from {self.name}".encode()),
            (b"age", str(age).encode()),
        ]

    @staticmethod
    def _plain_wire(entry: CachedResponse) -> list[tuple[bytes, bytes]]:
        if entry.wire is None:
            entry.wire = _wire_headers(entry)
        return entry.wire

    async def _encoded(self, key: str, entry: CachedResponse, coding: str) -> bytes:
        """The body compressed once per entry and coding, kept beside the identity body."""
        known = entry.encoded.get(coding)
        if known is not None:
            return known
        raw = entry.body
        body = (
            await asyncio.to_thread(compression.encode, coding, raw)
            if len(raw) > 256 * 1024
            else compression.encode(coding, raw)
        )
        entry.encoded[coding] = body
        self.cache.resize(key)
        return body

    # -- miss and stale: one coalesced fetch ----------------------------------------------------
    async def miss(
        self,
        req: EdgeRequest,
        route: Route,
        send: Send,
        *,
        stale: CachedResponse | None,
        retry: bool = True,
        worker: bool = False,
    ) -> Result:
        stored = self._send_stored if worker else self.hit
        streamed = self._send_flight if worker else self._deliver_flight
        flight, leader = self.flights.join(route.key, lambda f: self._fetch(f, route, stale, req))
        cursor = flight.subscribe()  # before any await, so no byte is trimmed before we read it
        fwd = "stale" if stale is not None else "miss"
        try:
            try:
                head = await self._await_head(flight, route)
            except (UpstreamError, EdgeError) as exc:
                if stale is not None and stale.usable_on_error(self.clock()):
                    status = exc.status if isinstance(exc, EdgeError) else from_upstream(exc).status
                    return await stored(req, route, stale, send, stale_if_error(status))
                raise
            if isinstance(head, ServeStale):
                assert stale is not None
                return await stored(req, route, stale, send, stale_if_error(head.status or 502))
            if isinstance(head, CachedResponse):  # revalidated: a 304 refreshed the entry
                return await stored(req, route, head, send, Outcome(fwd=fwd, fwd_status=304))
            if (
                not leader
                and retry
                and head.vary
                and _vary_values(head.vary, req.headers) != _vary_values(head.vary, flight.request_headers)
            ):
                flight.release(cursor)  # this viewer wants another variant: look it up as one
                route.key = route.primary
                return await self.lookup(req, route, send, retry=False, worker=worker)
            if (not head.shared and not leader) or (not head.stored and "range" in req.headers):
                # Not for sharing, or too large to keep: this viewer asks the origin itself
                # (a range then costs the origin that range, not the whole object).
                flight.release(cursor)
                return await self.pass_(req, route, send)
            outcome = Outcome(fwd=fwd, fwd_status=head.status, stored=head.confirmed, collapsed=not leader)
            return await streamed(req, route, flight, cursor, head, send, outcome)
        finally:
            flight.release(cursor)

    async def _await_head(self, flight: Flight, route: Route) -> Head:
        """The flight's head, waited for no longer than the origin's own timeouts allow."""
        limit = sum(o.connect_timeout + o.read_timeout for o in self._upstreams(route)) + 1
        try:
            return await asyncio.wait_for(asyncio.shield(flight.head), limit)
        except TimeoutError:
            raise EdgeError(504, f"the origin did not answer in time ({route.origin})") from None

    async def _deliver_flight(
        self,
        req: EdgeRequest,
        route: Route,
        flight: Flight,
        cursor: int,
        head: ResponseHead,
        send: Send,
        outcome: Outcome,
    ) -> Result:
        cache_status = outcome.cache_status(self.name)
        if head.from_worker and head.upstream_status:
            cache_status, outcome = _owners_status(head.upstream_status, outcome)
        elif head.upstream_status:
            cache_status = f"{head.upstream_status}, {cache_status}"
        extra = self._stamp(cache_status, outcome, head.age)
        page = await self._error_page(route.dist, head.status)
        if page is not None:
            flight.release(cursor)
            answer = Answer(head.status, _page_headers(head.headers, page), page.body, len(page.body))
            status, sent = await deliver(send, {}, req.method, answer, extra)
        else:
            size = response_length(head.headers)
            chunks = flight.body(cursor)
            body: bytes | AsyncIterator[bytes] = chunks
            if size is None and head.stored and "range" in req.headers and req.method == "GET":
                # a range needs the length: wait for the body being stored (at most max_object)
                body = b"".join([chunk async for chunk in chunks])
                size = len(body)
            answer = Answer(head.status, head.headers, None if req.method == "HEAD" else body, size)
            negotiable = head.status == 200 and self._negotiable(route, head.headers, size)
            coding = self._coding(req) if negotiable else None
            if negotiable and coding is None:
                answer.headers = compression.vary_on_coding(head.headers)
            try:
                with _departure(req) as departure:
                    status, sent = await deliver(
                        send, req.headers, req.method, answer, extra, coding=coding, departure=departure
                    )
            except ViewerLeft:
                flight.depart(cursor)  # the fill goes on for other readers, or up to abandoned_fill_bytes
                raise
        return status, sent, outcome

    def _refresh_in_background(self, req: EdgeRequest, route: Route, stale: CachedResponse) -> None:
        """One background revalidation per key, however many viewers see the stale copy."""
        self.flights.join(route.key, lambda f: self._fetch(f, route, stale, req))

    async def _fetch(self, flight: Flight, route: Route, stale: CachedResponse | None, req: EdgeRequest) -> None:
        flight.request_headers = req.headers
        validators = {}
        if stale is not None:
            if stale.etag:
                validators["if-none-match"] = stale.etag
            if stale.last_modified:
                validators["if-modified-since"] = stale.last_modified
        request_time = self.clock()
        resp = None
        if self.workers is not None and (owner := self.workers.owner(route.primary)) is not None:
            # another worker of this edge owns the key: it fills it from the origin, once
            resp = await self.workers.fill(self.upstream, owner, req, validators)
        from_worker = resp is not None
        if resp is None:
            try:
                resp = await self._request_upstream(route, "GET", {**self._fill_headers(route, req), **validators})
            except UpstreamError:
                if stale is not None and stale.usable_on_error(self.clock()):
                    flight.set_head(ServeStale(None))
                    return
                raise
        try:
            await self._fill(flight, route, stale, req, resp, request_time, from_worker=from_worker)
        finally:
            resp.close()

    async def _fill(
        self,
        flight: Flight,
        route: Route,
        stale: CachedResponse | None,
        req: EdgeRequest,
        resp: UpstreamResponse,
        request_time: float,
        *,
        from_worker: bool = False,
    ) -> None:
        now = self.clock()
        if stale is not None and resp.status == 304:
            flight.set_head(self._refresh(route, stale, resp.headers, request_time, now))
            return
        if stale is not None and resp.status >= 500 and stale.usable_on_error(now):
            flight.set_head(ServeStale(resp.status))
            return
        joined = _joined(resp.headers)
        life = decide_lifetime(
            resp.status,
            joined,
            route.behavior,
            has_authorization=_sent_authorization(route, req),
            error_ttl=route.dist.error_ttl,
            now=now,
        )
        vary = vary_names(joined.get("vary"))
        key = self._remember_vary(route, vary, req) if life.store else route.key
        length = resp.content_length
        storing = life.store and (length is None or length <= self.cache.max_object_bytes)
        headers = _with_date(_shareable(resp.headers, joined), now)
        if not life.store and not (route.dist.kind == "streaming" and resp.status >= 400):
            # (a live part asked for too early is a 404 now and there in a moment: keep coalescing)
            self._remember_uncacheable(route.primary)
        if not storing:
            self.flights.forget(flight)
            flight.stop_retaining()
        initial_age = corrected_initial_age(joined, request_time, now, held=_blocking_reload(req))
        # A small body is read whole before the head goes out, so Cache-Status says `stored`
        # only of what was (a truncated body raises here: nothing stored, nothing claimed).
        whole = storing and length is not None and length <= WHOLE_BEFORE_HEAD
        body = b"".join([c async for c in resp.chunks()]) if whole else b""
        flight.set_head(
            ResponseHead(
                resp.status,
                [h for h in headers if h[0] not in CDN_ONLY_HEADERS],
                shared=life.store,
                stored=storing,
                confirmed=whole,
                age=int(initial_age),
                vary=vary,
                upstream_status=joined.get("cache-status"),
                from_worker=from_worker,
                tags=_cache_tags(joined),
            )
        )
        if body:
            flight.feed(body)
        async for chunk in resp.chunks():
            flight.feed(chunk)
            if storing and flight.received > self.cache.max_object_bytes:
                storing = False
                self.flights.forget(flight)
                flight.stop_retaining()
            if not await flight.room():
                return  # nobody is reading and nothing is kept: stop fetching
            if storing and flight.abandoned and flight.received > self.edge.abandoned_fill_bytes:
                self.flights.forget(flight)  # every viewer left: not worth the rest of the pull
                return
        if storing:
            cc = response_cache_control(joined)
            entry = CachedResponse(
                status=resp.status,
                headers=[h for h in headers if h[0] not in STORED_HEADERS_DROP],
                body=flight.collected(),
                response_time=now,
                initial_age=initial_age,
                ttl=life.ttl,
                must_revalidate=life.must_revalidate,
                stale_while_revalidate=float(cc.seconds("stale-while-revalidate") or 0),
                stale_if_error=None if not cc.has("stale-if-error") else float(cc.seconds("stale-if-error") or 0),
                tags=_cache_tags(joined),
            )
            if flight.invalidated:
                return  # invalidated while it was being fetched: the viewers have it, the cache not
            self._put(key, entry, live=route.dist.kind == "streaming")
            self._uncacheable.pop(route.primary, None)

    def _refresh(
        self, route: Route, stale: CachedResponse, update: Headers, request_time: float, now: float
    ) -> CachedResponse:
        """RFC 9111 4.3.4: a 304 updates the stored headers and restarts the entry's age."""
        replaced = {k for k, _ in update if k not in ("content-length", "content-encoding", "content-range")}
        headers = [h for h in stale.headers if h[0] not in replaced]
        headers += [h for h in update if h[0] in replaced and h[0] not in STORED_HEADERS_DROP]
        joined = _joined(headers)
        life = decide_lifetime(stale.status, joined, route.behavior, error_ttl=route.dist.error_ttl, now=now)
        cc = response_cache_control(joined)
        fresh = CachedResponse(
            status=stale.status,
            headers=headers,
            body=stale.body,
            response_time=now,
            initial_age=corrected_initial_age(_joined(update), request_time, now),
            ttl=life.ttl,
            must_revalidate=life.must_revalidate,
            stale_while_revalidate=float(cc.seconds("stale-while-revalidate") or 0),
            stale_if_error=None if not cc.has("stale-if-error") else float(cc.seconds("stale-if-error") or 0),
            encoded=stale.encoded,
            tags=stale.tags,
        )
        if life.store:
            self._put(route.key, fresh, live=route.dist.kind == "streaming")
        else:
            self._delete(route.key)
        return fresh

    def _remember_vary(self, route: Route, vary: tuple[str, ...], req: EdgeRequest) -> str:
        """Record which headers the URL varies on; the key the response is stored under."""
        if not vary:
            self._vary.pop(route.primary, None)
            return route.primary
        if len(self._vary) >= MAX_VARY_SPECS:
            self._vary.pop(next(iter(self._vary)))
        self._vary[route.primary] = vary
        return _variant_key(route.primary, vary, req.headers)

    # -- a sibling worker's fill of a key this worker owns (edge/workers.py) ---------------------
    async def _send_flight(
        self,
        req: EdgeRequest,
        route: Route,
        flight: Flight,
        cursor: int,
        head: ResponseHead,
        send: Send,
        outcome: Outcome,
    ) -> Result:
        """A fill in flight as it comes from upstream (headers, Age, tags), for a sibling worker."""
        chain = f"{head.upstream_status}, " if head.upstream_status else ""
        body = None if req.method == "HEAD" else flight.body(cursor)
        answer = Answer(head.status, head.headers, body, response_length(head.headers))
        extra = _worker_stamp(chain + outcome.cache_status(self.name), head.age, head.tags)
        try:
            with _departure(req) as departure:
                status, sent = await deliver(send, {}, req.method, answer, extra, departure=departure)
        except ViewerLeft:
            flight.depart(cursor)
            raise
        return status, sent, outcome

    async def _send_stored(
        self, req: EdgeRequest, route: Route, entry: CachedResponse, send: Send, outcome: Outcome
    ) -> Result:
        """A stored response as it is stored (headers, Age, tags), for a sibling worker."""
        age = int(entry.age(self.clock()))
        extra = _worker_stamp(outcome.cache_status(self.name, int(entry.ttl) - age), age, entry.tags)
        etag, modified = req.headers.get("if-none-match"), req.headers.get("if-modified-since")
        if entry.status == 200 and ((etag and etag == entry.etag) or (modified and modified == entry.last_modified)):
            headers = [h for h in entry.headers if h[0] != "content-length"]
            status, sent = await deliver(send, {}, req.method, Answer(304, headers, None, None), extra)
            return status, sent, outcome
        answer = Answer(entry.status, entry.headers, None if req.method == "HEAD" else entry.body, len(entry.body))
        with _departure(req) as departure:
            status, sent = await deliver(send, {}, req.method, answer, extra, departure=departure)
        return status, sent, outcome

    # -- pass: straight to the origin ----------------------------------------------------------
    async def pass_(self, req: EdgeRequest, route: Route, send: Send) -> Result:
        headers = self._fill_headers(route, req)
        if req.method not in ("GET", "HEAD"):
            headers.update({k: req.headers[k] for k in PASS_HEADERS if k in req.headers})
            headers.update({k: v for k, v in req.headers.items() if k.startswith("x-amz-")})
        else:
            headers.update({k: req.headers[k] for k in ("range", "if-range") if k in req.headers})
        has_body = req.method not in ("GET", "HEAD", "DELETE", "OPTIONS") or "content-length" in req.headers
        limit = upload_limit(self.edge, route.behavior)
        body = (
            UploadBody(req.receive, limit, declared_length(req.headers), idle_timeout=self.upload_idle_timeout)
            if has_body
            else None
        )
        try:
            resp = await self._request_upstream(route, req.method, headers, body.chunks() if body else None)
        except UpstreamError:
            if body is not None:
                body.raise_failure()  # the viewer left or sent too much: not the origin's fault
            raise
        try:
            if req.method not in ("GET", "HEAD", "OPTIONS") and resp.status < 400:
                # RFC 9111 4.4: a successful unsafe request invalidates the stored URL, on
                # every worker of the edge before the answer goes out.
                self._invalidate(route)
                if self.workers is not None and (path := _key_path(route.primary, route.dist.id)) is not None:
                    await self.workers.written(route.dist.id, path)
            fwd = "method" if req.method not in ("GET", "HEAD") else "bypass"
            outcome = Outcome(fwd=fwd, fwd_status=resp.status)
            extra = self._stamp(outcome.cache_status(self.name), outcome, 0)
            headers_out = [h for h in resp.headers if h[0] not in ("cache-status", "x-cache")]
            if route.behavior.cookie_keys == "none":  # cookies are not the origin's to set here
                headers_out = [h for h in headers_out if h[0] != "set-cookie"]
            answer = Answer(
                resp.status, headers_out, None if req.method == "HEAD" else resp.chunks(), resp.content_length
            )
            # Preconditions and ranges were the origin's to judge: send its answer as it is. When
            # the viewer leaves, ViewerLeft ends this at once and the origin response is closed.
            with _departure(req if body is None else None) as departure:
                status, sent = await deliver(send, {}, req.method, answer, extra, departure=departure)
        finally:
            resp.close()
        return status, sent, outcome

    def _invalidate(self, route: Route) -> None:
        self._delete(route.primary)
        if self.on_invalidate is not None and (path := _key_path(route.primary, route.dist.id)) is not None:
            self.on_invalidate(route.dist.id, path)
        names = self._vary.pop(route.primary, None)
        if names:
            prefix = route.primary + "|vary|"
            keys = self.cache.keys()
            for key in [k for k in keys if k.startswith(prefix)]:
                self._delete(key)

    # -- invalidation -----------------------------------------------------------------------------
    def reconfigure(self, config: CdnConfig) -> None:
        """Take a newly published config's distributions, behaviors and origins; listeners,
        stores and cached objects stay as they are (ValueError if it drops this edge)."""
        if self.name not in config.edges:
            raise ValueError(f"the new config has no edge named {self.name!r}")
        self.config = config
        self._index = DistributionIndex(config.distributions_of(self.name), self.name)
        self._routes.clear()

    async def invalidate(self, dist_id: str, paths: list[str], *, soft: bool = False) -> int:
        """Remove (or, soft, mark stale) the distribution's objects whose path matches one of
        `paths`: exact, or a prefix ending in `*` as CloudFront accepts. Returns how many."""
        exact = {p for p in paths if not p.endswith("*")}
        prefixes = tuple(p[:-1] for p in paths if p.endswith("*"))

        def matches(key: str) -> bool:
            path = _key_path(key, dist_id)
            return path is not None and (path in exact or path.startswith(prefixes))

        return await self._purge(matches, soft)

    async def purge_tags(self, tags: list[str], *, soft: bool = False, dist_id: str | None = None) -> int:
        """Remove (or mark stale) every object stored with one of these cache tags; only the
        objects of distribution `dist_id` when it is given."""
        prefix = "" if dist_id is None else dist_id + ":"
        keys: set[str] = set()
        for tag in tags:
            tagged = {k for k in self._tags.get(tag, ()) if k.startswith(prefix)}
            keys |= tagged
            if not soft and tag in self._tags:
                self._tags[tag] -= tagged
                if not self._tags[tag]:
                    del self._tags[tag]
        return await self._purge(keys.__contains__, soft)

    async def _purge(self, matches: Callable[[str], bool], soft: bool) -> int:
        for flight in self.flights.in_flight():
            if matches(flight.key) or matches(flight.key.split("|vary|")[0]):
                flight.invalidated = True
                self.flights.forget(flight)
        keys = self.cache.keys()
        hits = [k for k in keys if matches(k)]
        now = self.clock()
        for key in hits:
            if not soft:
                self._delete(key)
                continue
            entry = await self._get(key)
            if entry is not None and entry.fresh(now):
                entry.ttl = entry.age(now)  # stale from now on; still there for stale-if-error
                self._put(key, entry)
        return len(hits)

    def _index_tags(self, key: str, tags: tuple[str, ...]) -> None:
        for tag in tags:
            self._tags.setdefault(tag, set()).add(key)
        self._tagged += len(tags)
        if self._tagged > 2 * self._stored_count() + 64:
            self._prune_tags()

    def _stored_count(self) -> int:
        return len(self.cache)

    def _prune_tags(self) -> None:
        """Drop index entries of objects the stores evicted (amortised: the index is rebuilt
        only when it has grown to twice what the stores hold)."""
        for tag in list(self._tags):
            kept = {k for k in self._tags[tag] if k in self.cache}
            if kept:
                self._tags[tag] = kept
            else:
                del self._tags[tag]
        self._tagged = sum(len(keys) for keys in self._tags.values())

    # -- upstream --------------------------------------------------------------------------------
    def _upstreams(self, route: Route) -> tuple[Origin, ...]:
        origins = self.config.origins_of(route.origin)
        return (self._parent, *origins) if self._parent is not None else origins

    async def _request_upstream(
        self, route: Route, method: str, headers: dict[str, str], body: AsyncIterator[bytes] | None = None
    ) -> UpstreamResponse:
        """Cache fills go through the parent edge when there is one; uploads straight to origin."""
        group = self.config.origin_groups.get(route.origin)
        statuses = group.failover_statuses if group is not None else frozenset()
        if route.dist.kind == "streaming":
            self.metrics.live.fetched(route.target)
        if method in ("GET", "HEAD") and self._parent is not None and "range" not in headers:
            headers = {**headers, "host": route.dist.domains[0] if "host" not in headers else headers["host"]}
            return await self._timed(
                self.upstream.request(
                    self._upstreams(route), method, route.target, headers, body, failover_statuses=statuses
                )
            )
        return await self._timed(
            self.upstream.request(
                self.config.origins_of(route.origin), method, route.target, headers, body, failover_statuses=statuses
            )
        )

    async def _timed(self, call: Awaitable[UpstreamResponse]) -> UpstreamResponse:
        """Every upstream request, counted and timed for the metrics."""
        started = time.perf_counter()
        try:
            resp = await call
        except UpstreamError as exc:
            self.metrics.observe_origin(exc.origin, time.perf_counter() - started, None)
            raise
        self.metrics.observe_origin(resp.origin, time.perf_counter() - started, resp.status)
        return resp

    def _fill_headers(self, route: Route, req: EdgeRequest) -> dict[str, str]:
        """What a fill sends upstream (CloudFront's origin request policy): the keyed headers,
        the behavior's `origin_headers`, the cookies it forwards, and the edge's own Via and
        X-Forwarded-For. Every other viewer header is dropped: an origin that reflected one
        would otherwise poison the shared object for everybody."""
        behavior = route.behavior
        headers = {n: req.headers[n] for n in behavior.origin_headers if n in req.headers and n not in NOT_FORWARDED}
        headers.update(route.forward)
        if "authorization" in behavior.origin_headers and "authorization" in req.headers:
            headers["authorization"] = req.headers["authorization"]
        cookie = forwarded_cookies(behavior, req.headers.get("cookie", ""))
        if cookie:
            headers["cookie"] = cookie
        prior_via = req.headers.get("via")
        headers["via"] = f"{prior_via}, 1.1 {self.name} (cdn)" if prior_via else f"1.1 {self.name} (cdn)"
        prior = req.headers.get("x-forwarded-for")
        trusted = prior and in_any(req.client, self.edge.trusted_proxies)
        headers["x-forwarded-for"] = f"{prior}, {req.client}" if trusted else req.client
        if self._parent is not None and "host" in req.headers:
            headers["host"] = req.headers["host"]
        return headers

    async def _error_page(self, dist: Distribution, status: int) -> CachedResponse | None:
        """The distribution's page for an error status, fetched like any object and kept."""
        path = dist.error_pages.get(status)
        if path is None:
            return None
        behavior = behavior_for(dist, path)
        key = cache_key(dist.id, behavior, path, "", {})
        entry = await self._get(key)
        if entry is not None and entry.fresh(self.clock()):
            return entry
        # one fetch of a page however many errors want it at once (the coalescer for pages)
        pending = self._pages.get(key)
        if pending is None:
            pending = self._pages[key] = asyncio.ensure_future(self._fetch_page(dist, behavior, path, key, entry))
            pending.add_done_callback(lambda _: self._pages.pop(key, None))
        return await asyncio.shield(pending)

    async def _fetch_page(
        self, dist: Distribution, behavior: CacheBehavior, path: str, key: str, entry: CachedResponse | None
    ) -> CachedResponse | None:
        now = self.clock()
        try:
            resp = await self._timed(
                self.upstream.request(self.config.origins_of(behavior.origin or dist.origin), "GET", path, {})
            )
            try:
                body = b"".join([c async for c in resp.chunks()])
            finally:
                resp.close()
        except UpstreamError:
            return entry
        if resp.status != 200:
            return None
        life = decide_lifetime(200, _joined(resp.headers), behavior, error_ttl=dist.error_ttl, now=now)
        page = CachedResponse(200, resp.headers, body, now, 0.0, life.ttl)
        if life.store:
            self._put(key, page)
        return page

    # -- deliver -------------------------------------------------------------------------------
    async def deliver_error(self, send: Send, exc: EdgeError) -> Result:
        body = error_body(exc.status, exc.message, self.name)
        headers = [
            ("content-type", "text/plain; charset=utf-8"),
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
            ("date", format_http_date(self.clock())),
            *exc.headers,
        ]
        extra = self._stamp(ERROR.cache_status(self.name), ERROR, 0)
        try:
            status, sent = await deliver(send, {}, "GET", Answer(exc.status, headers, body, len(body)), extra)
        except RuntimeError:  # the response had already started: nothing more can be said
            return exc.status, 0, ERROR
        return status, sent, ERROR

    async def _try_error(self, send: Send, exc: EdgeError) -> Result:
        try:
            status, sent, _ = await self.deliver_error(send, exc)
        except Exception:  # the connection is gone: there is nobody to tell
            return 499, 0, GONE
        return status, sent, GONE

    def _stamp(self, cache_status: str, outcome: Outcome, age: int) -> Headers:
        """Cache-Status (this edge's member last), X-Cache and Age of an answer."""
        return [("cache-status", cache_status), ("x-cache", f"{outcome.kind} from {self.name}"), ("age", str(age))]

    def _negotiable(self, route: Route, headers: Headers, size: int | None) -> bool:
        """Whether the edge compresses this response for viewers who accept it (then every
        answer of it, identity included, says Vary: Accept-Encoding)."""
        if not route.behavior.compress:
            return False
        found = dict(headers)
        return compression.compressible(found.get("content-type"), found.get("content-encoding"), size)

    def _coding(self, req: EdgeRequest) -> str | None:
        return compression.negotiate(req.headers.get("accept-encoding"))

    def _remember_uncacheable(self, key: str) -> None:
        """Send `key` straight to the origin for a while; the oldest such key is forgotten
        first, so a stream of distinct uncacheable URLs cannot grow the table."""
        self._uncacheable.pop(key, None)
        while len(self._uncacheable) >= MAX_UNCACHEABLE:
            del self._uncacheable[next(iter(self._uncacheable))]
        self._uncacheable[key] = self.clock() + UNCACHEABLE_MEMORY

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
        self.metrics.count(dist, cache, status, sent, ms / 1000)
        if route is not None:
            self.metrics.count_object(route.key or route.primary, sent)
            if route.dist.kind == "streaming":
                # a child edge's fill is egress, not a viewer
                self.metrics.live.served(
                    req.path,
                    session_of(req.client, req.query, req.headers),
                    sent,
                    viewer="(cdn)" not in req.headers.get("via", ""),
                )
        target = req.path + ("?" + req.query if req.query else "")
        key = (route.key or route.primary) if route else "-"
        self.access.write(
            f"{self.name} dist={dist} {req.method} {target} key={key} cache={cache} "
            f"status={status} bytes={sent} time={ms:.1f}ms client={req.client}"
        )


def _owners_status(theirs: str, mine: Outcome) -> tuple[str, Outcome]:
    """The Cache-Status of a fill from the worker owning the key, as this worker says it (the
    owner's view is the edge's; collapsed here too when this worker collapsed it), and its
    outcome for the logs and metrics."""
    before, _, member = theirs.rpartition(", ")
    owner = Outcome.parse(member)
    if mine.collapsed and not owner.collapsed:
        owner = dataclasses.replace(owner, collapsed=True)
    name = member.split(";", 1)[0].strip()
    return f"{before + ', ' if before else ''}{owner.cache_status(name)}", owner


def _worker_stamp(cache_status: str, age: int, tags: tuple[str, ...]) -> Headers:
    """What an owner adds to a sibling worker's fill: its view of the cache, the age and the
    tags (which viewers never see)."""
    extra = [("cache-status", cache_status), ("age", str(age))]
    return [*extra, ("surrogate-key", " ".join(tags))] if tags else extra


def _blocking_reload(req: EdgeRequest) -> bool:
    """An LL-HLS blocking playlist reload, which the origin holds until the playlist has the
    asked-for segment or part (RFC 8216bis 6.2.5.2): its hold is not the response's age."""
    return "_HLS_msn=" in req.query


def _departure(req: EdgeRequest | None) -> Departure:
    """A watch for the viewer hanging up; none when its request body may still be unread."""
    bodiless = (
        req is not None and "transfer-encoding" not in req.headers and req.headers.get("content-length", "0") == "0"
    )
    return Departure(req.receive if req is not None and bodiless else None)


def _parent_origin(config: CdnConfig, edge: EdgeLocation) -> Origin | None:
    """The parent edge seen as an origin: misses are filled from it (tiered caching)."""
    if edge.parent is None:
        return None
    parent = config.edges[edge.parent]
    # the parent may hold a fill as long as any origin behind it does (LL-HLS blocking reloads)
    held = max((o.read_timeout for o in config.origins.values()), default=0.0)
    return Origin(
        id=f"edge {parent.name}", kind="web", url=parent.url, connect_timeout=3.0, read_timeout=max(60.0, held + 5.0)
    )


def _key_path(key: str, dist_id: str) -> str | None:
    """The decoded URL path a cache key of `dist_id` stores, or None for another distribution."""
    prefix = dist_id + ":"
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    end = min((i for i in (rest.find("?"), rest.find("|")) if i >= 0), default=len(rest))
    return unquote(rest[:end])


def _cache_tags(headers: dict[str, str]) -> tuple[str, ...]:
    """Surrogate-Key (space-separated, Fastly) and Cache-Tag (comma-separated, Cloudflare)."""
    tags = headers.get("surrogate-key", "").split() + [t.strip() for t in headers.get("cache-tag", "").split(",")]
    return tuple(sorted({t for t in tags if t}))


def _variant_key(primary: str, names: tuple[str, ...], headers: dict[str, str]) -> str:
    return primary + "|vary|" + "&".join(f"{n}={key_field(v)}" for n, v in _vary_values(names, headers))


def _vary_values(names: tuple[str, ...], headers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The request's values for the varied headers, whitespace-normalised (RFC 9111 4.1)."""
    return tuple((n, " ".join(headers.get(n, "").split())) for n in names)


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


def _sent_authorization(route: Route, req: EdgeRequest) -> bool:
    """Whether the fill carried the viewer's Authorization (RFC 9111 3.5 then limits reuse)."""
    names = (*route.behavior.header_keys, *route.behavior.origin_headers)
    return "authorization" in req.headers and "authorization" in names


def _shareable(headers: Headers, joined: dict[str, str]) -> Headers:
    """What of a response may go to more than one viewer: never Set-Cookie (cookies are not
    forwarded on a fill, so the origin's cookie is nobody's), never the fields named by
    `no-cache="..."` or `private="..."` (RFC 9111 5.2.2.4, 5.2.2.7)."""
    named = {"set-cookie"}
    cc = parse_cache_control([joined.get("cache-control", ""), joined.get("cdn-cache-control", "")])
    for directive in ("no-cache", "private"):
        value = cc.directives.get(directive)
        if value:
            named |= {f.strip().lower() for f in value.split(",")}
    return [h for h in headers if h[0] not in named]


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


def _wire_headers(entry: CachedResponse) -> list[tuple[bytes, bytes]]:
    skip = RECOMPUTED | {"content-range", "accept-ranges"}
    out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in entry.headers if k not in skip]
    return [*out, (b"accept-ranges", b"bytes"), (b"content-length", str(len(entry.body)).encode())]


def _page_headers(headers: Headers, page: CachedResponse) -> Headers:
    """The error's own headers, with the page's body type (the status stays the origin's)."""
    kept = [
        h
        for h in headers
        if h[0] not in ("content-type", "content-length", "etag", "last-modified", "content-encoding")
    ]
    return kept + [h for h in page.headers if h[0] == "content-type"]


def _with_page(entry: CachedResponse, page: CachedResponse) -> CachedResponse:
    return CachedResponse(
        entry.status,
        _page_headers(entry.headers, page),
        page.body,
        entry.response_time,
        entry.initial_age,
        entry.ttl,
        entry.must_revalidate,
    )
