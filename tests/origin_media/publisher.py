"""An RTMP publisher made with PyAV, for the tests: a moving picture and a tone, in real time.

Always run as a process (`python -m tests.origin_media.publisher URL SECONDS [BFRAMES [GOP
[TRACKS]]]`, TRACKS one of "av", "a", "v"; it prints the wall-clock time its first packet
was sent, for the tests of EXT-X-PROGRAM-DATE-TIME):
PyAV holds the GIL while its RTMP client handshakes, which would freeze an event loop in the
same process; a process can also be killed to make a publisher vanish without a goodbye.
"""

from __future__ import annotations

import sys
import threading
import time
from fractions import Fraction

import av

WIDTH, HEIGHT, FPS, RATE = 320, 180, 25, 48_000


def publish(url: str, seconds: float, *, stop: threading.Event | None = None,
            bframes: int = 0, gop: int = FPS, tracks: str = "av") -> int:
    """Publish for `seconds` (or until `stop`); returns the number of video frames sent."""
    # flush_packets: each packet goes out as it is muxed, as from a live encoder (not 32 KiB later)
    out = av.open(url, "w", format="flv", options={"flush_packets": "1"})
    options = {"preset": "veryfast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
               "bf": str(bframes), "threads": "1"}
    video = audio = None
    if "v" in tracks:
        video = out.add_stream("libx264", rate=FPS, options=options)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    if "a" in tracks:
        audio = out.add_stream("aac", rate=RATE)
        audio.layout = "mono"
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
                mux(audio.encode(_tone(samples)))
                samples += 1024
        for stream in (video, audio):
            if stream is not None:
                mux(stream.encode(None))  # flush: frames still in the encoders
    finally:
        out.close()
    return frames


def _picture(index: int) -> av.VideoFrame:
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    row = bytes((x + index * 4) % 256 for x in range(frame.planes[0].line_size))
    frame.planes[0].update(row * HEIGHT)
    for plane in frame.planes[1:]:
        plane.update(bytes([(index * 2) % 256]) * plane.buffer_size)
    frame.pts = index
    frame.time_base = Fraction(1, FPS)
    return frame


def _tone(start: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
    frame.planes[0].update(bytes(4 * 1024))
    frame.sample_rate = RATE
    frame.pts = start
    return frame


if __name__ == "__main__":
    args = sys.argv[1:] + ["0", str(FPS), "av"][len(sys.argv) - 3:]
    publish(args[0], float(args[1]), bframes=int(args[2]), gop=int(args[3]), tracks=args[4])
