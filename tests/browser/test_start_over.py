"""Start-over on the watch page: seek back within what the stream keeps (its playlist window,
`dvr_seconds` long when set), play from there, and back to live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import DemoCdn
from tests.browser.test_player import PLAY_LIMIT_MS, STATS, open_player, stats, wait_playing

DVR = f"{STATS}.dvr"


async def test_start_over_seeks_back_in_the_window_and_live_returns(
    browser: Any,
    demo_cdn: DemoCdn,
    artifacts: Path,
) -> None:
    page, problems = await open_player(browser, demo_cdn.live_url() + "/watch/test?mode=hls")
    await wait_playing(page)
    # the demo keeps 12 s (window_seconds): wait until the player has most of it to seek in and
    # plays near live (a loaded machine can leave it behind, with no room to go further back)
    await page.wait_for_function(
        f"{DVR} && {DVR}.window >= 8 && {DVR}.behind <= {DVR}.window - 7", timeout=PLAY_LIMIT_MS
    )
    near_live = (await stats(page))["dvr"]["behind"]
    await page.click('[data-dvr="start"]')
    await page.wait_for_function(f"{DVR}.behind >= {near_live} + 4", timeout=PLAY_LIMIT_MS)
    back = await stats(page)
    # it plays on from there (video.played grows), well behind live by the program date time
    await page.wait_for_function(
        f"{STATS}.playedSeconds >= {back['playedSeconds']} + 2 && {STATS}.state === 'playing'", timeout=PLAY_LIMIT_MS
    )
    seen = await stats(page)
    assert seen["latency"] is not None and seen["latency"] >= near_live + 3, seen
    assert "behind the newest" in await page.locator("#dvr").inner_text()
    await page.screenshot(path=artifacts / "player-start-over.png")
    await page.click('[data-dvr="live"]')
    await page.wait_for_function(f"{DVR}.behind < {near_live} + 2", timeout=PLAY_LIMIT_MS)
    seen = await stats(page)
    assert seen["errors"] == [] and problems == [], (seen, problems)


async def test_webrtc_has_no_seek_bar(browser: Any, demo_cdn: DemoCdn) -> None:
    page, _ = await open_player(browser, demo_cdn.live_url() + "/watch/test?mode=webrtc")
    await page.wait_for_load_state()
    assert await page.locator("#dvr").count() == 0
