"""The control plane's HTTP API (JSON, token-authenticated), as `cdn control` serves it.

    POST /distributions/ID/invalidations   {"paths": ["/a.html", "/images/*"], "soft": false} -> 201
    GET  /distributions/ID/invalidations/INV   status (InProgress, Completed), each edge's applied time
    POST /distributions/ID/purges          {"tags": ["product-42"], "soft": false} -> 201
    GET  /distributions/ID/purges/INV
    PUT  /config                           a whole config file (TOML): checked, then sent to every edge
    GET  /events?edge=E&after=N&wait=S     embedded mode: the edges' long-poll
    POST /events/applied                   embedded mode: {"edge": E, "seq": N, "ids": [...], "at": T}
    GET  /health                           no token needed

Every other request needs `Authorization: Bearer TOKEN`: without it 401, with a wrong one 403,
and nothing changes either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from web_dist.config import MIN_SECRET_LENGTH, CdnConfig, ConfigError, parse_config
from web_dist.config.invalidation import (
    Event,
    EventKind,
    Invalidation,
    InvalidRequest,
    check_paths,
    check_tags,
    new_id,
)
from web_dist.control.log import ControlStoreDown, EventLog, MemoryEventLog, RedisEventLog

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]
MAX_BODY = 4 * 1024 * 1024
MAX_WAIT = 30.0


class ControlPlane:
    """Turns API calls into events on the log, and reads their progress back."""

    def __init__(self, config: CdnConfig, log: EventLog, *, clock: Callable[[], float] = time.time) -> None:
        assert config.control is not None, "the config has no [control] table"
        self.config = config
        self.log = log
        self.clock = clock

    async def submit(self, dist_id: str, kind: EventKind, body: Any) -> Invalidation:
        dist = self.config.distribution(dist_id)
        if dist is None:
            raise LookupError(f"no distribution named {dist_id!r}")
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object")
        soft = body.get("soft", False)
        if not isinstance(soft, bool):
            raise InvalidRequest("soft must be true or false")
        origin_edge = body.get("origin_edge")
        if origin_edge is not None and origin_edge not in dist.edges:
            raise InvalidRequest(f"origin_edge {origin_edge!r} is not an edge of {dist_id}")
        assert self.config.control is not None
        paths = check_paths(body.get("paths"), self.config.control.max_paths) if kind == "invalidation" else ()
        tags = check_tags(body.get("tags")) if kind == "purge" else ()
        event = Event(
            new_id("I" if kind == "invalidation" else "P"),
            kind,
            dist_id,
            paths,
            tags,
            soft,
            self.clock(),
            origin_edge=origin_edge,
        )
        await self.log.publish(event, dist.edges)
        found = await self.log.record(event.id)
        return found or Invalidation(event, dist.edges)

    async def progress(self, dist_id: str, event_id: str) -> Invalidation | None:
        found = await self.log.record(event_id)
        return found if found is not None and found.event.distribution == dist_id else None

    async def publish_config(self, text: str) -> Event:
        """Check a whole config file and send it to every edge; it replaces this one's too."""
        try:
            config = parse_config(tomllib.loads(text), self.config.source)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidRequest(f"not valid TOML: {exc}") from None
        except ConfigError as exc:
            raise InvalidRequest(str(exc)) from None
        event = Event(new_id("C"), "config", created=self.clock(), config=text)
        await self.log.publish(event, tuple(config.edges))
        self.config = replace(config, control=self.config.control)
        return event


def build_control_app(
    config: CdnConfig, *, token: str, log: EventLog | None = None, clock: Callable[[], float] = time.time
) -> Starlette:
    """The control API for `config` (which must have [control]); `token` guards it."""
    control = config.control
    if control is None:
        raise ValueError(f"{config.source}: control: missing table")
    if len(token) < MIN_SECRET_LENGTH:
        raise ValueError(f"{config.source}: control: the API token must be at least {MIN_SECRET_LENGTH} characters")
    if log is None:
        log = (
            RedisEventLog(control.redis_url, control.redis_prefix)
            if control.redis_url
            else MemoryEventLog(control.journal)
        )
    plane = ControlPlane(config, log, clock=clock)
    guard = _Guard(token)

    async def create(request: Request) -> Response:
        kind: EventKind = "invalidation" if request.url.path.endswith("/invalidations") else "purge"
        body = await _json_body(request)
        record = await plane.submit(request.path_params["dist"], kind, body)
        location = f"{request.url.path}/{record.event.id}"
        return JSONResponse(record.to_api(), status_code=201, headers={"location": location})

    async def show(request: Request) -> Response:
        record = await plane.progress(request.path_params["dist"], request.path_params["id"])
        if record is None:
            return _error(404, f"no invalidation or purge {request.path_params['id']!r} of this distribution")
        return JSONResponse(record.to_api())

    async def put_config(request: Request) -> Response:
        body = await _limited_body(request)
        event = await plane.publish_config(body.decode("utf-8", errors="replace"))
        return JSONResponse({"id": event.id, "created": event.created})

    async def events(request: Request) -> Response:
        if not isinstance(log, MemoryEventLog):
            return _error(404, "edges read events from Redis in this control plane")
        edge, after, wait = _poll_args(request)
        position, pending = await _unless_gone(request, log.read(edge, after, wait), (after or 0, []))
        body = {"position": position, "events": [{"seq": s, "event": e.to_json()} for s, e in pending]}
        return JSONResponse(body)

    async def applied(request: Request) -> Response:
        if not isinstance(log, MemoryEventLog):
            return _error(404, "edges report to Redis in this control plane")
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("edge"), str) or not isinstance(body.get("ids"), list):
            raise InvalidRequest('the body must be {"edge": NAME, "ids": [...], "seq": N, "at": TIME}')
        at = body.get("at") or plane.clock()
        if not isinstance(at, (int, float)):
            raise InvalidRequest("at must be a time in seconds since the epoch")
        for event_id in body["ids"]:
            await log.mark_applied(str(event_id), body["edge"], float(at))
        if isinstance(body.get("seq"), int):
            log.advance(body["edge"], body["seq"])
        return JSONResponse({"ok": True})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "store": "redis" if control.redis_url else "memory"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await log.start()
        yield
        await log.close()

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/distributions/{dist}/invalidations", guard(create), methods=["POST"]),
            Route("/distributions/{dist}/invalidations/{id}", guard(show)),
            Route("/distributions/{dist}/purges", guard(create), methods=["POST"]),
            Route("/distributions/{dist}/purges/{id}", guard(show)),
            Route("/config", guard(put_config), methods=["PUT"]),
            Route("/events", guard(events)),
            Route("/events/applied", guard(applied), methods=["POST"]),
        ],
        lifespan=lifespan,
    )


class _Guard:
    """Bearer-token check, and the one place API errors become responses."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def __call__(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given:
                return _error(401, "missing token: send Authorization: Bearer TOKEN", {"www-authenticate": "Bearer"})
            if not hmac.compare_digest(given.strip().encode(), self._token):
                return _error(403, "wrong token")
            try:
                return await handler(request)
            except InvalidRequest as exc:
                return _error(400, str(exc))
            except LookupError as exc:
                return _error(404, exc.args[0] if exc.args else "not found")
            except ControlStoreDown as exc:
                return _error(503, f"the control store is unavailable ({exc}); try again")

        return guarded


async def _limited_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise InvalidRequest(f"the body is larger than {MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise InvalidRequest(f"the body is larger than {MAX_BODY} bytes")
    return body


async def _json_body(request: Request) -> Any:
    import json

    try:
        return json.loads(await _limited_body(request))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}") from None


async def _unless_gone(request: Request, work: Awaitable[T], gone: T) -> T:
    """`work`'s result, or `gone` as soon as the client hangs up (a long-poll must not hold
    the server, which waits for open requests when it stops)."""

    async def hung_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(hung_up())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    return task.result() if task.done() and not task.cancelled() else gone


def _poll_args(request: Request) -> tuple[str, int | None, float]:
    edge = request.query_params.get("edge", "")
    after = request.query_params.get("after")
    wait = request.query_params.get("wait", "0")
    if not edge or (after is not None and not after.isdigit()):
        raise InvalidRequest("use /events?edge=NAME[&after=N][&wait=SECONDS]")
    try:
        seconds = min(max(float(wait), 0.0), MAX_WAIT)
    except ValueError:
        raise InvalidRequest(f"wait={wait!r} is not a number of seconds") from None
    return edge, int(after) if after is not None else None, seconds


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
