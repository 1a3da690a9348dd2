"""`?mode=dash`: dash.js in headless Chromium plays the media origin's MPD through an edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import RENDITIONS, DemoCdn
from tests.browser.test_player import (
    PLAY_LIMIT_MS,
    PLAY_SECONDS,
    STATS,
    open_player,
    stats,
    wait_playing,
)


async def test_dash_plays_through_the_edge(browser: Any, demo_cdn: DemoCdn, artifacts: Path) -> None:
    page, problems = await open_player(browser, demo_cdn.live_url() + "/watch/test?mode=dash")
    await wait_playing(page)
    await page.wait_for_function(
        f"{STATS}.playedSeconds >= {PLAY_SECONDS} || {STATS}.errors.length > 0", timeout=PLAY_LIMIT_MS
    )
    await page.screenshot(path=artifacts / "player-dash.png")
    seen = await stats(page)
    assert seen["errors"] == [] and problems == [], (seen, problems)
    assert seen["framesDecoded"] > 0 and seen["playedSeconds"] >= PLAY_SECONDS, seen
    # segments (one track each) came through edge-lon, and the player knows what it plays
    assert seen["fragments"] >= 2 and seen["cacheStatus"].startswith("edge-lon;"), seen
    assert seen["rendition"] in RENDITIONS.values() and seen["bitrate"] > 0, seen
    tracks = await page.evaluate("dashPlayer.getTracksFor('audio').length")
    assert tracks == 1  # sound too: dash.js took the audio AdaptationSet
    assert "DASH (dash.js)" in await page.locator("#stats").inner_text()


async def test_dash_of_a_stream_that_does_not_exist_says_so(browser: Any, demo_cdn: DemoCdn) -> None:
    page, _ = await open_player(browser, demo_cdn.live_url() + "/watch/nosuch?mode=dash")
    await page.wait_for_function(f"{STATS}.errors.length > 0", timeout=PLAY_LIMIT_MS)
    assert (await stats(page))["state"] == "error"
    assert "dash.js error" in (await page.text_content("#message") or "")
