"""Fixtures shared by every test folder: real servers on ephemeral loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from web_dist.server import RunningServer, start_server


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """`await serve(app, name=...)` starts `app` on 127.0.0.1:0; all are stopped at the end."""
    running: list[RunningServer] = []

    async def _serve(app: Any, name: str = "server", listen: str = "127.0.0.1:0") -> RunningServer:
        server = await start_server(app, listen, name=name)
        running.append(server)
        return server

    yield _serve
    for server in reversed(running):
        await server.stop()
