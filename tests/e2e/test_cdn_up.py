"""`cdn up` as a user runs it: real processes, the printed URLs, a miss then a hit, clean stop."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import read_until

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def demo_config(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """The demo config on free ports, with the demo site copied (so uploads stay in tmp)."""
    shutil.copytree(REPO / "demo" / "site", tmp_path / "site", ignore=shutil.ignore_patterns("*.bin"))
    text = (REPO / "demo" / "cdn.toml").read_text()
    # Every listener moves to a free port, so a running `make run` does not get in the way.
    moved = {old: free_port() for old in sorted(set(re.findall(r"127\.0\.0\.1:(\d+)", text)))}
    text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{moved[m.group(1)]}", text)
    ports = {"origin": moved["8081"], "lon": moved["8091"], "syd": moved["8092"]}
    config = tmp_path / "cdn.toml"
    config.write_text(text)
    return config, ports


def start_up(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "web_dist.cli", "up", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_cdn_up_serves_the_site_through_two_edges_and_stops_cleanly(demo_config) -> None:
    config, ports = demo_config
    proc = start_up(config)
    try:
        printed = read_until(proc, "/metrics")  # the summary's last line
        assert f"http://127.0.0.1:{ports['lon']}/" in printed and f"http://127.0.0.1:{ports['syd']}/" in printed
        for edge, port in (("edge-lon", ports["lon"]), ("edge-syd", ports["syd"])):
            url = f"http://localhost:{port}/"
            first, second = httpx.get(url), httpx.get(url)
            assert first.status_code == 200 and b"CDN demo site" in first.content
            assert first.headers["cache-status"] == f"{edge}; fwd=miss; fwd-status=200; stored"
            assert second.headers["cache-status"].startswith(f"{edge}; hit")
        css = httpx.get(f"http://localhost:{ports['lon']}/style.css")
        assert css.headers["content-type"].startswith("text/css")
        note = f"http://localhost:{ports['lon']}/uploads/note.txt"
        assert httpx.put(note, content=b"anonymous").status_code == 403
        upload = re.search(r"curl -T README\.md -H 'Authorization: Bearer (\S+)'( --cacert \S+)? https?://localhost:\d+/uploads/README\.md", printed)
        assert upload, printed
        up = httpx.put(note, content=b"through the edge", headers={"authorization": f"Bearer {upload.group(1)}"})
        assert up.status_code in (200, 201)
        # the origin answers its edges only; the dashboard and metrics want the printed token
        assert httpx.get(f"http://127.0.0.1:{ports['origin']}/").status_code == 403
        metrics = re.search(r"curl -H 'Authorization: Bearer (\S+)' (http://127\.0\.0\.1:\d+/metrics)", printed)
        assert metrics, printed
        assert httpx.get(metrics.group(2)).status_code == 401
        assert "cdn_edge_requests_total" in httpx.get(metrics.group(2), headers={"authorization": f"Bearer {metrics.group(1)}"}).text
        https = re.search(r"HTTPS \(h2\): (https://localhost:(\d+)/) on edge-lon; trust the local CA (\S+)", printed)
        assert https, printed
        ca = ssl.create_default_context(cafile=https.group(3))
        page = httpx.get(https.group(1), verify=ca)
        assert page.status_code == 200 and "cache-status" in page.headers
        ca.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", int(https.group(2))), timeout=5) as raw:
            with ca.wrap_socket(raw, server_hostname="live.localhost") as tls:
                assert tls.selected_alpn_protocol() == "h2"
        dashboard = re.search(r"dashboard (http://\S+/\?token=\S+)", printed)
        assert dashboard and httpx.get(dashboard.group(1), follow_redirects=True).text.startswith("<!doctype html>")
        assert (config.parent / "site" / "uploads" / "note.txt").read_bytes() == b"through the edge"
        assert httpx.get(f"http://127.0.0.1:{ports['lon']}/", headers={"host": "nope.test"}).status_code == 421
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0
    for port in ports.values():  # every child is gone
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_cdn_up_refuses_a_bad_config_and_starts_nothing(demo_config) -> None:
    config, ports = demo_config
    config.write_text(config.read_text().replace("max_ttl = 3600", "max_ttl = 1", 1))
    result = subprocess.run(
        [sys.executable, "-m", "web_dist.cli", "up", "--config", str(config)],
        capture_output=True, text=True, cwd=REPO, timeout=30,
    )
    assert result.returncode == 2
    assert f"cdn: bad config: {config}: distributions.site.default_behavior" in result.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ports["origin"]), timeout=1).close()


def test_cdn_check_prints_the_distribution(demo_config) -> None:
    config, _ = demo_config
    result = subprocess.run(
        [sys.executable, "-m", "web_dist.cli", "check", "--config", str(config)],
        capture_output=True, text=True, cwd=REPO, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "distribution site: localhost, 127.0.0.1, site.cdn.test -> site on edge-lon, edge-syd" in result.stdout


def test_secrets_cdn_up_made_are_found_by_later_commands(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`cdn up` keeps what it generated beside the config (owner-only); a later `cdn` command
    with that --config, in a shell without the variables, finds them."""
    import os
    import stat

    from web_dist.cli import (
        GENERATED_SECRETS,
        generate_secrets,
        load_secrets,
        save_secrets,
        secrets_path,
    )

    made: dict[str, str] = {}
    generate_secrets(made)
    path = secrets_path(tmp_path / "cdn.toml")
    save_secrets(path, made)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    later: dict[str, str] = {"CDN_ADMIN_TOKEN": "set-by-the-user-wins"}
    load_secrets(path, later)
    assert later["CDN_ADMIN_TOKEN"] == "set-by-the-user-wins"
    assert all(later[name] == made[name] for name in GENERATED_SECRETS if name != "CDN_ADMIN_TOKEN")
