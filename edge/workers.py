"""One edge location on every core: N worker processes behind its ports, one cache to the world.

`workers = N` on an edge (default: one per core of the host). The first process, the leader,
binds the edge's ports and starts the others (edge/worker_procs.py); each worker has its own
listening socket on the public port (SO_REUSEPORT: the kernel spreads connections evenly), its
own memory tier (cache_bytes / N) and disk tier folder, and a loopback port of its own where
its siblings reach it, with a secret only they know.

Why key owners (README, "All the cores"): Python processes share no heap, so a cache shared by
all workers would be a file tier with cross-process fill locks (nginx's proxy_cache with
proxy_cache_lock), every hit then a read through the page cache and every waiting worker a
poll on a lock until the whole object is there, which a held LL-HLS part makes long. Here
every cache key has an owner instead: crc32 of the URL's key, modulo N. A worker that misses a
key it does not own fills it from the owner over loopback, as from a parent cache; the owner
fills from the origin through its coalescer. So the origin gets one request per object per
edge however many workers and viewers ask, a body streams to every worker as it arrives, and
the asking worker keeps its copy: its later hits cost no hop. The owner answers with the
response as it stored it (the origin's headers, Age, tags), so the copies expire together, and
the viewer's Cache-Status is the owner's: a hit when any worker of the edge had the object.
The price: an object is held once per worker that served it, and a first miss on a non-owner
crosses loopback once.

Everything else stays one edge: the leader follows the control plane and applies each
invalidation, purge or config on every worker before it reports it applied; a PUT or DELETE
through any worker drops the path on every worker before it is answered; the leader's admin
listener adds up every worker's counters (one dashboard, one /metrics); WHEP sessions live in
the leader (other workers relay their requests to it).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from edge.control_sync import apply_event
from edge.deliver import SHAPING_HEADERS
from edge.metrics import EdgeMetrics
from edge.upstream import HOP_BY_HOP, OriginClient, UpstreamError, UpstreamResponse
from web_dist.config import ORIGIN_SECRET_HEADER, EdgeLocation, Origin
from web_dist.config.invalidation import Event

if TYPE_CHECKING:
    from edge.flow import EdgeFlow, EdgeRequest

log = logging.getLogger("cdn.edge.workers")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ENV = "CDN_EDGE_WORKER"  # the plan a worker process is started with (JSON)
CLIENT_HEADER = "x-cdn-worker-client"  # the viewer's address, on a sibling's fill
CONTROL_PREFIX = "/_cdn/worker/"
# Headers of the viewer's request that shape only its own answer: a fill leaves them out.
NOT_ON_FILL = HOP_BY_HOP | SHAPING_HEADERS | {"content-length", "expect", CLIENT_HEADER, ORIGIN_SECRET_HEADER}
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a control message between workers (a published config)


def worker_count(edge: EdgeLocation) -> int:
    """How many processes serve `edge`: its `workers`, else one per core."""
    return edge.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class WorkerPlan:
    """Where one worker stands among its edge's workers."""

    index: int  # 0 is the leader
    count: int
    secret: str = field(repr=False)  # what siblings show each other (never a viewer)
    peers: tuple[str, ...]  # every worker's loopback URL, by index
    fds: dict[str, int] = field(default_factory=dict)  # listening sockets inherited: public, https, peer

    def to_env(self) -> str:
        return json.dumps(
            {
                "index": self.index,
                "count": self.count,
                "secret": self.secret,
                "peers": list(self.peers),
                "fds": self.fds,
            }
        )

    @classmethod
    def from_env(cls, text: str) -> WorkerPlan:
        raw = json.loads(text)
        return cls(
            int(raw["index"]),
            int(raw["count"]),
            str(raw["secret"]),
            tuple(raw["peers"]),
            {k: int(v) for k, v in raw["fds"].items()},
        )


class Workers:
    """One worker's side of its siblings: who owns a key, fills from owners, fan-out."""

    def __init__(self, plan: WorkerPlan, *, hold: float = 60.0) -> None:
        self.plan = plan
        self.index, self.count = plan.index, plan.count
        # a sibling may hold a fill as long as the origin behind it does (LL-HLS blocking reloads)
        self.origins = [
            Origin(
                id=f"worker {i}", kind="web", url=url, connect_timeout=2.0, read_timeout=hold, access_secret=plan.secret
            )
            for i, url in enumerate(plan.peers)
        ]
        self._session: aiohttp.ClientSession | None = None

    @property
    def leader(self) -> bool:
        return self.index == 0

    def owner(self, key: str) -> int | None:
        """The worker owning cache key `key`; None when it is this one."""
        owner = zlib.crc32(key.encode("utf-8", "surrogateescape")) % self.count
        return None if owner == self.index else owner

    def authentic(self, headers: Mapping[str, str]) -> bool:
        given = headers.get(ORIGIN_SECRET_HEADER, "")
        return hmac.compare_digest(given.encode(), self.plan.secret.encode())

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- cache fills -------------------------------------------------------------------------
    async def fill(
        self, upstream: OriginClient, owner: int, req: EdgeRequest, validators: dict[str, str]
    ) -> UpstreamResponse | None:
        """The owner's answer for the viewer's request (it keys, fills and forwards exactly as
        this worker would); None when the owner cannot be reached (the origin then)."""
        headers = {k: v for k, v in req.headers.items() if k not in NOT_ON_FILL}
        headers.update(validators)
        headers[CLIENT_HEADER] = req.client
        target = req.path + ("?" + req.query if req.query else "")
        try:
            return await upstream.request((self.origins[owner],), "GET", target, headers)
        except UpstreamError as exc:
            log.warning("worker %d: fill from worker %d failed (%s); asking the origin", self.index, owner, exc.detail)
            return None

    # -- what every worker must apply ---------------------------------------------------------
    async def tell_others(self, what: str, body: dict[str, Any]) -> None:
        """POST a control message to every other worker and wait for each (one that is down
        or restarting misses it: it comes back with an empty cache)."""
        await asyncio.gather(*(self._tell(i, what, body) for i in range(self.count) if i != self.index))

    async def _tell(self, index: int, what: str, body: dict[str, Any]) -> dict[str, Any] | None:
        assert self._session is not None, "Workers.start() was not awaited"
        url = f"{self.plan.peers[index]}{CONTROL_PREFIX}{what}"
        try:
            async with self._session.post(url, json=body, headers={ORIGIN_SECRET_HEADER: self.plan.secret}) as resp:
                if resp.status != 200:
                    log.warning("worker %d: worker %d refused %s: %d", self.index, index, what, resp.status)
                    return None
                answer: dict[str, Any] = await resp.json()
                return answer
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("worker %d: worker %d unreachable for %s: %s", self.index, index, what, exc)
            return None

    async def event(self, event: Event) -> None:
        """An invalidation, purge or config the leader applied: every other worker applies it."""
        await self.tell_others("event", {"event": event.to_json()})

    async def written(self, dist_id: str, path: str) -> None:
        """A PUT or DELETE through this worker changed `path`: every other worker drops it
        (and the leader tells the control plane, for the other edges)."""
        await self.tell_others("written", {"distribution": dist_id, "path": path})

    async def merged_metrics(self, own: EdgeMetrics, collapsed: int) -> tuple[EdgeMetrics, list[dict[str, Any]]]:
        """Every worker's counters added up into one EdgeMetrics, and a row per worker."""
        merged = EdgeMetrics()
        merged.live.webrtc_viewers = own.live.webrtc_viewers  # the leader's WHEP sessions
        rows = [{"index": self.index, "pid": os.getpid(), "requests": _requests(own.export()), "collapsed": collapsed}]
        merged.absorb(own.export())
        answers = await asyncio.gather(*(self._tell(i, "metrics", {}) for i in range(self.count) if i != self.index))
        for answer in answers:
            if answer is None:
                continue
            merged.absorb(answer["metrics"])
            rows.append(
                {
                    "index": answer["index"],
                    "pid": answer["pid"],
                    "requests": _requests(answer["metrics"]),
                    "collapsed": answer["collapsed"],
                }
            )
        return merged, sorted(rows, key=lambda r: r["index"])

    # -- WHEP sessions live in the leader ----------------------------------------------------
    async def relay(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Pass a viewer's WHEP request to the leader and its answer back (bodies are SDP,
        at most `limit` bytes)."""
        assert self._session is not None, "Workers.start() was not awaited"
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _plain(send, 413, f"the offer is larger than {limit} bytes")
                return
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower()
            not in HOP_BY_HOP | {"host", "content-length", CLIENT_HEADER, ORIGIN_SECRET_HEADER}
        ]
        headers += [
            (ORIGIN_SECRET_HEADER, self.plan.secret),
            (CLIENT_HEADER, str((scope.get("client") or ("-", 0))[0])),
            ("host", _header(scope, "host")),
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.plan.peers[0] + scope["path"] + ("?" + query if query else "")
        try:
            async with self._session.request(
                scope["method"], url, data=bytes(body), headers=headers, allow_redirects=False
            ) as resp:
                answer = await resp.read()
                out = [
                    (k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in resp.headers.items()
                    if k.lower() not in HOP_BY_HOP | {"content-length"}
                ]
                await send(
                    {
                        "type": "http.response.start",
                        "status": resp.status,
                        "headers": [*out, (b"content-length", str(len(answer)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": answer})
        except (aiohttp.ClientError, TimeoutError) as exc:
            await _plain(send, 502, f"the edge's WebRTC worker is unreachable: {exc}")


def _requests(state: dict[str, Any]) -> int:
    return sum(row[3] for row in state["responses"])


def _header(scope: Scope, name: str) -> str:
    raw = name.encode()
    return next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == raw), "")


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class PeerApp:
    """The ASGI app of a worker's loopback port: its siblings' fills and control messages."""

    def __init__(
        self,
        flow: EdgeFlow,
        workers: Workers,
        *,
        whep: Any,
        request: Callable[[Scope, Receive], EdgeRequest],
        on_written: Callable[[str, str], None] | None = None,
    ) -> None:
        self.flow = flow
        self.workers = workers
        self.whep = whep
        self.request = request  # the edge's ASGI scope -> EdgeRequest
        self.on_written = on_written

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # (served through SharedApp: the public listener runs the lifespan)
            return
        if not hmac.compare_digest(_header(scope, ORIGIN_SECRET_HEADER).encode(), self.workers.plan.secret.encode()):
            await _plain(send, 403, "Forbidden: this port is for the edge's own workers")
            return
        client = _header(scope, CLIENT_HEADER)
        if client:
            scope = {**scope, "client": (client, 0)}
        path: str = scope["path"]
        if path.startswith(CONTROL_PREFIX):
            await self._control(path.removeprefix(CONTROL_PREFIX), receive, send)
        elif self.whep.serves(scope):
            await self.whep(scope, receive, send)
        else:
            req = self.request(scope, receive)
            req.headers.pop(ORIGIN_SECRET_HEADER, None)
            req.headers.pop(CLIENT_HEADER, None)
            await self.flow.handle(req, send, worker=True)

    async def _control(self, what: str, receive: Receive, send: Send) -> None:
        raw = bytearray()
        more = True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
            if len(raw) > MAX_MESSAGE_BYTES:
                await _plain(send, 413, "control message too large")
                return
        body = json.loads(raw or b"{}")
        answer: dict[str, Any] = {"index": self.workers.index}
        if what == "event":
            answer["count"] = await apply_event(self.flow, Event.from_json(body["event"]))
        elif what == "written":
            answer["count"] = await self.flow.invalidate(body["distribution"], [body["path"]])
            if self.on_written is not None:  # the leader: the other edges hear of it too
                self.on_written(body["distribution"], body["path"])
        elif what == "metrics":
            answer.update(pid=os.getpid(), metrics=self.flow.metrics.export(), collapsed=self.flow.flights.collapsed)
        else:
            await _plain(send, 404, f"no worker message {what!r}")
            return
        data = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})
