"""DASH's one-track views (origin_media.track_view): what cutting a muxed CMAF segment to its
video or audio track costs the media origin, per segment, against sending it as it is.

A 2 s segment as the packager makes it: one moof + mdat per video frame (25 fps, 3 Mbit/s),
AAC frames (48 kHz) carried with them. The views are cut once per object per edge (the edge
caches them, immutable), and nothing is kept twice in memory: the alternative, the packager
writing per-track copies, would double the live window's memory for every stream, watched or not.
"""

from __future__ import annotations

import time

from bench import write_results
from origin_media import fmp4, track_view

FPS, SECONDS, VIDEO_BITS, AUDIO_RATE = 25, 2, 3_000_000, 48_000


def segment() -> list[bytes]:
    """The chunks of one segment."""
    chunks, audio_next, sequence = [], 0, 0
    frame_bytes = VIDEO_BITS // 8 // FPS
    for frame in range(FPS * SECONDS):
        video = fmp4.Sample(frame * 3600, 3600, 0, frame == 0, bytes(frame_bytes))
        audio = []
        while audio_next * 1024 < (frame + 1) * AUDIO_RATE // FPS:
            audio.append(fmp4.Sample(audio_next * 1024, 1024, 0, True, bytes(380)))
            audio_next += 1
        sequence += 1
        chunks.append(fmp4.fragment(sequence, [fmp4.TrackRun(1, (video,)), fmp4.TrackRun(2, tuple(audio))]))
    return chunks


def timed(work: object, rounds: int = 50) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        work()  # type: ignore[operator]
    return (time.perf_counter() - start) / rounds


def main() -> None:
    chunks = segment()
    whole = b"".join(chunks)
    figures = {
        "segment_bytes": len(whole),
        "join_only_ms": timed(lambda: b"".join(chunks)) * 1000,
        "video_view_ms": timed(lambda: track_view.track_fragments(whole, 1)) * 1000,
        "audio_view_ms": timed(lambda: track_view.track_fragments(whole, 2)) * 1000,
        "audio_timeline_ms": timed(lambda: [track_view.track_timing(c, 2) for c in chunks]) * 1000,
    }
    megabytes = len(whole) / 1e6
    print(
        f"one {SECONDS} s segment ({megabytes:.2f} MB, {FPS * SECONDS} chunks): "
        f"joined as it is {figures['join_only_ms']:.3f} ms; video view {figures['video_view_ms']:.3f} ms "
        f"({megabytes / figures['video_view_ms'] * 1000:.0f} MB/s); audio view {figures['audio_view_ms']:.3f} ms; "
        f"audio timeline for the MPD {figures['audio_timeline_ms']:.3f} ms (once per segment, cached)"
    )
    write_results("dash_tracks", figures)


if __name__ == "__main__":
    main()
