"""One edge location served by several worker processes (`workers = N`), as a user sees it:
still one cache. However many connections (spread by the kernel over the workers) ask for an
object at once, the origin gets one request; a second request is a hit on any worker; a PUT
through the edge is seen at once on every connection; the admin port adds every worker's
counters up. The edge runs as `cdn edge`, the real command, in its own processes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import read_until
from tests.control.conftest import free_port
from tests.edge.conftest import ScriptedOrigin
from web_dist.config import load_config
from web_dist.control import build_control_app

ADMIN_TOKEN = "admin-token-for-worker-tests"
UPLOAD_TOKEN = "upload-token-for-worker-tests"
CONTROL_TOKEN = "control-token-for-worker-tests"
WORKERS = 2
CONNECTIONS = 24  # one request per connection: 2^-23 that they all land on one worker


@dataclass
class Edge:
    url: str
    admin: str
    origin: ScriptedOrigin
    control: str

    async def fresh_get(self, path: str, **kw: Any) -> httpx.Response:
        """A GET on a connection of its own (the kernel picks the worker per connection)."""
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.get(self.url + path, **kw)

    async def metrics(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
            found: dict[str, Any] = (await client.get(self.admin + "/metrics.json")).json()
            return found

    async def prometheus(self) -> str:
        async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
            return (await client.get(self.admin + "/metrics")).text


def start_edge(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "web_dist.cli", "edge", "--config", str(config), "--name", "e"],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
async def edge(serve: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Edge]:
    origin = ScriptedOrigin()
    served = await serve(origin, name="origin")
    config = tmp_path / "cdn.toml"
    control = f"127.0.0.1:{free_port()}"
    config.write_text(f"""
[control]
listen = "{control}"
token = "{CONTROL_TOKEN}"

[origins.o]
url = "{served.url}"

[edges.e]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
admin_token = "{ADMIN_TOKEN}"
workers = {WORKERS}

[distributions.site]
domains = ["127.0.0.1"]
origin = "o"
upload_token = "{UPLOAD_TOKEN}"
default_behavior = {{ default_ttl = 300, methods = ["GET", "HEAD", "PUT"] }}
""")
    await serve(build_control_app(load_config(config), token=CONTROL_TOKEN), name="control", listen=control)
    proc = start_edge(config)
    try:
        line = await asyncio.to_thread(read_until, proc, "ready edge e", 90)
        url, admin = re.search(r"ready edge e (\S+) admin (\S+)", line).groups()  # type: ignore[union-attr]
        yield Edge(url, admin, origin, f"http://{control}")
    finally:
        proc.terminate()
        proc.wait(20)


async def test_concurrent_misses_on_every_worker_make_one_origin_request(edge: Edge) -> None:
    gate = asyncio.Event()
    edge.origin.set("/big", b"x" * 300_000, gate=gate)
    viewers = [asyncio.create_task(edge.fresh_get("/big")) for _ in range(CONNECTIONS)]
    await asyncio.sleep(1.0)  # every request is at the edge, waiting on the one fill
    gate.set()
    answers = await asyncio.gather(*viewers)
    assert {r.status_code for r in answers} == {200}
    assert all(r.content == b"x" * 300_000 for r in answers)
    assert edge.origin.hits["/big"] == 1
    counted = await edge.metrics()
    assert [w["index"] for w in counted["workers"]] == list(range(WORKERS))
    assert all(w["requests"] > 0 for w in counted["workers"]), counted["workers"]  # both workers served viewers
    assert counted["requests_total"] == CONNECTIONS
    assert counted["origin_requests"] == 1


async def test_a_second_request_is_a_hit_whichever_worker_takes_it(edge: Edge) -> None:
    edge.origin.set("/page", b"hello")
    first = await edge.fresh_get("/page")
    assert "fwd=miss" in first.headers["cache-status"]
    later = await asyncio.gather(*(edge.fresh_get("/page") for _ in range(CONNECTIONS)))
    assert all("; hit" in r.headers["cache-status"] and r.headers["x-cache"].startswith("Hit") for r in later), [
        r.headers["cache-status"] for r in later
    ]
    assert edge.origin.hits["/page"] == 1
    counted = await edge.metrics()
    assert counted["requests"]["site"] == {"miss": 1, "hit": CONNECTIONS}


async def test_a_put_through_the_edge_is_seen_on_every_worker(edge: Edge) -> None:
    edge.origin.set("/doc", b"old")
    await asyncio.gather(*(edge.fresh_get("/doc") for _ in range(CONNECTIONS)))  # cached by both workers
    assert edge.origin.hits["/doc"] == 1
    edge.origin.set("/doc", b"new", status=200)
    async with httpx.AsyncClient(timeout=30) as client:
        put = await client.put(edge.url + "/doc", content=b"new", headers={"authorization": f"Bearer {UPLOAD_TOKEN}"})
    assert put.status_code == 200
    after = await asyncio.gather(*(edge.fresh_get("/doc") for _ in range(CONNECTIONS)))
    assert {r.content for r in after} == {b"new"}


async def test_prometheus_adds_up_every_worker(edge: Edge) -> None:
    edge.origin.set("/a", b"a")
    await asyncio.gather(*(edge.fresh_get("/a") for _ in range(CONNECTIONS)))
    text = await edge.prometheus()
    served = sum(float(v) for v in re.findall(r"^cdn_edge_requests_total\{[^}]*\} (\S+)$", text, re.M))
    assert served == CONNECTIONS
    origin = sum(float(v) for v in re.findall(r"^cdn_edge_origin_requests_total\{[^}]*\} (\S+)$", text, re.M))
    assert origin == 1
    timed = sum(float(v) for v in re.findall(r"^cdn_edge_response_seconds_count\{[^}]*\} (\S+)$", text, re.M))
    assert timed == CONNECTIONS  # every worker's response-time histogram is in the sum
    assert json.loads(json.dumps((await edge.metrics())["cache_entries"])) >= 1


async def test_an_invalidation_from_the_control_plane_applies_to_every_worker(edge: Edge) -> None:
    edge.origin.set("/inv", b"v1")
    await asyncio.gather(*(edge.fresh_get("/inv") for _ in range(CONNECTIONS)))  # cached by both workers
    edge.origin.set("/inv", b"v2")
    async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {CONTROL_TOKEN}"}) as api:
        made = await api.post(f"{edge.control}/distributions/site/invalidations", json={"paths": ["/inv"]})
        assert made.status_code == 201, made.text
        record = made.json()
        for _ in range(600):
            record = (await api.get(f"{edge.control}/distributions/site/invalidations/{record['id']}")).json()
            if record["status"] == "Completed":
                break
            await asyncio.sleep(0.05)
    assert record["status"] == "Completed"
    after = await asyncio.gather(*(edge.fresh_get("/inv") for _ in range(CONNECTIONS)))
    assert {r.content for r in after} == {b"v2"}  # Completed: no worker serves the old object
    assert edge.origin.hits["/inv"] == 2
