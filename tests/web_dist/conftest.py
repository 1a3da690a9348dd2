"""Fixtures for web_dist: a real origin on a loopback port serving a temporary folder."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from web_dist.origin import build_origin_app
from web_dist.server import RunningServer, start_server

# 200 000 bytes that differ from their neighbours, so a shifted range cannot pass by accident.
DATA = bytes((i * 7 + i // 256) % 256 for i in range(200_000))
SECRET = b"the secret outside the origin folder\n"


@dataclass
class OriginSite:
    """A running origin, its folder and a file outside that folder no request may reach."""

    url: str
    root: Path
    secret: Path
    server: RunningServer


def make_site(base: Path) -> tuple[Path, Path]:
    """A folder with a few objects, plus symlinks and a secret that point outside it."""
    root = base / "site"
    (root / "docs" / "guide").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "hello.txt").write_text("hello, world\n")
    (root / "data.bin").write_bytes(DATA)
    (root / "empty.txt").write_bytes(b"")
    (root / "docs" / "index.html").write_text("<h1>docs</h1>\n")
    (root / "docs" / "guide" / "page.html").write_text("<p>page</p>\n")
    (root / ".upload-leftover").write_text("half an upload\n")
    secret = base / "secret.txt"
    secret.write_bytes(SECRET)
    os.symlink(secret, root / "escape.txt")  # a file symlink leading out
    os.symlink(base, root / "outdir")  # a folder symlink leading out
    os.symlink(root / "hello.txt", root / "inner-link.txt")  # a symlink that stays inside
    return root, secret


OriginFactory = Callable[..., Awaitable[OriginSite]]


@pytest.fixture
async def start_origin(tmp_path: Path) -> AsyncIterator[OriginFactory]:
    """Start origins on the fixture folder (keyword arguments go to build_origin_app)."""
    root, secret = make_site(tmp_path)
    running: list[RunningServer] = []

    async def start(**options: Any) -> OriginSite:
        server = await start_server(build_origin_app(root, name="test", **options), name="origin")
        running.append(server)
        return OriginSite(server.url, root, secret, server)

    yield start
    for server in running:
        await server.stop()


@pytest.fixture
async def origin(start_origin: OriginFactory) -> OriginSite:
    return await start_origin()
