"""The processes of an edge with several workers: the leader binds, starts and watches the rest.

The leader binds one socket per worker on each of the edge's ports (SO_REUSEPORT) and a
loopback port per worker, then starts every other worker as `cdn edge` with its plan in the
environment and its sockets inherited. A socket listens only once its worker serves, so the
kernel never queues a viewer for a worker still starting. A worker that exits is started again
on the same sockets; a worker whose leader dies stops (PR_SET_PDEATHSIG). See edge/workers.py
for how the workers make one edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from edge.app import EdgeApp, build_admin_app, build_edge_app
from edge.workers import ENV, WorkerPlan
from web_dist.config import CdnConfig, EdgeLocation
from web_dist.server import Engine, RunningServer, SharedApp, bind, parse_listen, start_server

log = logging.getLogger("cdn.edge.workers")
START_TIMEOUT = 60.0  # seconds a worker may take to say it is ready
RESTART_DELAY = 1.0
PR_SET_PDEATHSIG = 1


async def lead(
    config: CdnConfig,
    edge: EdgeLocation,
    count: int,
    token: str | None,
    wait: Callable[[], Awaitable[None]],
    log_level: str,
) -> None:
    """Serve `edge` with `count` worker processes until `wait` returns (1: this process alone,
    with no loopback port)."""
    what = f"edge {edge.name}"
    public = _sockets(edge.listen, count)
    https = _sockets(edge.https_listen, count) if edge.https_listen else []
    peers = [bind("127.0.0.1", 0) for _ in range(count)] if count > 1 else []
    for sock in peers:
        sock.listen(1024)
    urls = tuple(f"http://127.0.0.1:{s.getsockname()[1]}" for s in peers)
    secret = secrets.token_urlsafe(32)
    plans = [
        WorkerPlan(
            i,
            count,
            secret,
            urls,
            {
                "public": public[i].fileno(),
                "peer": peers[i].fileno(),
                **({"https": https[i].fileno()} if https else {}),
            },
        )
        for i in range(len(peers))
    ]
    app = build_edge_app(config, edge.name, control_token=token, workers=plans[0] if plans else None)
    started: list[RunningServer] = []
    others = Siblings(config.source, edge.name, plans[1:], log_level)
    try:
        if edge.admin_listen is not None:
            started.append(await start_server(build_admin_app(app.flow), edge.admin_listen, name=f"{what} admin"))
        started += await _serve(app, edge, public[0], https[0] if https else None, peers[0] if peers else None)
        await others.start()
    except BaseException:
        await others.stop()
        for server in reversed(started):
            await server.stop()
        raise
    front = next(s for s in started if s.name == what)
    extra = "".join(
        f" {'admin' if 'admin' in s.name else 'https'} {s.url}"
        for s in started
        if s is not front and not s.name.endswith("peer")
    )
    log.info("%s listening on %s%s (workers: %d)", what, front.url, extra, count)
    print(f"ready {what} {front.url}{extra}", flush=True)
    await wait()
    log.info("%s stopping", what)
    await others.stop()
    for server in reversed(started):
        await server.stop()


async def work(
    config: CdnConfig, edge: EdgeLocation, plan: WorkerPlan, token: str | None, wait: Callable[[], Awaitable[None]]
) -> None:
    """Serve as worker `plan.index` of `edge` on the sockets the leader handed down."""
    _stop_with_parent()
    app = build_edge_app(config, edge.name, control_token=token, workers=plan)
    fds = plan.fds
    started = await _serve(
        app,
        edge,
        socket.socket(fileno=fds["public"]),
        socket.socket(fileno=fds["https"]) if "https" in fds else None,
        socket.socket(fileno=fds["peer"]),
    )
    print(f"ready edge {edge.name} worker {plan.index}", flush=True)
    await wait()
    for server in reversed(started):
        await server.stop()


async def _serve(
    app: EdgeApp, edge: EdgeLocation, public: socket.socket, https: socket.socket | None, peer: socket.socket | None
) -> list[RunningServer]:
    """This worker's listeners: the public ports (listening from now on) and its loopback port
    (none when it is the edge's only process)."""
    what = f"edge {edge.name}"
    started: list[RunningServer] = []
    try:
        public.listen(1024)
        plain: Engine = "granian" if edge.server == "granian" else "uvicorn"
        started.append(
            await start_server(app, edge.listen, name=what, engine=plain, sock=public, shortcut=app.shortcut)
        )
        if https is not None:
            https.listen(1024)
            started.append(
                await start_server(
                    SharedApp(app),
                    edge.https_listen or "",
                    name=f"{what} https",
                    engine="uvicorn" if edge.server == "uvicorn" else "granian",
                    tls_cert=edge.tls_cert,
                    tls_key=edge.tls_key,
                    sock=https,
                    sni=edge.certificates,
                )
            )
        if peer is not None:
            host, port = peer.getsockname()[:2]
            started.append(
                await start_server(
                    SharedApp(app.peer_app()), f"{host}:{port}", name=f"{what} peer", engine=plain, sock=peer
                )
            )
    except BaseException:
        for server in reversed(started):
            await server.stop()
        raise
    return started


def _sockets(listen: str, count: int) -> list[socket.socket]:
    """`count` sockets bound to one address (not yet listening): port 0 picks one for all. One
    alone does not share its port (another process binding it is refused, as it should be)."""
    host, port = parse_listen(listen)
    first = bind(host, port, reuse_port=count > 1, listen=False)
    port = first.getsockname()[1]
    return [first, *(bind(host, port, reuse_port=True, listen=False) for _ in range(count - 1))]


def _stop_with_parent() -> None:
    """Linux: this process gets SIGTERM when the leader dies (and stops now if it has)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)


class Siblings:
    """The leader's view of the other workers: started, restarted when they exit, stopped."""

    def __init__(self, config: Path, name: str, plans: list[WorkerPlan], log_level: str) -> None:
        self.config = config
        self.name = name
        self.plans = plans
        self.log_level = log_level
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn(plan) for plan in self.plans))
        self._watchers = [asyncio.create_task(self._watch(plan)) for plan in self.plans]

    async def _spawn(self, plan: WorkerPlan) -> None:
        cmd = [
            sys.executable,
            "-m",
            "web_dist.cli",
            "--log-level",
            self.log_level,
            "edge",
            "--config",
            str(self.config),
            "--name",
            self.name,
        ]
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            env={**os.environ, ENV: plan.to_env()},
            pass_fds=tuple(plan.fds.values()),
            stdout=asyncio.subprocess.PIPE,
        )
        self.procs[plan.index] = proc
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if not line.startswith(b"ready"):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise OSError(
                f"edge {self.name}: worker {plan.index} failed to start (exit code {proc.returncode}); see the log above"
            )

    async def _watch(self, plan: WorkerPlan) -> None:
        while not self._stopping:
            proc = self.procs[plan.index]
            code = await proc.wait()
            if self._stopping:
                return
            log.error(
                "edge %s: worker %d (pid %d) exited with code %s; starting it again",
                self.name,
                plan.index,
                proc.pid,
                code,
            )
            await asyncio.sleep(RESTART_DELAY)
            try:
                await self._spawn(plan)
            except OSError as exc:
                log.error("%s", exc)

    async def stop(self) -> None:
        self._stopping = True
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
