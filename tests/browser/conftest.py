"""The demo CDN as `make run` starts it (on free ports, with a smaller test stream), and a
headless Chromium that reaches it on loopback only.

One `cdn up` serves every browser test of the session: starting the media origin, the player,
the web origin and two edges takes a few seconds, and each test opens its own pages anyway.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import read_until

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_INSTALLED = CHROMIUM.exists()
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    # every name is loopback (live.localhost, localhost): nothing leaves the machine
    "--host-resolver-rules=MAP * 127.0.0.1",
    # WebRTC: offer loopback host candidates, unobfuscated (there is no other interface to use)
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
# The demo's stream, made cheaper for a test machine: small frames, a small two-rung ladder.
RENDITIONS = {"180p": "320x180", "90p": "160x90"}
STREAM_CHANGES = {
    "width = 640": "width = 320",
    "height = 360": "height = 180",
    'renditions = ["360p", "180p"]': 'renditions = ["180p", { name = "90p", width = 160, height = 90, bitrate = 120000 }]',
}


@dataclass(frozen=True)
class DemoCdn:
    """The running demo: where its edges listen and where its site folder is."""

    ports: dict[str, int]
    site: Path
    printed: str

    def site_url(self, edge: str = "edge-lon") -> str:
        return f"http://localhost:{self.ports[edge]}"

    def live_url(self, edge: str = "edge-lon") -> str:
        return f"http://live.localhost:{self.ports[edge]}"

    def admin_url(self, edge: str = "edge-lon") -> str:
        """The dashboard of `edge` on its admin listener, with the token `cdn up` made or was given."""
        config = (self.site.parent / "cdn.toml").read_text()
        found = re.search(rf'^\[edges\.{edge}\][^\[]*?admin_listen = "([^"]+)"', config, re.M)
        assert found, f"{edge} has no admin_listen"
        secrets = dict(
            line.partition("=")[::2] for line in (self.site.parent / ".cdn-secrets.env").read_text().splitlines()
        )
        token = os.environ.get("CDN_ADMIN_TOKEN") or secrets["CDN_ADMIN_TOKEN"]
        return f"http://{found.group(1)}/?token={token}"

    def rtmp_url(self, key: str = "demo-key") -> str:
        """Where a publisher pushes the demo's RTMP stream ("cam") with `key`."""
        config = (self.site.parent / "cdn.toml").read_text()
        listen = re.search(r'^rtmp_listen = "([^"]+)"', config, re.M)
        assert listen, "demo/cdn.toml has no rtmp_listen"
        return f"rtmp://{listen[1]}/live/{key}"

    def live_client(self, edge: str = "edge-lon") -> httpx.Client:
        """An HTTP client for the streaming distribution (the resolver may not know *.localhost)."""
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.ports[edge]}", headers={"host": "live.localhost"}, timeout=30
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_config(tmp: Path, changes: dict[str, str] = STREAM_CHANGES) -> tuple[Path, dict[str, int]]:
    """demo/cdn.toml with every listener moved to a free port, `changes` made, and the site
    copied to `tmp` (with its generated assets)."""
    text = (REPO / "demo" / "cdn.toml").read_text()
    ports: dict[str, int] = {}
    for name, listen in re.findall(r'^\[(?:origins|edges)\.([\w-]+)\]\s*\n(?:[^\[]*?)listen = "([^"]+)"', text, re.M):
        ports[name] = free_port()
        text = text.replace(f'listen = "{listen}"', f'listen = "127.0.0.1:{ports[name]}"')
    # The rest (the router, RTMP ingest) to free ports too, so a running `make run` is no bother.
    for port in sorted(set(re.findall(r'"127\.0\.0\.1:(\d+)"', text)) - {str(p) for p in ports.values()}):
        text = text.replace(f'"127.0.0.1:{port}"', f'"127.0.0.1:{free_port()}"')
    for old, new in changes.items():
        assert text.count(old) == 1, f"demo/cdn.toml no longer has {old!r} once"
        text = text.replace(old, new)
    assert {"site", "live", "player", "edge-lon", "edge-syd"} <= set(ports), ports
    shutil.copytree(REPO / "demo" / "site", tmp / "site", ignore=shutil.ignore_patterns("*.bin", "gradient.png"))
    subprocess.run(
        [sys.executable, str(REPO / "demo" / "make_assets.py"), str(tmp / "site")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    config = tmp / "cdn.toml"
    config.write_text(text)
    return config, ports


@contextlib.contextmanager
def running_demo(tmp: Path, changes: dict[str, str] = STREAM_CHANGES) -> Iterator[DemoCdn]:
    """`cdn up` on the demo config (see `demo_config`), stopped on the way out."""
    config, ports = demo_config(tmp, changes)
    proc = subprocess.Popen(
        [sys.executable, "-m", "web_dist.cli", "--log-level", "warning", "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        printed = read_until(proc, "watch test:")
        yield DemoCdn(ports, config.parent / "site", printed)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def demo_cdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoCdn]:
    with running_demo(tmp_path_factory.mktemp("demo")) as demo:
        yield demo


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Debian Chromium; the test is skipped, loudly, only when it cannot start."""
    from playwright.async_api import Error, async_playwright

    if not CHROMIUM_INSTALLED:
        pytest.skip(f"BROWSER TESTS SKIPPED: {CHROMIUM} is not installed (`make deps` installs it)")
    async with async_playwright() as playwright:
        try:
            chromium = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=60_000
            )
        except Error as exc:
            pytest.skip(f"BROWSER TESTS SKIPPED: Chromium cannot start: {exc}")
        try:
            yield chromium
        finally:
            await chromium.close()


def record_problems(page: Any, allow: re.Pattern[str] | None = None) -> list[str]:
    """What a user would call broken on `page`: script errors, failed requests, 4xx/5xx
    answers (but those `allow` matches)."""
    problems: list[str] = []

    def note(problem: str) -> None:
        if allow is None or not allow.match(problem):
            problems.append(problem)

    def failed(request: Any) -> None:
        # ERR_ABORTED is the page's own doing, not the server's: hls.js cancels a held playlist
        # reload when it switches rendition, and Chromium reports every HEAD with a body length
        # that way (it never reads the body it was told about) though the script has its answer.
        if request.failure == "net::ERR_ABORTED":
            return
        note(f"request failed: {request.method} {request.url} {request.failure}")

    def answered(response: Any) -> None:
        if response.status >= 400:
            note(f"HTTP {response.status}: {response.request.method} {response.url}")

    def asked(request: Any) -> None:
        if not request.url.startswith(("http://localhost:", "http://live.localhost:", "data:", "blob:")):
            note(f"request outside the CDN: {request.url}")  # the pages must name no other server

    page.on("pageerror", lambda exc: note(f"page error: {exc}"))
    page.on("request", asked)
    page.on("requestfailed", failed)
    page.on("response", answered)
    return problems


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
