"""An RTMP publisher made with PyAV, for the tests: a moving picture and a tone, in real time.

Always run as a process (`python -m tests.origin_media.publisher URL SECONDS [BFRAMES [GOP
[TRACKS]]]`, TRACKS one of "av", "a", "v"; it prints the wall-clock time its first packet
was sent, for the tests of EXT-X-PROGRAM-DATE-TIME). An http:// URL publishes with FFmpeg's
WHIP muxer instead (H.264 and Opus): the bearer token in $WHIP_TOKEN, and the DTLS
certificate and key in the PEM files $WHIP_CERT / $WHIP_KEY if set (else FFmpeg makes its own).
PyAV holds the GIL while its RTMP client handshakes, which would freeze an event loop in the
same process; a process can also be killed to make a publisher vanish without a goodbye.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from fractions import Fraction
from typing import Any

import av

WIDTH, HEIGHT, FPS, RATE = 320, 180, 25, 48_000


def publish(
    url: str,
    seconds: float,
    *,
    stop: threading.Event | None = None,
    bframes: int = 0,
    gop: int = FPS,
    tracks: str = "av",
) -> int:
    """Publish for `seconds` (or until `stop`); returns the number of video frames sent."""
    whip = url.startswith("http")
    # flush_packets: each packet goes out as it is muxed, as from a live encoder (not 32 KiB later)
    out = av.open(url, "w", **(_whip_options() if whip else {"format": "flv", "options": {"flush_packets": "1"}}))
    options = {
        "preset": "veryfast",
        "g": str(gop),
        "keyint_min": str(gop),
        "sc_threshold": "0",
        "bf": str(bframes),
        "threads": "1",
    }
    if whip:  # what FFmpeg's WHIP muxer takes: H.264 baseline (no B-frames) and stereo Opus
        options["profile"] = "baseline"
    video = audio = None
    if "v" in tracks:
        video = out.add_stream("libx264", rate=FPS, options=options)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    if "a" in tracks:
        audio = out.add_stream("libopus" if whip else "aac", rate=RATE)
        audio.layout = "stereo" if whip else "mono"
    frames = round(seconds * FPS)
    start, samples, sent = time.monotonic(), 0, False

    waiting = {s.index for s in (video, audio) if s is not None}

    def mux(packets: list[av.Packet]) -> None:
        nonlocal sent
        for packet in packets:
            out.mux(packet)
            waiting.discard(packet.stream.index)
            if not sent and not waiting:
                # the muxer interleaves: nothing leaves before every stream has a packet
                print(f"first-packet {time.time():.6f}", flush=True)
                sent = True

    try:
        for index in range(frames):
            if stop is not None and stop.is_set():
                break
            delay = start + index / FPS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if video is not None:
                mux(video.encode(_picture(index)))
            while audio is not None and samples < (index + 1) * RATE / FPS:
                mux(audio.encode(_tone(samples, audio.frame_size or 1024, audio.layout.name)))
                samples += audio.frame_size or 1024
        for stream in (video, audio):
            if stream is not None:
                mux(stream.encode(None))  # flush: frames still in the encoders
    finally:
        out.close()
    return frames


def _whip_options() -> dict[str, Any]:
    options = {"authorization": os.environ["WHIP_TOKEN"]}
    if os.environ.get("WHIP_CERT"):
        options.update(cert_file=os.environ["WHIP_CERT"], key_file=os.environ["WHIP_KEY"])
    return {"format": "whip", "options": options}


def _picture(index: int) -> av.VideoFrame:
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    row = bytes((x + index * 4) % 256 for x in range(frame.planes[0].line_size))
    frame.planes[0].update(row * HEIGHT)
    for plane in frame.planes[1:]:
        plane.update(bytes([(index * 2) % 256]) * plane.buffer_size)
    frame.pts = index
    frame.time_base = Fraction(1, FPS)
    return frame


def _tone(start: int, samples: int, layout: str) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout=layout, samples=samples)
    for plane in frame.planes:
        plane.update(bytes(4 * samples))
    frame.sample_rate = RATE
    frame.pts = start
    return frame


if __name__ == "__main__":
    args = sys.argv[1:] + ["0", str(FPS), "av"][len(sys.argv) - 3 :]
    publish(args[0], float(args[1]), bframes=int(args[2]), gop=int(args[3]), tracks=args[4])
