"""A control plane in front of three edges and a scripted origin, all real servers on loopback;
and a real `redis-server` on an ephemeral port for the Redis mode."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.app import EdgeApp, build_edge_app
from tests.conftest import until
from tests.edge.conftest import ScriptedOrigin
from web_dist.config import CdnConfig, parse_config
from web_dist.control import build_control_app
from web_dist.server import RunningServer

TOKEN = "test-token-0123456789abcdef"
UPLOAD_TOKEN = "upload-token-for-tests-0123"
UPLOAD_AUTH = {"authorization": f"Bearer {UPLOAD_TOKEN}"}
EDGES = ("e1", "e2", "e3")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
WAIT = 30.0  # generous: the machine is shared


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_config(origin_url: str, control: dict[str, Any], tmp: Path, **dist: Any) -> CdnConfig:
    raw: dict[str, Any] = {
        "origins": {"o": {"url": origin_url, "read_timeout": 5.0}},
        "edges": {e: {"listen": "127.0.0.1:0", "disk_path": str(tmp / e)} for e in EDGES},
        "distributions": {
            "site": {
                "domains": ["site.test", "127.0.0.1", "localhost"],
                "origin": "o",
                "upload_token": UPLOAD_TOKEN,
                "default_behavior": {"default_ttl": 3600, "methods": ["GET", "HEAD", "PUT", "DELETE"]},
                **dist,
            },
            "other": {"domains": ["other.test"], "origin": "o"},  # a purge of "site" leaves it alone
        },
        "control": {"token": TOKEN, "max_paths": 5, **control},
    }
    return parse_config(raw, tmp / "cdn.toml")


@dataclass
class Cdn:
    origin: ScriptedOrigin
    config: CdnConfig
    control_url: str
    client: httpx.AsyncClient
    serve: Callable[..., Awaitable[RunningServer]]
    control: RunningServer
    edges: dict[str, tuple[EdgeApp, RunningServer]] = field(default_factory=dict)

    async def start_edge(self, name: str) -> EdgeApp:
        app = build_edge_app(self.config, name, control_token=TOKEN)
        self.edges[name] = (app, await self.serve(app, name=name))
        await until(_flag(app), WAIT, what=f"{name} to reach the control plane")
        return app

    async def restart_control(self, *, stopped: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stop the control process (its memory goes with it); run `stopped`; start a new one."""
        await self.control.stop()
        if stopped is not None:
            await stopped()
        listen = self.control_url.removeprefix("http://")
        self.control = await self.serve(build_control_app(self.config, token=TOKEN), name="control", listen=listen)

    async def stop_edge(self, name: str) -> None:
        _, server = self.edges.pop(name)
        await server.stop()

    def app(self, name: str) -> EdgeApp:
        return self.edges[name][0]

    async def get(self, edge: str, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(self.edges[edge][1].url + path, **kw)

    async def api(self, method: str, path: str, token: str | None = TOKEN, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await self.client.request(method, self.control_url + path, headers=headers, **kw)

    async def invalidate(self, paths: list[str], **body: Any) -> dict[str, Any]:
        resp = await self.api("POST", "/distributions/site/invalidations", json={"paths": paths, **body})
        assert resp.status_code == 201, resp.text
        result: dict[str, Any] = resp.json()
        return result

    async def completed(self, record: dict[str, Any], what: str = "invalidations") -> dict[str, Any]:
        url = f"/distributions/site/{what}/{record['id']}"
        latest: dict[str, Any] = record

        async def done() -> bool:
            nonlocal latest
            latest = (await self.api("GET", url)).json()
            return bool(latest["status"] == "Completed")

        await until(done, WAIT, what=f"{record['id']} to complete")
        return latest


def _flag(app: EdgeApp) -> Callable[[], Awaitable[bool]]:
    async def connected() -> bool:
        return app.sync is not None and app.sync.connected.is_set()

    return connected


@pytest.fixture
async def cdn_factory(serve: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Cdn]]]:
    clients: list[httpx.AsyncClient] = []
    made: list[Cdn] = []

    async def make(control: dict[str, Any] | None = None, start_edges: bool = True, **dist: Any) -> Cdn:
        origin = ScriptedOrigin()
        origin_srv = await serve(origin, name="origin")
        port = free_port()
        config = make_config(origin_srv.url, {"listen": f"127.0.0.1:{port}", **(control or {})}, tmp_path, **dist)
        control_srv = await serve(build_control_app(config, token=TOKEN), name="control", listen=f"127.0.0.1:{port}")
        client = httpx.AsyncClient(timeout=20)
        clients.append(client)
        cdn = Cdn(origin, config, control_srv.url, client, serve, control_srv)
        made.append(cdn)
        if start_edges:
            for name in EDGES:
                await cdn.start_edge(name)
        return cdn

    yield make
    for cdn in made:  # edges first: their long-polls would hold the control server's shutdown
        for name in list(cdn.edges):
            await cdn.stop_edge(name)
    for client in clients:
        await client.aclose()


class RedisServer:
    """A real redis-server on an ephemeral loopback port; restartable on the same port."""

    def __init__(self, folder: Path, *, appendonly: bool) -> None:
        self.folder = folder
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--dir",
            str(self.folder),
        ]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (make installs it)")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder, appendonly=getattr(request, "param", False))
    server.start()
    yield server
    server.stop()
