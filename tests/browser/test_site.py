"""The demo site through an edge, in headless Chromium: every page renders with nothing
broken, and the large download resumes with a range request answered by the edge."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.browser.conftest import DemoCdn, record_problems

PAGES = {"home": "/", "docs": "/docs/", "download": "/download/"}
DOWNLOAD = "/download/sample-20MB.bin"
RESUME_AT = 15 * 1024 * 1024  # as if the first 15 MiB had arrived before the connection broke


async def test_every_page_renders_through_the_edge(browser: Any, demo_cdn: DemoCdn, artifacts: Path) -> None:
    page = await browser.new_page()
    problems = record_problems(page)
    for name, path in PAGES.items():
        response = await page.goto(demo_cdn.site_url() + path, wait_until="networkidle")
        assert response is not None and response.status == 200, (path, response and response.status)
        assert (await response.header_value("cache-status") or "").startswith("edge-lon;")
        await page.screenshot(path=artifacts / f"site-{name}.png", full_page=True)
    assert problems == []


async def test_home_page_shows_its_image_and_how_the_edge_served_it(browser: Any, demo_cdn: DemoCdn) -> None:
    page = await browser.new_page()
    problems = record_problems(page)
    await page.goto(demo_cdn.site_url() + "/", wait_until="networkidle")
    await page.wait_for_function("!document.getElementById('status').textContent.includes('…')")
    assert (await page.text_content("#status") or "").startswith("edge-lon; ")
    width = await page.evaluate("document.querySelector('img.hero').naturalWidth")
    assert width == 480  # the generated gradient arrived whole and decoded
    assert problems == []


async def test_the_download_resumes_with_a_range_request(browser: Any, demo_cdn: DemoCdn) -> None:
    page = await browser.new_page()
    problems = record_problems(page)
    await page.goto(demo_cdn.site_url() + "/download/")
    answer = await page.evaluate(
        """async ([url, from]) => {
             const r = await fetch(url, { headers: { Range: `bytes=${from}-` } });
             const body = await r.arrayBuffer();
             const digest = await crypto.subtle.digest("SHA-256", body);
             return { status: r.status, range: r.headers.get("content-range"), length: body.byteLength,
                      cache: r.headers.get("cache-status"),
                      sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("") };
           }""",
        [DOWNLOAD, RESUME_AT],
    )
    whole = (demo_cdn.site / DOWNLOAD.lstrip("/")).read_bytes()
    assert answer["status"] == 206, answer
    assert answer["range"] == f"bytes {RESUME_AT}-{len(whole) - 1}/{len(whole)}"
    assert answer["length"] == len(whole) - RESUME_AT
    assert answer["sha256"] == hashlib.sha256(whole[RESUME_AT:]).hexdigest()  # the right bytes
    assert answer["cache"].startswith("edge-lon;"), answer
    assert problems == []
