"""The watch page in headless Chromium through an edge: glass-to-glass latency per mode.

    .venv/bin/python -m bench.player_latency [--seconds 20] [--modes llhls,hls,webrtc]

Starts the demo CDN as `make run` does (`cdn up` on demo/cdn.toml, listeners on free ports,
the demo's 640x360 + 320x180 ladder), opens /watch/test?mode=M on edge-lon, and twice a second
draws the frame showing into a canvas: the wall clock the test pattern burned into it at
capture is read back (bench.webrtc_relay.read_clock) and subtracted from Date.now() at the
draw. Also printed: startup (navigation to the first frame playing), the latency the page
itself reports, stalls, and the share of media responses the edge answered from its cache.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av

from bench.procs import machine_load
from bench.webrtc_relay import read_clock, self_check
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DemoCdn, running_demo

# The top quarter of the frame holds the clock; only its red channel crosses the CDP pipe.
GRAB = """() => {
  const v = document.getElementById("video");
  if (!v.videoWidth) return null;
  const w = v.videoWidth, h = Math.ceil(v.videoHeight / 4);
  const canvas = Object.assign(document.createElement("canvas"), { width: w, height: h });
  const g = canvas.getContext("2d", { willReadFrequently: true });
  g.drawImage(v, 0, 0);
  const now = Date.now();
  const rgba = g.getImageData(0, 0, w, h).data;
  let text = "";
  for (let i = 0; i < rgba.length; i += 4) text += String.fromCharCode(rgba[i]);
  return { w, h, now, red: btoa(text), page: window.playerStats.latency };
}"""


def clock_latency(grab: dict[str, Any]) -> float | None:
    """Seconds between the burned-in capture clock and the browser's clock at the draw."""
    frame = av.VideoFrame(grab["w"], grab["h"], "gray")
    plane, red = frame.planes[0], base64.b64decode(grab["red"])
    rows = [red[y * grab["w"] : (y + 1) * grab["w"]].ljust(plane.line_size, b"\0") for y in range(grab["h"])]
    plane.update(b"".join(rows))
    captured = read_clock(frame)
    if captured is None:
        return None
    return (grab["now"] / 1000 - captured + 43200) % 86400 - 43200  # across midnight too


async def watch(browser: Any, demo: DemoCdn, mode: str, seconds: float) -> dict[str, Any]:
    page = await (await browser.new_context()).new_page()
    began = time.monotonic()
    await page.goto(f"{demo.live_url()}/watch/test?mode={mode}")
    await page.wait_for_function(
        "window.playerStats.state === 'playing' || window.playerStats.errors.length", timeout=60_000
    )
    startup = time.monotonic() - began
    clock: list[float] = []
    reported: list[float] = []
    unread = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        grab = await page.evaluate(GRAB)
        latency = clock_latency(grab) if grab else None
        if latency is None:
            unread += 1
        else:
            clock.append(latency)
        if grab and grab["page"] is not None:
            reported.append(grab["page"])
        await asyncio.sleep(0.5)
    stats = await page.evaluate("({...window.playerStats})")
    await page.context.close()
    return {"mode": mode, "startup": startup, "clock": clock, "reported": reported, "unread": unread, "stats": stats}


def summary(result: dict[str, Any]) -> str:
    def spread(values: list[float]) -> str:
        if not values:
            return "-"
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return f"{statistics.median(ordered):.2f} / {p95:.2f} / {ordered[-1]:.2f}"

    s = result["stats"]
    hits = f"{s['fragmentHits']}/{s['fragments']}" if result["mode"] != "webrtc" else "-"
    return (
        f"{result['mode']:<7} {result['startup']:>6.2f} s  {spread(result['clock']):>20}  "
        f"{spread(result['reported']):>20}  {s['stalls']:>6}  {hits:>9}  {s['rendition'] or '-':>8}  "
        f"{len(result['clock'])}/{len(result['clock']) + result['unread']} read"
        + (f"  errors: {s['errors']}" if s["errors"] else "")
    )


async def run(modes: Sequence[str], seconds: float) -> None:
    from playwright.async_api import async_playwright

    self_check(640, 360)
    with tempfile.TemporaryDirectory() as tmp, running_demo(Path(tmp), changes={}) as demo:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            print(f"demo CDN, edge-lon, {seconds:g} s per mode, load average {machine_load()}")
            print(
                "latency columns: median / p95 / max seconds; what the page reports is program date time"
                " against its clock (HLS) or the receiver's jitter buffer alone (WebRTC)"
            )
            print(
                f"{'mode':<7} {'startup':>8}  {'glass to glass':>20}  {'page reports':>20}  "
                f"{'stalls':>6}  {'edge hits':>9}  {'showing':>8}"
            )
            for mode in modes:
                print(summary(await watch(browser, demo, mode, seconds)), flush=True)
            await browser.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.player_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--modes", default="llhls,hls,webrtc")
    args = parser.parse_args(argv)
    asyncio.run(run([m for m in args.modes.split(",") if m], args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
