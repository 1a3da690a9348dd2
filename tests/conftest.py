"""Fixtures shared by every test folder: real servers on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from edge.app import EdgeApp
from web_dist.server import Engine, RunningServer, start_server


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """`await serve(app, name=...)` starts `app` on 127.0.0.1:0; all are stopped at the end.
    An edge is served as `cdn edge` serves its plain-HTTP port, on uvicorn with the fast lane;
    everything else on uvicorn."""
    running: list[RunningServer] = []

    async def _serve(
        app: Any, name: str = "server", listen: str = "127.0.0.1:0", engine: Engine | None = None
    ) -> RunningServer:
        shortcut = app.shortcut if isinstance(app, EdgeApp) and engine in (None, "uvicorn") else None
        server = await start_server(app, listen, name=name, engine=engine or "uvicorn", shortcut=shortcut)
        running.append(server)
        return server

    yield _serve
    for server in reversed(running):
        await server.stop()


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    """What `proc` printed up to and including the first line with `marker` (`cdn up`'s summary)."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} was never printed; got {''.join(seen)!r}")


async def until(
    check: Callable[[], object], limit: float = 10.0, *, what: str = "the condition", every: float = 0.02
) -> float:
    """Poll `check` (a function, or one returning an awaitable) until it holds; the seconds it
    took. AssertionError naming `what` after `limit` seconds. The tests' one bounded wait: never
    a guessed sleep."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return loop.time() - started
        if loop.time() - started > limit:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}")
        await asyncio.sleep(every)


def until_sync(
    check: Callable[[], object], limit: float = 10.0, *, what: str = "the condition", every: float = 0.05
) -> object:
    """`until` for a test without an event loop: what `check` returned once it held."""
    deadline = time.monotonic() + limit
    while True:
        held = check()
        if held:
            return held
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}")
        time.sleep(every)
