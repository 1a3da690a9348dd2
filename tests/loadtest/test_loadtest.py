"""The load tester against a real media origin and edge on loopback."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from streaming.loadtest import LoadPlan, run_load
from streaming.report import render_html, summarize

from .conftest import MASTER, STREAM, Stack

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()


async def test_a_few_dozen_viewers_play_through_the_edge_without_stalls(make_stack: Callable[..., Any]) -> None:
    stack: Stack = await make_stack()
    edge = stack.edges[0]
    plan = LoadPlan((edge.url,), MASTER, viewers=30, duration=10, ramp=15, metrics=(edge.metrics,))
    run = await run_load(plan, progress=None)
    figures = summarize(run)
    assert figures["viewers_started"] == 30
    # thirty sessions from one address are thirty viewers on the edge (CMCD session ids)
    live = run.metrics_after[edge.metrics]["live"]
    assert [stream["viewers"] for stream in live.values()] == [30]
    assert figures["startup"]["never_started"] == 0
    assert figures["stalls"] == 0 and figures["stall_ratio"] == 0
    assert figures["errors"] == {}
    assert figures["media_fetches"] > 30 * 5  # parts of 0.5 s, followed live for seconds
    assert figures["segment_seconds"] == pytest.approx(2.0, abs=0.1)
    assert 0 < figures["latency_p50"] < 6  # behind live by about the part hold-back
    [row] = figures["edges"]
    # the edge saw every request the viewers completed, plus at most the two each had in flight
    # (a held blocking reload and a held preload-hinted part) when the run's time was up
    assert row["edge"] == "edge-0" and figures["requests"] <= row["requests"] <= figures["requests"] + 60
    # coalescing at the edge: the origin sees a small share of what the viewers asked for
    assert 0 < figures["origin_requests"] < figures["requests"] / 5
    assert figures["series"] and max(s["active"] for s in figures["series"]) == 30


async def test_viewers_at_the_live_edge_get_each_part_by_its_preload_hint(make_stack: Callable[..., Any]) -> None:
    """As LL-HLS players do: the hinted part is asked for with the blocking reload, held by the
    edge and origin until it exists, and is already there when the playlist lists it."""
    stack: Stack = await make_stack()
    edge = stack.edges[0]
    plan = LoadPlan((edge.url,), MASTER, viewers=6, duration=6, ramp=20, metrics=(edge.metrics,))
    run = await run_load(plan, progress=None)
    figures = summarize(run)
    assert figures["errors"] == {} and figures["stalls"] == 0
    # a viewer starts at an independent part 1.5 s (PART-HOLD-BACK) or more behind live: at
    # most 7 listed parts of 0.5 s with a keyframe every 2 s segment; from there on, hints
    assert run.tally.hinted >= figures["media_fetches"] - 6 * 7 > 0, (run.tally.hinted, figures["media_fetches"])
    assert run.tally.hint_misses == 0
    assert figures["fetch_p50"] < 0.05  # nothing left to wait for once it is listed
    # one origin request per part and playlist version, however many viewers held it
    assert figures["origin_requests"] < figures["requests"] / 4


async def test_stopping_the_edge_midway_shows_the_stalls_and_errors_it_caused(
    make_stack: Callable[..., Any],
) -> None:
    stack: Stack = await make_stack()
    edge = stack.edges[0]
    plan = LoadPlan((edge.url,), MASTER, viewers=20, duration=12, ramp=20, metrics=(edge.metrics,))
    run_task = asyncio.create_task(run_load(plan, progress=None))
    await asyncio.sleep(4)  # the scenario's own timeline: the edge goes away mid-run
    await edge.public.stop()
    done = await run_task
    figures = summarize(done)
    assert figures["startup"]["never_started"] == 0
    assert figures["stalls"] >= 20, "every viewer stalls once its buffer runs dry"
    assert figures["stall_ratio"] > 0.1
    assert figures["errors"].get("connection refused", 0) > 0, figures["errors"]
    # the report says where: which edge and which URL refused
    refused = [s for s in done.tally.error_report() if s["kind"] == "connection refused"]
    assert refused and all(s["edge"] == edge.url.removeprefix("http://") for s in refused), refused
    assert all(str(s["url"]).startswith(f"{edge.url}/") for s in refused), refused
    page = render_html({"runs": [figures | {"error_sources": done.tally.error_report()}], "checks": [], "failed": []})
    assert (
        f"<td>{edge.url.removeprefix('http://')}</td><td>{html.escape(str(refused[0]['url']))}</td>" in page
    )  # in HTML too
    stalled_at_end = figures["series"][-1]["stalled"]
    assert stalled_at_end == 20


async def _cdn(*args: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "web_dist.cli",
        "--log-level",
        "warning",
        "loadtest",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_compare_writes_both_runs_and_a_threshold_gives_exit_code_3(
    make_stack: Callable[..., Any],
    tmp_path: Path,
) -> None:
    stack: Stack = await make_stack()
    edge = stack.edges[0]
    code, out, err = await _cdn(
        "--compare",
        "--origin",
        stack.origin.url,
        "--edge",
        edge.url,
        "--metrics",
        edge.metrics,
        "--path",
        MASTER,
        "--viewers",
        "6",
        "--duration",
        "4",
        "--ramp",
        "20",
        "--max-p95-startup",
        "0.000001",
        "--max-stall-ratio",
        "0.5",
        cwd=tmp_path,
    )
    assert code == 3, (out, err)
    assert "threshold exceeded: p95 startup" in out and "stall ratio" not in out.split("threshold")[1]
    assert "viewers" in err and "req/s" in err  # the progress line
    result = json.loads((tmp_path / "loadtest.json").read_text())
    origin_run, edge_run = result["runs"]
    assert (origin_run["label"], edge_run["label"]) == ("origin", "edges")
    assert origin_run["viewers_by_host"] == {stack.origin.url.removeprefix("http://"): 6}
    assert result["comparison"]["offload"] > 0.5
    assert result["failed"] and result["failed"][0].startswith("p95 startup")
    html = (tmp_path / "loadtest.html").read_text()
    assert "Thresholds exceeded" in html and html.count("<svg") >= 10
    # what was run: the command, the targets, the stream and the load's shape
    assert f"cdn --log-level warning loadtest --compare --origin {stack.origin.url}" in html
    assert f"<th>edges: targets</th><td>{edge.url}</td>" in html and f"<td>{MASTER}</td>" in html
    assert "6 viewers, started 20 a second, for 4 s" in html and re.search(r"<th>date</th><td>20\d\d-", html)
    # each threshold with its limit, the value and pass or fail
    startup = edge_run["startup"]["p95"]
    assert (
        f"<td>p95 startup (s)</td><td><code>--max-p95-startup</code></td><td>1e-06</td><td>{startup:g}</td>"
        "<td class=fail>FAIL</td>"
    ) in html
    assert re.search(
        r"<td>stall ratio</td><td><code>--max-stall-ratio</code></td><td>0.5</td><td>[0-9.e-]+</td>"
        r"<td class=pass>pass</td>",
        html,
    )
    assert re.search(r"<th>edges: media fetch \(s\)</th>(<td>[0-9.]+</td>){5}</tr>", html), "p50 p90 p95 p99 max"
    assert "latency and p95 fetch time over time" in html and 'aria-label="viewers and requests per second"' in html
    two_axes = html.split('aria-label="viewers and requests per second"')[1].split("</svg>")[0]
    assert ">viewers</text>" in two_axes and ">requests / s</text>" in two_axes
    assert "http://" not in html.split("<main>")[0] and "<script" not in html


async def test_thresholds_met_exit_0_and_the_report_opens_in_chromium(
    make_stack: Callable[..., Any],
    tmp_path: Path,
) -> None:
    stack: Stack = await make_stack()
    edge = stack.edges[0]
    code, out, err = await _cdn(
        "--edge",
        edge.url,
        "--metrics",
        edge.metrics,
        "--path",
        MASTER,
        "--viewers",
        "5",
        "--duration",
        "4",
        "--max-stall-ratio",
        "0.5",
        "--max-p95-startup",
        "30",
        "--json",
        "r.json",
        "--html",
        "r.html",
        "--quiet",
        cwd=tmp_path,
    )
    assert code == 0, (out, err)
    assert err == ""
    assert json.loads((tmp_path / "r.json").read_text())["failed"] == []
    if not HAVE_CHROMIUM:
        pytest.skip("/usr/bin/chromium is not installed")
    problems = await _open_in_chromium(tmp_path / "r.html")
    assert problems["errors"] == [], problems
    assert problems["charts"] >= 6 and "All thresholds met" in problems["text"]


async def _open_in_chromium(page_file: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    errors: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = await browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request {r.url}"))
            await page.goto(page_file.as_uri())
            charts = await page.locator("svg").count()
            text = await page.inner_text("body")
        finally:
            await browser.close()
    return {"errors": errors, "charts": charts, "text": text}


async def test_web_mode_spreads_requests_by_zipf_popularity(serve: Callable[..., Any], tmp_path: Path) -> None:
    from edge.app import build_admin_app, build_edge_app
    from web_dist.config import parse_config
    from web_dist.origin import build_origin_app

    site = tmp_path / "site"
    site.mkdir()
    objects = [f"/o{i}.txt" for i in range(20)]
    for path in objects:
        (site / path[1:]).write_bytes(path.encode() * 100)
    origin = await serve(build_origin_app(site, name="site"), name="origin")
    config = parse_config(
        {
            "origins": {"site": {"url": origin.url}},
            "edges": {"edge-w": {"listen": "127.0.0.1:0"}},
            "distributions": {
                "site": {"domains": ["127.0.0.1"], "origin": "site", "default_behavior": {"default_ttl": 3600}}
            },
        }
    )
    app = build_edge_app(config, "edge-w")
    admin = await serve(build_admin_app(app.flow, token="admin-token-for-tests-0123"), name="admin")
    edge = await serve(app, name="edge")
    plan = LoadPlan(
        (edge.url,),
        viewers=20,
        duration=3,
        ramp=100,
        mode="web",
        objects=tuple(objects),
        think=0.02,
        metrics=(admin.url + "/metrics.json?token=admin-token-for-tests-0123",),
    )
    figures = summarize(await run_load(plan, progress=None))
    assert figures["errors"] == {} and figures["requests"] > 200
    # every object is fetched from the origin once; everything after is a hit
    assert figures["origin_requests"] <= len(objects)
    assert figures["client_hit_ratio"] > 0.8
    async with httpx.AsyncClient() as http:
        top = (await http.get(admin.url + "/metrics.json?token=admin-token-for-tests-0123")).json()["top_objects"]
    assert top[0]["key"].endswith("/o0.txt") and top[0]["requests"] > top[5]["requests"]


async def test_viewers_spread_over_edges_and_follow_the_router(make_stack: Callable[..., Any]) -> None:
    stack: Stack = await make_stack(edges=2, router=True)
    urls = tuple(e.url for e in stack.edges)
    hosts = {u.removeprefix("http://") for u in urls}
    metrics = tuple(e.metrics for e in stack.edges)
    spread = summarize(
        await run_load(LoadPlan(urls, MASTER, viewers=8, duration=4, ramp=50, metrics=metrics), progress=None)
    )
    assert spread["viewers_by_host"] == dict.fromkeys(sorted(hosts), 4)
    assert [e["edge"] for e in spread["edges"]] == ["edge-0", "edge-1"]
    assert all(e["requests"] > 0 for e in spread["edges"])
    assert stack.router is not None
    routed = summarize(
        await run_load(LoadPlan((stack.router.url,), MASTER, viewers=8, duration=4, ramp=50), progress=None)
    )
    assert routed["errors"] == {} and routed["startup"]["never_started"] == 0
    assert set(routed["viewers_by_host"]) <= hosts  # each viewer played from the edge the 302 named


async def test_viewers_follow_a_router_to_edge_names_under_localhost(make_stack: Callable[..., Any]) -> None:
    """With `edge_hostnames` the router sends viewers to "edge-0.localhost:PORT": a name only
    RFC 6761 resolves (to loopback, as browsers do); the edge takes it as its distribution's."""
    stack: Stack = await make_stack(edges=1, router={"edge_hostnames": True})
    assert stack.router is not None
    port = stack.edges[0].public.port
    plan = LoadPlan((f"http://localhost:{stack.router.port}",), MASTER, viewers=4, duration=4, ramp=50)
    routed = summarize(await run_load(plan, progress=None))
    assert routed["errors"] == {} and routed["startup"]["never_started"] == 0
    assert set(routed["viewers_by_host"]) == {f"edge-0.localhost:{port}"}


async def test_a_two_rendition_ladder_plays_through_the_edge(make_stack: Callable[..., Any]) -> None:
    ladder = {
        **STREAM,
        "renditions": [
            {"name": "lo", "width": 160, "height": 90, "bitrate": 100_000},
            {"name": "hi", "width": 320, "height": 180, "bitrate": 300_000},
        ],
    }
    stack: Stack = await make_stack(stream=ladder)
    edge = stack.edges[0]
    plan = LoadPlan((edge.url,), MASTER, viewers=12, duration=6, ramp=50, metrics=(edge.metrics,))
    figures = summarize(await run_load(plan, progress=None))
    assert figures["errors"] == {} and figures["startup"]["never_started"] == 0
    assert set(figures["renditions"]) <= {"160x90", "320x180"}
    # they start on the first listed rung and, loopback being fast, move up at a segment's end
    assert figures["renditions"].get("320x180", 0) == 12 and figures["switches"] >= 12, figures["renditions"]
    assert figures["media_fetches"] >= 12 * 4
    assert figures["origin_requests"] < figures["requests"] / 3
