"""The player pages through an edge, in headless Chromium: what a viewer of the demo sees.

The stream is the demo's test pattern (1 s segments, 0.25 s parts) from the media origin,
through edge-lon; the pages come from the player origin through the same edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import RENDITIONS, DemoCdn, record_problems

PLAY_SECONDS = 5.0  # playback must advance this much...
PLAY_LIMIT_MS = 45_000  # ...within this long (the machine is shared: generous, never a speed test)
LATENCY_BOUND = 4.0  # LL-HLS: seconds behind live the player may report
WEBRTC_LATENCY_BOUND = 1.5  # WebRTC: seconds from the edge's send to the screen (0.05-0.2 s seen)
STATS = "window.playerStats"


async def open_player(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A page on `url` that records console errors and failed requests."""
    page = await (await browser.new_context()).new_page()
    problems = record_problems(page)
    await page.goto(url)
    return page, problems


async def stats(page: Any) -> dict[str, Any]:
    value: dict[str, Any] = await page.evaluate(f"({{...{STATS}}})")
    return value


async def wait_playing(page: Any) -> float:
    """Wait for playback to start; the currentTime it started at."""
    await page.wait_for_function(f"{STATS}.state === 'playing' || {STATS}.errors.length > 0", timeout=PLAY_LIMIT_MS)
    now = await stats(page)
    assert now["errors"] == [], now
    return float(now["currentTime"])


async def test_list_page_links_the_demo_stream(browser: Any, demo_cdn: DemoCdn) -> None:
    page, problems = await open_player(browser, demo_cdn.live_url() + "/")
    row = page.locator('tr[data-stream="test"]')
    await row.wait_for(timeout=15_000)
    assert "live" in await row.inner_text()
    links = [await a.get_attribute("href") for a in await row.locator("a").all()]
    assert links == ["/watch/test", "/watch/test?mode=hls", "/watch/test?mode=webrtc", "/watch/test?mode=dash"]
    assert problems == []


async def test_hls_plays_through_the_edge_and_the_second_viewer_gets_cache_hits(
    browser: Any,
    demo_cdn: DemoCdn,
    artifacts: Path,
) -> None:
    url = demo_cdn.live_url() + "/watch/test?mode=hls"
    first, first_problems = await open_player(browser, url)
    await wait_playing(first)
    playing_since = time.monotonic()
    second, second_problems = await open_player(browser, url)  # a second viewer on the same edge
    # played, not skipped ahead: video.played only grows with playback
    await first.wait_for_function(f"{STATS}.playedSeconds >= {PLAY_SECONDS}", timeout=PLAY_LIMIT_MS)
    seen = await stats(first)
    assert seen["framesDecoded"] > 0
    # "watched" is the time spent playing, never more than the time since playback began (the
    # media position of a live stream starts wherever the live edge was)
    since = time.monotonic() - playing_since
    assert since / 2 < seen["watchedSeconds"] <= since + 0.5, (since, seen)
    await wait_playing(second)
    await second.wait_for_function(f"{STATS}.fragmentHits >= 1", timeout=PLAY_LIMIT_MS)
    await first.screenshot(path=artifacts / "player-hls.png")
    one, two = await stats(first), await stats(second)
    for seen in (one, two):
        assert seen["errors"] == [] and seen["edge"] == "edge-lon", seen
        assert seen["rendition"] in RENDITIONS.values() and seen["bitrate"] > 0, seen
        assert seen["fragments"] >= 1 and seen["cacheStatus"].startswith("edge-lon;"), seen
    assert two["fragmentHits"] >= 1, two
    assert first_problems == [] and second_problems == []
    panel = await first.locator("#stats").inner_text()
    assert "edge-lon" in panel and one["rendition"] in panel and re.search(r"watched \d+\.\d s", panel), panel
    # two players from one address and browser are two viewers on the edge's dashboard
    dashboard = await (await browser.new_context()).new_page()
    await dashboard.goto(demo_cdn.admin_url("edge-lon"))
    # (`cdn up`'s own check of the stream is a viewer too until it has been gone for the window)
    cells: list[str] = []
    for _ in range(60):  # the page's script policy allows no wait_for_function: look every 0.5 s
        row = dashboard.locator("#live tbody tr", has=dashboard.locator("td", has_text="/live/test")).first
        cells = await row.locator("td").all_inner_texts() if await row.count() else []
        if cells[:2] == ["/live/test", "2"]:
            break
        await dashboard.wait_for_timeout(500)
    assert cells[:2] == ["/live/test", "2"], cells


async def test_a_rendition_switch_shows_on_the_page(browser: Any, demo_cdn: DemoCdn) -> None:
    page, problems = await open_player(browser, demo_cdn.live_url() + "/watch/test?mode=hls")
    await wait_playing(page)
    await page.wait_for_function(f"{STATS}.rendition !== null", timeout=PLAY_LIMIT_MS)
    playing = (await stats(page))["rendition"]
    other = next(size for size in RENDITIONS.values() if size != playing)
    index = await page.evaluate(f"hls.levels.findIndex((l) => `${{l.width}}x${{l.height}}` === '{other}')")
    await page.evaluate(f"hls.currentLevel = {index}")  # what a viewer's quality menu would do
    await page.wait_for_function(f"{STATS}.rendition === '{other}'", timeout=PLAY_LIMIT_MS)
    start = (await stats(page))["playedSeconds"]
    await page.wait_for_function(f"{STATS}.playedSeconds >= {start + 2}", timeout=PLAY_LIMIT_MS)
    seen = await stats(page)
    assert seen["errors"] == [] and problems == [], (seen, problems)
    assert other in await page.locator("#stats").inner_text()


async def test_ll_hls_stays_close_to_live(browser: Any, demo_cdn: DemoCdn, artifacts: Path) -> None:
    page, problems = await open_player(browser, demo_cdn.live_url("edge-syd") + "/watch/test")
    start = await wait_playing(page)
    await page.wait_for_function(
        f"{STATS}.currentTime >= {start + 2} && {STATS}.latency !== null", timeout=PLAY_LIMIT_MS
    )
    # On a loaded machine the start can stall and hls.js then jumps back to live: from there on
    # (a bounded wait) the latency must stay under the bound.
    await page.wait_for_function(f"{STATS}.latency < {LATENCY_BOUND}", timeout=PLAY_LIMIT_MS)
    samples = []
    for _ in range(10):  # 5 s of playback, sampled twice a second
        samples.append((await stats(page))["latency"])
        await page.wait_for_timeout(500)
    await page.screenshot(path=artifacts / "player-llhls.png")
    seen = await stats(page)
    assert seen["mode"] == "llhls" and seen["parts"] > 0, seen  # it really fetched LL-HLS parts
    assert seen["edge"] == "edge-syd", seen
    assert seen["errors"] == [] and problems == [], (seen, problems)
    assert all(s is not None and 0 <= s < LATENCY_BOUND for s in samples), samples
    assert seen["latencySource"] == "program-date-time", seen
    panel = await page.locator("#stats").inner_text()
    assert re.search(r"Behind live\s+\d\.\d\d s \(frame's program date time", panel), panel
    assert seen["currentTime"] > start + 4


async def test_webrtc_player_decodes_frames(browser: Any, demo_cdn: DemoCdn, artifacts: Path) -> None:
    base = demo_cdn.live_url()
    with demo_cdn.live_client() as http:
        probe = http.post("/whep/test", content=b"v=0\r\n", headers={"content-type": "application/sdp"})
    if probe.status_code in (404, 405):
        pytest.skip(f"the edge has no WHEP endpoint yet: POST /whep/test answered {probe.status_code}")
    page, problems = await open_player(browser, base + "/watch/test?mode=webrtc")
    await page.wait_for_function(f"{STATS}.framesDecoded > 0 || {STATS}.errors.length > 0", timeout=PLAY_LIMIT_MS)
    await page.wait_for_function(f"{STATS}.currentTime > 1 || {STATS}.errors.length > 0", timeout=PLAY_LIMIT_MS)
    await page.wait_for_function(f"{STATS}.latencySource !== null || {STATS}.errors.length > 0", timeout=PLAY_LIMIT_MS)
    await page.wait_for_function(
        "document.querySelector('[data-stat=latency]').textContent.includes('sent it')", timeout=PLAY_LIMIT_MS
    )  # the panel is redrawn twice a second
    await page.screenshot(path=artifacts / "player-webrtc.png")
    seen = await stats(page)
    # behind live from the edge's RTCP sender reports: the network, the jitter buffer and the
    # decoder on loopback, so more than the jitter buffer alone and well under a second
    assert seen["latencySource"] == "rtcp-sender-report", seen
    assert 0 < seen["jitterBuffer"] <= seen["latency"] < WEBRTC_LATENCY_BOUND, seen
    panel = await page.locator("#stats").inner_text()
    assert "since the edge sent it" in panel and "-0." not in panel, panel
    assert seen["errors"] == [] and seen["framesDecoded"] > 0, seen
    assert seen["rendition"] in RENDITIONS.values() and seen["edge"] == "edge-lon", seen
    assert seen["whepResource"], seen
    assert problems == []


async def test_webrtc_player_reconnects_by_itself_when_the_stream_restarts(browser: Any, demo_cdn: DemoCdn) -> None:
    """The publisher of the demo's RTMP stream leaves (the edge ends the WebRTC session) and
    comes back: the page offers again, unattended, and plays the new session."""
    from tests.origin_media.conftest import finish, start_publisher

    publishers = [await start_publisher(demo_cdn.rtmp_url(), 60)]
    try:
        with demo_cdn.live_client() as http:
            await until_live(http, "/live/cam/master.m3u8")
        # while the stream is away, the edge answers the page's offers 404 (not live) or 502;
        # the page hangs up (DELETE) each session it leaves, which the edge may have ended: 404
        page = await (await browser.new_context()).new_page()
        problems = record_problems(
            page, allow=re.compile(r"HTTP (404|50[234]): POST .*/whep/cam$|HTTP 404: DELETE .*/whep/cam/[\w-]+$")
        )
        await page.goto(demo_cdn.live_url() + "/watch/cam?mode=webrtc")
        await page.wait_for_function(f"{STATS}.framesDecoded > 10 || {STATS}.errors.length > 0", timeout=PLAY_LIMIT_MS)
        first = await stats(page)
        assert first["errors"] == [] and first["whepSessions"] == 1, first
        publishers[0].kill()
        await finish(publishers[0])
        publishers.append(await start_publisher(demo_cdn.rtmp_url(), 60))
        await page.wait_for_function(
            f"({STATS}.whepSessions > 1 && {STATS}.framesDecoded > 10) || {STATS}.errors.length > 0",
            timeout=PLAY_LIMIT_MS,
        )
        again = await stats(page)
        assert again["errors"] == [] and again["reconnects"] >= 1, again
        assert again["whepResource"] != first["whepResource"] and again["state"] == "playing", again
        assert problems == []
    finally:
        for publisher in publishers:
            with contextlib.suppress(ProcessLookupError):
                publisher.kill()
            await finish(publisher)


async def until_live(http: Any, path: str) -> None:
    for _ in range(300):
        if http.get(path).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} did not go live")


def test_a_bad_stream_name_is_a_clear_404(demo_cdn: DemoCdn) -> None:
    with demo_cdn.live_client() as http:
        response = http.get("/watch/no%20such")
        library = http.get("/player/hls.js")
    assert response.status_code == 404 and "letters, digits" in response.text
    assert library.status_code == 200 and "cache-status" in library.headers


def test_cdn_up_prints_the_watch_url(demo_cdn: DemoCdn) -> None:
    port = demo_cdn.ports["edge-lon"]
    opened = re.search(
        rf"distribution live \(streaming\): open (https://live\.localhost:\d+/) \(or http://live\.localhost:{port}/\)",
        demo_cdn.printed,
    )
    assert opened, demo_cdn.printed  # HTTPS first (the demo's local CA), plain HTTP beside it
    assert f"watch test: {opened.group(1)}watch/test  (LL-HLS; ?mode=hls, ?mode=webrtc, ?mode=dash)" in demo_cdn.printed


@pytest.mark.parametrize("mode", ["llhls", "webrtc"])
async def test_a_stream_that_does_not_exist_says_so_on_the_page(browser: Any, demo_cdn: DemoCdn, mode: str) -> None:
    page, _ = await open_player(browser, demo_cdn.live_url() + f"/watch/nosuch?mode={mode}")
    await page.wait_for_function(f"{STATS}.errors.length > 0", timeout=PLAY_LIMIT_MS)
    shown = await page.text_content("#message") or ""
    assert "404" in shown, shown
    assert (await stats(page))["state"] == "error"
