"""A browser publishes by WHIP: headless Chromium's RTCPeerConnection sends a canvas picture and
a WebAudio tone to the media origin, and the stream plays as HLS.

The page comes from a throwaway app on another loopback port, so its POST to the origin is
cross-origin: Chromium asks the ingest's CORS preflight first, as a publishing page on any site
would. Chromium offers VP8 first; aiortc (the ingest) takes it and decodes, and the origin
encodes H.264 + AAC again.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from origin_media.app import MediaOriginSettings, build_media_origin_app
from tests.browser.conftest import record_problems
from tests.conftest import until
from tests.origin_media import hls
from tests.origin_media.conftest import SMALL, Origin, decode
from web_dist.server import start_server

KEY = "browser-whip-key"
WIDTH, HEIGHT = 160, 96
LIMIT_MS = 15_000  # each step in the page (ICE gathering, the offer's answer, connecting)
SEGMENTS_LIMIT = 20.0  # seconds for the first two full segments once connected

# The publishing page: what a "go live from your browser" page does, and no more.
PAGE = """<!doctype html>
<title>WHIP publisher</title>
<canvas></canvas>
<script>
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

async function within(ms, what, ready) {  // poll `ready` until true, or fail naming `what`
  for (const end = Date.now() + ms; !ready();) {
    if (Date.now() > end) throw new Error(`${what} took more than ${ms} ms`);
    await sleep(20);
  }
}

function movingPicture(width, height) {  // a square crossing a shifting colour, redrawn at 30 fps
  const canvas = document.querySelector("canvas");
  Object.assign(canvas, { width, height });
  const g = canvas.getContext("2d");
  let n = 0;
  setInterval(() => {
    g.fillStyle = `hsl(${(n * 6) % 360} 70% 45%)`;
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = "#fff";
    g.fillRect((n * 3) % canvas.width, canvas.height / 3, 24, 24);
    n += 1;
  }, 33);
  const track = canvas.captureStream(30).getVideoTracks()[0];
  track.contentHint = "detail";  // keep the size when the CPU is busy; lower the frame rate instead
  return track;
}

function tone() {  // a 440 Hz oscillator as a MediaStreamTrack
  const audio = new AudioContext();
  const oscillator = audio.createOscillator();
  const out = audio.createMediaStreamDestination();
  oscillator.connect(out);
  oscillator.start();
  return out.stream.getAudioTracks()[0];
}

async function publish(whip, key, limit, width, height) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  window.pc = pc;
  const stream = new MediaStream([movingPicture(width, height), tone()]);
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  await pc.setLocalDescription();
  // the ingest takes no trickled candidates: the offer carries them all
  await within(limit, "ICE gathering", () => pc.iceGatheringState === "complete");
  const response = await fetch(whip, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${key}` },
    body: pc.localDescription.sdp,
  });
  const answer = await response.text();
  if (response.status !== 201) throw new Error(`WHIP offer refused: ${response.status} ${answer}`);
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  await within(limit, "connecting", () => pc.connectionState === "connected");
  const codecs = {};
  for (const sender of pc.getSenders()) codecs[sender.track.kind] = sender.getParameters().codecs[0].mimeType;
  return { location: new URL(response.headers.get("Location"), whip).href, codecs };
}

async function hangUp(resource, key) {  // RFC 9725: DELETE the session's resource
  const response = await fetch(resource, { method: "DELETE", headers: { Authorization: `Bearer ${key}` } });
  window.pc.close();
  return response.status;
}
</script>
"""


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    """A media origin with one WHIP stream, "cam", on a loopback port."""
    settings = MediaOriginSettings.from_options(
        {**SMALL, "streams": {"cam": {"source": "whip", "key": KEY}}}, where="test"
    )
    app = build_media_origin_app(settings)
    started = Origin(await start_server(app, "127.0.0.1:0", name="media"), app)
    yield started
    await started.http.aclose()
    await started.server.stop()


@pytest.fixture
async def page_url() -> AsyncIterator[str]:
    """Where the publishing page is served: another origin than the ingest's."""
    app = Starlette(routes=[Route("/", lambda request: HTMLResponse(PAGE))])
    server = await start_server(app, "127.0.0.1:0", name="page")
    yield f"http://localhost:{server.port}/"
    await server.stop()


async def _playlist(origin: Origin) -> hls.Playlist | None:
    response = await origin.http.get("/live/cam/source/index.m3u8")
    return hls.parse(response.text) if response.status_code == 200 else None


async def _segments(origin: Origin, count: int) -> bool:
    playlist = await _playlist(origin)
    return playlist is not None and len(playlist.full_segments) >= count


def _loudness(audio: list[Any]) -> float:
    """Root mean square of the decoded sound, float planar as AAC decodes (a full-scale sine
    is about 0.7; silence 0)."""
    samples = array("f")
    for frame in audio:
        assert frame.format.name == "fltp", frame.format.name
        samples.frombytes(bytes(frame.planes[0])[: frame.samples * 4])
    return math.sqrt(sum(x * x for x in samples) / max(1, len(samples)))


def _luma(frame: Any) -> bytes:
    plane, width = frame.planes[0], frame.width
    rows = bytes(plane)
    return b"".join(rows[y * plane.line_size : y * plane.line_size + width] for y in range(frame.height))


def _difference(a: Any, b: Any) -> float:
    """Mean absolute difference of two pictures' luma (0-255)."""
    return sum(abs(x - y) for x, y in zip(_luma(a), _luma(b), strict=True)) / (a.width * a.height)


async def test_a_browser_publishes_by_whip_and_the_stream_plays(browser: Any, origin: Origin, page_url: str) -> None:
    started = time.monotonic()
    page = await (await browser.new_context()).new_page()
    problems = record_problems(page)
    await page.goto(page_url)
    whip = f"http://localhost:{origin.server.port}/whip/cam"
    published = await page.evaluate("(args) => publish(...args)", [whip, KEY, LIMIT_MS, WIDTH, HEIGHT])
    assert published["location"].startswith(f"{whip}/"), published
    codecs = published["codecs"]
    assert codecs["video"] in ("video/VP8", "video/H264") and codecs["audio"] == "audio/opus", codecs

    waited = await until(lambda: _segments(origin, 2), SEGMENTS_LIMIT, what="two full segments of the browser's stream")
    info = await origin.stream_info("cam")
    assert info["state"] == "live" and info["protocol"] == "whip", info
    playlist = await _playlist(origin)
    assert playlist is not None and not playlist.ended
    for segment in playlist.full_segments:
        assert segment.parts, "LL-HLS parts are listed for the segment"
        init = await origin.fetch("cam", segment.map_uri or "")
        frames, packets, audio = decode(init, await origin.fetch("cam", segment.uri or ""))
        # each segment starts on a keyframe: a player can join at any of them
        assert packets[0].is_keyframe and len(frames) >= 5, (segment.uri, len(packets), len(frames))
        assert {(f.width, f.height) for f in frames} == {(WIDTH, HEIGHT)}
    moved, loudness = _difference(frames[0], frames[-1]), _loudness(audio) if audio else 0.0
    assert moved > 2, "the picture moves"
    assert loudness > 0.3, "the oscillator is heard (as AAC)"

    assert await page.evaluate("([resource, key]) => hangUp(resource, key)", [published["location"], KEY]) == 200

    async def ended() -> bool:
        return bool((await origin.stream_info("cam"))["state"] == "ended")

    await until(ended, 10, what="the session to end after DELETE")
    assert problems == []
    print(
        f"\nbrowser WHIP: codecs {codecs}, two segments {waited:.1f} s after connecting,"
        f" {len(frames)} frames in a segment (moved {moved:.0f}/255, sound RMS {loudness:.2f}),"
        f" {time.monotonic() - started:.1f} s in all"
    )
