"""An origin whose answers each test scripts, counting what it is asked, and an edge before it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from edge.app import build_edge_app
from edge.freshness import format_http_date
from web_dist.config import CdnConfig, parse_config


@dataclass
class Script:
    body: bytes = b"hello"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    gate: asyncio.Event | None = None  # the origin holds its answer until this is set
    chunk_gate: asyncio.Event | None = None  # ... sends the first chunk, then holds the rest
    honour_validators: bool = True
    vary_on: str | None = None  # the body ends with ":" + this request header's value
    ranges: bool = False  # answer "Range: bytes=a-b" with 206, as a real origin does


class ScriptedOrigin:
    """A raw ASGI origin: answers per path as scripted, counts requests, keeps their headers."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.arrived = asyncio.Event()

    def set(self, path: str, body: bytes = b"hello", status: int = 200, **kw: Any) -> Script:
        script = Script(body=body, status=status, **kw)
        self.scripts[path] = script
        return script

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        self.hits[path] += 1
        self.requests.append((scope["method"], path, headers))
        self.arrived.set()
        script = self.scripts.get(path) or self.scripts.get(scope["path"])
        if script is None:
            await _respond(send, 404, {"content-type": "text/plain"}, b"no such object")
            return
        if script.gate is not None:
            await script.gate.wait()
        out = {"content-type": "text/plain", "date": format_http_date(_now()), **script.headers}
        etag = out.get("etag")
        if script.honour_validators and etag and headers.get("if-none-match") == etag:
            await _respond(send, 304, {k: v for k, v in out.items() if k != "content-type"}, b"")
            return
        body_out = script.body
        if script.ranges and headers.get("range", "").startswith("bytes="):
            first, _, last = headers["range"][6:].partition("-")
            a, b = int(first), min(int(last), len(body_out) - 1)
            out["content-range"] = f"bytes {a}-{b}/{len(body_out)}"
            await _respond(send, 206, out, body_out[a : b + 1])
            return
        if script.vary_on is not None:
            out["vary"] = script.vary_on
            body_out = script.body + b":" + headers.get(script.vary_on.lower(), "").encode()
        if script.chunk_gate is not None:
            out["content-length"] = str(len(script.body))
            raw = [(k.encode(), v.encode()) for k, v in out.items()]
            await send({"type": "http.response.start", "status": script.status, "headers": raw})
            half = len(script.body) // 2
            await send({"type": "http.response.body", "body": script.body[:half], "more_body": True})
            await script.chunk_gate.wait()
            await send({"type": "http.response.body", "body": script.body[half:]})
            return
        await _respond(send, script.status, out, body_out)


def _now() -> float:
    import time

    return time.time()


async def _respond(send: Any, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    if status != 304:
        raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Clock:
    """A settable clock for the edge: tests move time instead of sleeping."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def edge_config(origin_url: str, behaviors: list[dict[str, Any]] | None = None, **dist: Any) -> CdnConfig:
    default = dist.pop("default_behavior", {"default_ttl": 60})
    raw = {
        "origins": {"o": {"url": origin_url, "read_timeout": dist.pop("read_timeout", 5.0)}},
        "edges": {"edge-test": {"listen": "127.0.0.1:0", **dist.pop("edge", {})}},
        "distributions": {
            "site": {
                "domains": ["site.test", "127.0.0.1", "localhost"],
                "origin": "o",
                "behaviors": behaviors or [],
                "default_behavior": default,
                **dist,
            }
        },
    }
    return parse_config(raw)


@dataclass
class EdgeRig:
    origin: ScriptedOrigin
    clock: Clock
    client: httpx.AsyncClient
    app: Any
    url: str

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(self.url + path, **kw)


@pytest.fixture
async def rig_factory(serve: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    clients: list[httpx.AsyncClient] = []

    async def make(behaviors: list[dict[str, Any]] | None = None, **dist: Any) -> EdgeRig:
        origin = ScriptedOrigin()
        origin_srv = await serve(origin, name="origin")
        clock = Clock()
        config = edge_config(origin_srv.url, behaviors, **dist)
        app = build_edge_app(config, "edge-test", clock=clock)
        edge_srv = await serve(app, name="edge")
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=300), timeout=20)
        clients.append(client)
        return EdgeRig(origin, clock, client, app, edge_srv.url)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def rig(rig_factory: Callable[..., Any]) -> EdgeRig:
    result: EdgeRig = await rig_factory()
    return result
