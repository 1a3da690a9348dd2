"""The admin listener: Prometheus metrics, JSON and the dashboard, never on the public port."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge.admin import build_admin_app
from edge.history import quantile
from edge.metrics import EdgeMetrics, TopObjects, object_pattern
from tests.edge.conftest import EdgeRig

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ADMIN_TOKEN = "admin-token-for-tests-0123"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


async def admin_url(rig: EdgeRig, serve: Callable[..., Any]) -> str:
    flow = rig.app.flow
    flow.metrics.bind_store("memory", flow.store)  # idempotent, whether or not the flow binds it
    server = await serve(build_admin_app(flow, token=ADMIN_TOKEN), name="admin")
    url: str = server.url
    return url


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def a_miss_and_two_hits(rig: EdgeRig) -> None:
    rig.origin.set("/a", b"hello")
    for _ in range(3):
        assert (await rig.get("/a")).status_code == 200
    assert rig.origin.hits["/a"] == 1


async def test_public_port_never_serves_metrics_or_dashboard(rig: EdgeRig, serve: Callable[..., Any]) -> None:
    await admin_url(rig, serve)
    await a_miss_and_two_hits(rig)
    for path in ("/metrics", "/metrics.json", "/_cdn/metrics", "/_cdn/metrics.json", "/_cdn/", "/"):
        resp = await rig.get(path)
        assert resp.status_code == 404, path
        assert "cdn_edge_" not in resp.text and "hit_ratio" not in resp.text and "<svg" not in resp.text, path
    assert set(rig.origin.hits) == {"/a", "/metrics", "/metrics.json", "/"}  # the origin's own 404s
    assert (await rig.get("/_cdn/health")).json() == {"edge": "edge-test", "status": "ok"}


async def test_prometheus_page_counts_a_miss_and_two_hits(rig: EdgeRig, serve: Callable[..., Any]) -> None:
    admin = await admin_url(rig, serve)
    await a_miss_and_two_hits(rig)
    resp = await rig.client.get(admin + "/metrics", headers=AUTH)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    got = samples(resp.text)
    site = (("distribution", "site"),)
    assert got["cdn_edge_requests_total", (("cache_status", "miss"), *site)] == 1
    assert got["cdn_edge_requests_total", (("cache_status", "hit"), *site)] == 2
    assert got["cdn_edge_responses_total", (("status", "200"),)] == 3
    assert got["cdn_edge_bytes_sent_total", site] == 3 * len(b"hello")
    assert got["cdn_edge_hit_ratio", ()] == pytest.approx(2 / 3)
    assert got["cdn_edge_cache_entries", (("tier", "memory"),)] == 1
    assert got["cdn_edge_cache_bytes", (("tier", "memory"),)] == rig.app.flow.store.used_bytes > 0
    assert got["cdn_edge_cache_evictions_total", (("tier", "memory"),)] == 0


async def test_collapsed_misses_count_as_offload_not_as_hits(rig: EdgeRig, serve: Callable[..., Any]) -> None:
    admin = await admin_url(rig, serve)
    gate = asyncio.Event()
    rig.origin.set("/cold", b"x", gate=gate)
    viewers = [asyncio.create_task(rig.get("/cold")) for _ in range(5)]
    for _ in range(500):  # the other four join the first one's fetch
        if rig.app.flow.flights.collapsed == 4:
            break
        await asyncio.sleep(0.01)
    gate.set()
    assert [r.status_code for r in await asyncio.gather(*viewers)] == [200] * 5
    assert rig.origin.hits["/cold"] == 1
    got = samples((await rig.client.get(admin + "/metrics", headers=AUTH)).text)
    assert got["cdn_edge_hit_ratio", ()] == 0  # five misses, as Cache-Status says
    assert got["cdn_edge_offload_ratio", ()] == pytest.approx(4 / 5)  # but one origin request
    assert (await rig.client.get(admin + "/metrics.json", headers=AUTH)).json()["offload_ratio"] == pytest.approx(0.8)


async def test_json_counts_on_the_admin_port(rig: EdgeRig, serve: Callable[..., Any]) -> None:
    admin = await admin_url(rig, serve)
    await a_miss_and_two_hits(rig)
    body = (await rig.client.get(admin + "/metrics.json", headers=AUTH)).json()
    assert body["edge"] == "edge-test" and body["requests"]["site"] == {"miss": 1, "hit": 2}
    assert body["requests_total"] == 3 and body["bytes_out_total"] == 15
    assert body["origin_requests"] == 1 and rig.origin.hits["/a"] == 1
    assert body["cache_entries"] == 1 and body["cache"]["memory"]["entries"] == 1


async def test_top_objects_are_ordered_by_requests(rig: EdgeRig, serve: Callable[..., Any]) -> None:
    admin = await admin_url(rig, serve)
    metrics = rig.app.flow.metrics
    for key, n in (("site:/b", 1), ("site:/a", 3), ("site:/c", 2)):
        for _ in range(n):
            metrics.count_object(key, 100)
    top = (await rig.client.get(admin + "/metrics.json", headers=AUTH)).json()["top_objects"]
    assert [(o["key"], o["requests"], o["bytes"]) for o in top] == [
        ("site:/a", 3, 300),
        ("site:/c", 2, 200),
        ("site:/b", 1, 100),
    ]


def test_top_objects_stay_bounded_and_keep_the_heavy_keys() -> None:
    top = TopObjects(capacity=50)
    truth: dict[str, int] = {}
    for i in range(5000):  # 10 % "heavy", 4 % "warm", the rest requested once each
        key = "heavy" if i % 10 == 0 else ("warm" if i % 25 == 1 else f"once-{i}")
        top.count(key, 1)
        truth[key] = truth.get(key, 0) + 1
        assert len(top) <= 100
    ranked = top.top(100)
    assert [key for key, *_ in ranked[:2]] == ["heavy", "warm"]
    assert top.floor <= 5000 / 50  # the error bound of counting in 50 slots
    for key, requests, _, error in ranked:
        assert truth[key] <= requests <= truth[key] + error  # never under, over by at most `error`


def test_origin_requests_and_latency_histogram() -> None:
    metrics = EdgeMetrics()
    metrics.observe_origin("o", 0.02, 200)
    metrics.observe_origin("o", 0.3, 503)
    metrics.observe_origin("o", 31.0, None)
    got = samples(generate_latest(metrics.registry).decode())
    o = (("origin", "o"),)
    assert got["cdn_edge_origin_requests_total", (("origin", "o"), ("outcome", "2xx"))] == 1
    assert got["cdn_edge_origin_requests_total", (("origin", "o"), ("outcome", "5xx"))] == 1
    assert got["cdn_edge_origin_requests_total", (("origin", "o"), ("outcome", "failed"))] == 1
    assert got["cdn_edge_origin_seconds_bucket", (("le", "0.025"), *o)] == 1
    assert got["cdn_edge_origin_seconds_bucket", (("le", "0.5"), *o)] == 2
    assert got["cdn_edge_origin_seconds_bucket", (("le", "30.0"), *o)] == 2
    assert got["cdn_edge_origin_seconds_bucket", (("le", "+Inf"), *o)] == 3
    assert got["cdn_edge_origin_seconds_count", o] == 3
    assert got["cdn_edge_origin_seconds_sum", o] == pytest.approx(31.32)
    assert metrics.origin_requests == 3


def test_each_edge_has_its_own_registry() -> None:
    first, second = EdgeMetrics(), EdgeMetrics()
    first.count("site", "hit", 200, 10)
    assert (
        'cdn_edge_requests_total{cache_status="hit",distribution="site"} 1.0'
        in generate_latest(first.registry).decode()
    )
    assert "cdn_edge_requests_total{" not in generate_latest(second.registry).decode()


async def test_dashboard_is_one_page_with_no_external_requests(rig: EdgeRig, serve: Callable[..., Any]) -> None:
    admin = await admin_url(rig, serve)
    resp = await rig.client.get(admin + "/", headers=AUTH)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in resp.headers["content-security-policy"]
    html = resp.text
    assert "<title>edge edge-test</title>" in html and 'fetch("metrics.json"' in html
    assert not re.search(r"https?:|//[a-z0-9]", html, re.IGNORECASE), "the page must not name another host"
    assert not re.search(r"\b(src|href)\s*=", html), "the page loads nothing else"
    assert re.search(r"setTimeout\(poll, POLL_MS\)", html) and "POLL_MS = 2000" in html


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
async def test_dashboard_renders_in_headless_chromium(rig: EdgeRig, serve: Callable[..., Any], tmp_path: Path) -> None:
    admin = await admin_url(rig, serve)
    await a_miss_and_two_hits(rig)
    rig.app.flow.metrics.count_object("site:/a", 5)
    live = rig.app.flow.metrics.live  # one live stream: 3 viewers of one segment fetched once
    live.fetched("/live/show/360p/ep/seg7.m4s")
    for client in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        live.served("/live/show/360p/ep/seg7.m4s", client, 1000)
    proc = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        admin + f"/?token={ADMIN_TOKEN}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    dom, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = dom.decode()
    assert 'data-polls="' in text, "the page never polled /metrics.json"
    assert "66.7 %" in text and "site:/a" in text
    live_row = re.search(r'<table id="live">.*?<tbody>(.*?)</tbody>', text, re.S)
    assert live_row and re.findall(r"<td[^>]*>([^<]*)</td>", live_row.group(1))[:7] == [
        "/live/show",
        "3",
        "0",
        "2.9 KiB",
        "1.00",
        "-",
        "-",
    ]
    state = re.search(r'id="state"[^>]*>([^<]*)<', text)
    assert state and state.group(1).startswith("updated "), state and state.group(1)


def test_cdn_edge_serves_admin_on_its_own_listener(tmp_path: Path) -> None:
    config = tmp_path / "cdn.toml"
    config.write_text(
        '[origins.o]\nurl = "http://127.0.0.1:9"\n'
        f'[edges.e]\nlisten = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\nadmin_token = "{ADMIN_TOKEN}"\n'
        '[distributions.site]\ndomains = ["localhost"]\norigin = "o"\n'
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "web_dist.cli",
            "--log-level",
            "warning",
            "edge",
            "--config",
            str(config),
            "--name",
            "e",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"ready edge e (http://\S+) admin (http://\S+)\n", line)
        assert match, line
        public, admin = match.groups()
        assert public != admin
        assert "cdn_edge_hit_ratio" in httpx.get(admin + "/metrics", headers=AUTH).text
        assert httpx.get(admin + "/metrics").status_code == 401
        assert httpx.get(public + "/_cdn/metrics").status_code == 404
        assert httpx.get(public + "/_cdn/health").json()["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_the_admin_pages_need_the_token(rig: EdgeRig, serve: Callable[..., Any]) -> None:
    admin = await admin_url(rig, serve)
    for path in ("/", "/metrics", "/metrics.json"):
        anonymous = await rig.client.get(admin + path)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer", path
        assert "cdn_edge_" not in anonymous.text and "<svg" not in anonymous.text
        wrong = await rig.client.get(admin + path, headers={"authorization": "Bearer " + "x" * len(ADMIN_TOKEN)})
        assert wrong.status_code == 403, path
    assert (await rig.client.get(admin + "/health")).status_code == 200  # liveness tells nothing
    # Prometheus' bearer_token, a ?token= scrape URL, and a browser's cookie from /?token=
    assert (await rig.client.get(admin + "/metrics", headers=AUTH)).status_code == 200
    assert (await rig.client.get(admin + f"/metrics.json?token={ADMIN_TOKEN}")).status_code == 200
    first = await rig.client.get(admin + f"/?token={ADMIN_TOKEN}")
    assert first.status_code == 303 and first.headers["location"] == "/"
    assert (
        "httponly" in first.headers["set-cookie"].lower() and "samesite=strict" in first.headers["set-cookie"].lower()
    )
    cookie = {"cookie": first.headers["set-cookie"].split(";")[0]}
    assert (await rig.client.get(admin + "/metrics.json", headers=cookie)).status_code == 200


def test_an_admin_app_without_a_long_enough_token_is_refused(rig: EdgeRig) -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        build_admin_app(rig.app.flow)
    with pytest.raises(ValueError, match="at least 16 characters"):
        build_admin_app(rig.app.flow, token="short")


async def test_prometheus_exports_the_edge_response_time_histogram(rig: EdgeRig, serve: Callable[..., Any]) -> None:
    admin = await admin_url(rig, serve)
    await a_miss_and_two_hits(rig)
    got = samples((await rig.client.get(admin + "/metrics", headers=AUTH)).text)
    site = (("distribution", "site"),)
    assert got["cdn_edge_response_seconds_count", site] == 3
    assert got["cdn_edge_response_seconds_bucket", (("distribution", "site"), ("le", "+Inf"))] == 3
    assert got["cdn_edge_response_seconds_bucket", (("distribution", "site"), ("le", "10.0"))] == 3  # loopback
    assert 0 < got["cdn_edge_response_seconds_sum", site] < 3
    assert got["cdn_edge_start_time_seconds", ()] == pytest.approx(rig.app.flow.metrics.started)
    body = (await rig.client.get(admin + "/metrics.json", headers=AUTH)).json()
    assert (
        body["response_seconds"]["count"] == 3
        and 0 < body["response_seconds"]["p50"] <= body["response_seconds"]["p99"]
    )


async def test_the_grafana_dashboard_names_only_metrics_the_edge_exports(
    rig: EdgeRig, serve: Callable[..., Any]
) -> None:
    admin = await admin_url(rig, serve)
    await a_miss_and_two_hits(rig)
    live = rig.app.flow.metrics.live
    live.fetched("/live/show/360p/seg7.m4s")
    live.served("/live/show/360p/seg7.m4s", "viewer", 1000)
    live.webrtc_viewers = lambda: {"/live/show": 1}
    exported = {
        s.name
        for family in text_string_to_metric_families((await rig.client.get(admin + "/metrics", headers=AUTH)).text)
        for s in family.samples
    }
    dashboard = json.loads((REPO / "edge" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    named = {name for e in exprs for name in re.findall(r"\b(?:cdn_edge|process)_[a-z_]+\b", e)}
    assert len(named) >= 15 and {"cdn_edge_response_seconds_bucket", "cdn_edge_origin_seconds_bucket"} <= named
    assert named - exported == set(), "the dashboard asks for metrics the edge does not export"


def test_history_shows_the_last_minutes_from_the_edges_own_samples() -> None:
    now = [1000.0]
    metrics = EdgeMetrics(clock=lambda: now[0])
    for _ in range(60):  # a minute: 10 requests a second, 1 in 10 a miss, one 503 a second
        for n in range(10):
            metrics.count("site", "miss" if n == 0 else "hit", 503 if n == 9 else 200, 1000, 0.002 if n < 9 else 0.4)
        metrics.observe_origin("web", 0.03, 200)
        now[0] += 1
    rows = metrics.snapshot()["history"]
    assert len(rows) == 12 and [r["seconds"] for r in rows[:-1]] == [5.0] * 11  # 12 slots of 5 s
    middle = rows[5]
    assert middle["requests_per_second"] == 10 and middle["bytes_per_second"] == 10_000
    assert middle["hit_ratio"] == pytest.approx(0.9) and middle["errors_per_second"] == 1
    assert middle["statuses_per_second"] == {"2xx": 9, "5xx": 1}
    assert middle["origin_requests_per_second"] == 1 and middle["origin_seconds_mean"] == pytest.approx(0.03)
    assert 0.001 <= middle["response_seconds_p50"] <= 0.0025 and 0.25 <= middle["response_seconds_p95"] <= 0.5
    now[0] += 3600  # an hour idle: the samples are still the last ones the edge kept
    later = metrics.snapshot()["history"]
    assert later[:11] == rows[:11] and later[-1]["requests_per_second"] == 0


def test_history_keeps_a_bounded_ring_of_samples() -> None:
    now = [0.0]
    metrics = EdgeMetrics(clock=lambda: now[0])
    for _ in range(1000):
        metrics.count("site", "hit", 200, 1)
        now[0] += 5
    assert len(metrics.history.samples) == 180 and metrics.history.samples[0]["time"] == (1000 - 180) * 5


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ([0, 0, 0], 0.5, None),  # nothing counted
        ([10, 0, 0], 0.5, 0.5),  # half way through the first bucket (0 .. 1)
        ([0, 10, 0], 0.9, 1.9),  # 1 .. 2
        ([5, 5, 0], 0.5, 1.0),
        ([0, 0, 10], 0.99, 2.0),  # above the last bound: the last bound, as Prometheus says
    ],
)
def test_quantile_of_a_histogram(counts: list[int], q: float, expected: float | None) -> None:
    assert quantile((1.0, 2.0), counts, q) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("live:/live/cam/720p/index.m3u8?_HLS_msn=41&_HLS_part=2", "live:/live/cam/720p/index.m3u8"),
        ("live:/live/cam/720p/seg41.m4s", "live:/live/cam/720p/seg*.m4s"),
        ("live:/live/cam/720p/part41.3.m4s", "live:/live/cam/720p/part*.*.m4s"),
        ("site:/assets/app.3f9a2b1c.js", "site:/assets/app.*.js"),
        ("site:/img/2024/05/a.png|accept=image%2Fwebp", "site:/img/*/*/a.png"),
        ("site:/index.html", "site:/index.html"),
    ],
)
def test_object_patterns(key: str, pattern: str) -> None:
    assert object_pattern(key) == pattern


def test_top_objects_are_grouped_by_pattern_not_twenty_playlist_urls() -> None:
    metrics = EdgeMetrics()
    for msn in range(100):
        for part in range(4):
            metrics.count_object(f"live:/live/cam/720p/index.m3u8?_HLS_msn={msn}&_HLS_part={part}", 500)
            metrics.count_object(f"live:/live/cam/720p/part{msn}.{part}.m4s", 20_000)
        metrics.count_object(f"live:/live/cam/720p/seg{msn}.m4s", 80_000)
    top = metrics.snapshot()["top_patterns"]
    assert top == [
        {"pattern": "live:/live/cam/720p/index.m3u8", "requests": 400, "bytes": 200_000},
        {"pattern": "live:/live/cam/720p/part*.*.m4s", "requests": 400, "bytes": 8_000_000},
        {"pattern": "live:/live/cam/720p/seg*.m4s", "requests": 100, "bytes": 8_000_000},
    ]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
async def test_a_dashboard_opened_now_shows_the_minutes_before_it(
    rig: EdgeRig, serve: Callable[..., Any], tmp_path: Path
) -> None:
    admin = await admin_url(rig, serve)
    metrics = rig.app.flow.metrics
    start = time.time() - 300
    for step in range(60):  # the five minutes before the page opens: 4 requests/s, one 404 in four
        metrics.clock = lambda step=step: start + 5 * step
        for n in range(20):
            metrics.count("site", "hit", 404 if n % 4 == 0 else 200, 2048, 0.004)
    metrics.clock = time.time
    proc = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        admin + f"/?token={ADMIN_TOKEN}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    dom, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = dom.decode()
    assert 'data-polls="' in text, "the page never polled /metrics.json"
    charts = {m.group(1): m.group(2) for m in re.finditer(r'<svg id="([a-z-]+)"[^>]*>(.*?)</svg>', text, re.S)}
    lines = re.findall(r'<polyline points="([^"]*)"', charts["rps-chart"])
    assert len(lines) == 2 and all(len(points.split()) >= 55 for points in lines), "2xx and 4xx over five minutes"
    # 15 2xx and 5 404s every 5 s: lines at 3/s and 1/s, on an axis up to 3.3/s (10 % headroom)
    heights = [Counter(130 - float(p.split(",")[1]) for p in points.split()).most_common(1)[0][0] for points in lines]
    assert heights[0] == pytest.approx(3 * heights[1], rel=0.02) and ">3.30/s<" in charts["rps-chart"]
    assert re.search(r">2xx<.*>4xx<", text, re.S), "the legend names the status classes"
    assert ">8.8 KiB/s<" in charts["bw-chart"], "8 KiB a second, on an axis with units"
    assert re.search(r'id="bw">[0-9.]+ (B|KiB)/s<', text)
    assert re.search(r"\d\d:\d\d:\d\d", charts["bw-chart"]), "the time axis says when"
    assert re.search(r"history of the last (4|5) min", text), re.search(r'id="uptime"[^>]*>([^<]*)<', text)
