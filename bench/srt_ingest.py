"""What SRT ingest costs the media origin: one ffmpeg CLI publisher pushing MPEG-TS over SRT.

    .venv/bin/python -m bench.srt_ingest [--seconds 20] [--size 640x360] [--bitrate 1500k]

Prints the origin process's CPU (libsrt receive, PyAV TS demux, CMAF packaging; % of one
core) over the push, the bytes received, and the glass-to-origin delay of the last segment
(wall clock when its playlist listed it minus its PROGRAM-DATE-TIME end). The publisher's own
encoding runs in its own process and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from origin_media.app import MediaOriginSettings, build_media_origin_app
from streaming.playlist import parse_media
from web_dist.server import start_server


async def run(seconds: float, size: str, bitrate: str) -> None:
    settings = MediaOriginSettings.from_options(
        {
            "segment_seconds": 1.0,
            "part_seconds": 0.25,
            "rtmp_listen": "127.0.0.1:0",
            "srt_listen": "127.0.0.1:0",
            "streams": {"cam": {"source": "srt", "key": "k"}},
        },
        where="bench",
    )
    app = build_media_origin_app(settings)
    server = await start_server(app, "127.0.0.1:0", name="media")
    try:
        port = app.state.srt.port
        cpu0, wall0 = time.process_time(), time.monotonic()
        publisher = await asyncio.create_subprocess_exec(
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-b:v",
            bitrate,
            "-g",
            "25",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
            f"srt://127.0.0.1:{port}?streamid=publish:cam:k",
        )
        lags: list[float] = []
        waiter = asyncio.ensure_future(publisher.wait())
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            msn = 0
            while not waiter.done():
                # blocking reload: answered as soon as segment `msn` is listed
                response = await http.get(f"/live/cam/source/index.m3u8?_HLS_msn={msn}")
                if response.status_code == 200 and "#EXT-X-ENDLIST" not in response.text:
                    lags.append(_lag(response.text))
                    msn += 1
                else:
                    await asyncio.sleep(0.2)
        await waiter
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        info = (await httpx.AsyncClient(base_url=server.url).get("/streams")).json()["streams"][0]
        lags = sorted(lags[1:]) or [float("nan")]  # the first waits for the publisher to start
        print(
            f"SRT push {seconds:.0f} s of {size} at {bitrate}: origin CPU {100 * cpu / wall:.1f} % of a core, "
            f"segments {info['media_sequence']}, a segment listed {lags[len(lags) // 2]:.2f} s (median) after "
            f"its end by PDT"
        )
    finally:
        await server.stop()


def _lag(playlist: str) -> float:
    """Seconds from the end of the newest complete segment (by its program date-time) to now."""
    done = [s for s in parse_media(playlist).segments if s.uri is not None]
    last = (done[-1].program_date_time or 0.0) + done[-1].duration if done else time.time()
    return time.time() - last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--bitrate", default="1500k")
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.size, args.bitrate))


if __name__ == "__main__":
    main()
