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

from tests.conftest import read_until, until_sync

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def demo_config(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """The demo config on free ports in TMP/demo/ as in the repo, with the demo site copied (so
    uploads stay in tmp)."""
    demo = tmp_path / "demo"
    shutil.copytree(REPO / "demo" / "site", demo / "site", ignore=shutil.ignore_patterns("*.bin"))
    text = (REPO / "demo" / "cdn.toml").read_text()
    # Every listener moves to a free port, so a running `make run` does not get in the way.
    moved = {old: free_port() for old in sorted(set(re.findall(r"127\.0\.0\.1:(\d+)", text)))}
    text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{moved[m.group(1)]}", text)
    ports = {
        "origin": moved["8081"],
        "lon": moved["8091"],
        "syd": moved["8092"],
        "router": moved["8090"],
        "control": moved["8070"],
        "router_https": moved["8490"],
        "lon_https": moved["8443"],
    }
    config = demo / "cdn.toml"
    config.write_text(text)
    return config, ports


def start_up(config: Path, cwd: Path = REPO) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "web_dist.cli", "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**clean_environ(), "PYTHONUNBUFFERED": "1"},
    )


def clean_environ() -> dict[str, str]:
    """This environment without the CDN's secrets: a new shell, as a user's would be."""
    from web_dist.cli import GENERATED_SECRETS

    return {k: v for k, v in os.environ.items() if k not in GENERATED_SECRETS}


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
        upload = re.search(
            r"curl -T README\.md -H 'Authorization: Bearer (\S+)'( --cacert \S+)? https?://localhost:\d+/uploads/README\.md",
            printed,
        )
        assert upload, printed
        up = httpx.put(note, content=b"through the edge", headers={"authorization": f"Bearer {upload.group(1)}"})
        assert up.status_code in (200, 201)
        # the origin answers its edges only; the dashboard and metrics want the printed token
        assert httpx.get(f"http://127.0.0.1:{ports['origin']}/").status_code == 403
        metrics = re.search(r"curl -H 'Authorization: Bearer (\S+)' (http://127\.0\.0\.1:\d+/metrics)", printed)
        assert metrics, printed
        assert httpx.get(metrics.group(2)).status_code == 401
        assert (
            "cdn_edge_requests_total"
            in httpx.get(metrics.group(2), headers={"authorization": f"Bearer {metrics.group(1)}"}).text
        )
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
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"cdn: bad config: {config}: distributions.site.default_behavior" in result.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ports["origin"]), timeout=1).close()


def test_cdn_check_prints_the_distribution(demo_config) -> None:
    config, _ = demo_config
    result = subprocess.run(
        [sys.executable, "-m", "web_dist.cli", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
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


def printed_command(printed: str, starts: str, containing: str = "") -> str:
    """The first printed line (a command to copy) that starts with `starts`, as printed."""
    lines = (line.strip() for line in printed.splitlines())
    found = next((line for line in lines if line.startswith(starts) and containing in line), None)
    assert found is not None, f"no line starting {starts!r} in:\n{printed}"
    return found


def shell(command: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`command` as a user pastes it: bash, in `cwd`, without the CDN's secrets exported."""
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=clean_environ(), capture_output=True, text=True, timeout=timeout
    )


def test_the_printed_tour_works_from_the_folder_above_demo(demo_config) -> None:  # type: ignore[no-untyped-def]
    """Every command `cdn up` prints works as pasted, from the folder holding demo/ (the repo
    root for `make run`), in a shell with no variables exported: an upload through edge-lon is
    seen at once on edge-syd (which had cached the 404), so is its delete; invalidate and purge
    by tag reach both edges; a signed-only path serves a URL signed with the key pair made at
    start; the router's watch URL sends a browser to an edge under its own name."""
    config, ports = demo_config
    home = config.parent.parent
    (home / "README.md").write_text("# uploaded through edge-lon\n")
    proc = start_up(config, cwd=home)
    try:
        printed = read_until(proc, "/metrics")
        assert f"`cdn` is {REPO}/.venv/bin/cdn; `make shell` puts it on PATH" in printed
        assert "--config" not in printed_command(printed, f"{REPO}/.venv/bin/cdn invalidate")
        syd = f"http://localhost:{ports['syd']}"
        assert httpx.get(f"{syd}/uploads/README.md").status_code == 404  # remembered for error_ttl (10 s)

        upload = shell(printed_command(printed, "curl -T README.md"), home)
        assert upload.returncode == 0, upload.stderr
        read = printed_command(printed, "curl -s", "| head -3")
        assert until_sync(lambda: b"uploaded through edge-lon" in shell(read, home).stdout.encode(), 5)
        assert shell(printed_command(printed, "curl -X DELETE"), home).returncode == 0
        gone = printed_command(printed, "curl -s -o /dev/null -w")
        assert until_sync(lambda: shell(gone, home).stdout.strip() == "404", 5)

        for port in (ports["lon"], ports["syd"]):  # both edges hold the home page and an image
            for path in ("/", "/images/logo.svg"):
                httpx.get(f"http://localhost:{port}{path}")
                assert "; hit" in httpx.get(f"http://localhost:{port}{path}").headers["cache-status"], path
        invalidate = shell(printed_command(printed, f"{REPO}/.venv/bin/cdn invalidate site /index.html"), home)
        assert invalidate.returncode == 0 and "Completed" in invalidate.stdout, invalidate.stdout + invalidate.stderr
        assert "edge-lon: applied" in invalidate.stdout and "edge-syd: applied" in invalidate.stdout
        purge = shell(printed_command(printed, f"{REPO}/.venv/bin/cdn purge site --tag images"), home)
        assert purge.returncode == 0 and "Completed" in purge.stdout, purge.stdout + purge.stderr
        for port in (ports["lon"], ports["syd"]):
            image = httpx.get(f"http://localhost:{port}/images/logo.svg")
            assert "fwd=miss" in image.headers["cache-status"] and "surrogate-key" not in image.headers

        signed = shell(printed_command(printed, 'curl -i "$('), home)
        assert signed.stdout.startswith("HTTP/1.1 200") and "signed URLs only" in signed.stdout, signed.stdout
        assert httpx.get(f"http://localhost:{ports['lon']}/private/report.txt").status_code == 403

        watch = re.search(
            r"watch through the router \(302 to the nearest edge\): (https://live\.localhost:(\d+)/watch/test)", printed
        )
        assert watch and int(watch.group(2)) == ports["router_https"], printed
        routed = httpx.get(
            f"http://127.0.0.1:{ports['router']}/watch/test", headers={"host": f"live.localhost:{ports['router']}"}
        )
        assert routed.status_code == 302 and routed.headers["location"].startswith(
            f"http://edge-lon.live.localhost:{ports['lon']}/watch/test"
        )
        trust = ssl.create_default_context(
            cafile=str(config.parent / "tls" / "ca.pem")
        )  # over HTTPS: to the edge's HTTPS port
        routed = httpx.get(
            f"https://127.0.0.1:{ports['router_https']}/watch/test",
            verify=trust,
            headers={"host": f"live.localhost:{ports['router_https']}"},
        )
        location = f"https://edge-lon.live.localhost:{ports['lon_https']}/watch/test"
        assert routed.status_code == 302 and routed.headers["location"] == location, routed.headers
        page = httpx.get(
            f"https://127.0.0.1:{ports['lon_https']}/watch/test",
            verify=trust,
            headers={"host": f"edge-lon.live.localhost:{ports['lon_https']}"},
        )
        assert page.status_code == 200 and "<video" in page.text, page.text[:300]
        assert printed_command(printed, f"{REPO}/.venv/bin/cdn loadtest --config demo/cdn.toml")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0
