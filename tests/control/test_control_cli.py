"""`cdn up` with a [control] table, and `cdn invalidate` / `cdn purge` as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.control.conftest import TOKEN, free_port

REPO = Path(__file__).resolve().parents[2]


def cdn(*args: str, token: str | None = TOKEN, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CDN_CONTROL_TOKEN"}
    if token is not None:
        env["CDN_CONTROL_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "web_dist.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )


def test_cdn_up_starts_the_control_plane_and_cdn_invalidate_waits_for_every_edge(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "page.html").write_text("first")
    ports = {name: free_port() for name in ("origin", "e1", "e2", "control")}
    config = tmp_path / "cdn.toml"
    config.write_text(f"""
[origins.site]
root = "site"
listen = "127.0.0.1:{ports["origin"]}"
[edges.e1]
listen = "127.0.0.1:{ports["e1"]}"
[edges.e2]
listen = "127.0.0.1:{ports["e2"]}"
[distributions.site]
domains = ["localhost", "127.0.0.1"]
origin = "site"
[distributions.site.default_behavior]
default_ttl = 3600
[control]
listen = "127.0.0.1:{ports["control"]}"
""")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CDN_CONTROL_TOKEN": TOKEN}
    up = subprocess.Popen(
        [sys.executable, "-m", "web_dist.cli", "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        assert up.stdout is not None
        printed = ""
        while "a miss, then a hit" not in printed:
            line = up.stdout.readline()
            assert line, f"cdn up stopped: {printed}"
            printed += line
        assert f"control {' ' * 11} http://127.0.0.1:{ports['control']}/ (embedded" in printed
        edges = [f"http://127.0.0.1:{ports[e]}/page.html" for e in ("e1", "e2")]
        assert [httpx.get(u).text for u in edges] == ["first", "first"]
        (tmp_path / "site" / "page.html").write_text("second")
        assert [httpx.get(u).text for u in edges] == ["first", "first"]  # cached

        done = cdn("invalidate", "site", "/page.html", "--wait", "--config", str(config))
        assert done.returncode == 0, done.stderr
        assert (
            " Completed in " in done.stdout
            and "e1: applied after" in done.stdout
            and "e2: applied after" in done.stdout
        )
        assert [httpx.get(u).text for u in edges] == ["second", "second"]

        pushed = tmp_path / "cdn-v2.toml"
        pushed.write_text(config.read_text().replace('"127.0.0.1"]', '"127.0.0.1", "renamed.test"]'))
        published = cdn("control", "publish-config", str(pushed))
        assert published.returncode == 0 and published.stdout.startswith(f"published {pushed} as C"), published.stderr
        renamed = {"host": "renamed.test"}
        deadline = time.monotonic() + 30
        while [httpx.get(u, headers=renamed).status_code for u in edges] != [200, 200]:
            assert time.monotonic() < deadline, "the published config did not reach both edges"
            time.sleep(0.05)

        wrong = cdn("purge", "site", "--tag", "t", "--config", str(config), token="wrong-token-wrong-token")
        assert wrong.returncode == 1 and "403: wrong token" in wrong.stderr
        bad = cdn("invalidate", "site", "page.html", "--config", str(config))
        assert bad.returncode == 1 and "400: invalid path 'page.html': must start with '/'" in bad.stderr
        kept = cdn("invalidate", "site", "/x", "--config", str(config), token=None)
        assert kept.returncode == 0, "`cdn up` kept the token it ran with beside the config"
        (tmp_path / ".cdn-secrets.env").unlink()
        missing = cdn("invalidate", "site", "/x", "--config", str(config), token=None)
        assert missing.returncode == 2 and "CDN_CONTROL_TOKEN" in missing.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0


def test_without_config_cdn_invalidate_finds_demo_or_says_what_to_pass(tmp_path: Path) -> None:
    """No --config: ./cdn.toml, else ./demo/cdn.toml (the repo root of `make run`); neither
    there: exit 2 and what to pass, before anything is sent."""
    result = subprocess.run(
        [sys.executable, "-m", "web_dist.cli", "invalidate", "site", "/x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 2
    assert "no --config FILE given, and neither ./cdn.toml nor ./demo/cdn.toml is here: pass --config" in result.stderr
    from web_dist.config import find_config

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "cdn.toml").write_text("")
    assert find_config(None, tmp_path) == tmp_path / "demo" / "cdn.toml"
    (tmp_path / "cdn.toml").write_text("")
    assert find_config(None, tmp_path) == tmp_path / "cdn.toml"
    assert find_config(Path("given.toml"), tmp_path) == Path("given.toml")
