"""What an edge's metrics cost per request: `python -m bench.metrics_record`.

Records what the flow records for every answer of a live stream (count with its response
time, count_object, live.served with its session) for a mix of LL-HLS keys from 200 sessions,
and prints microseconds per request (best of five rounds). Run it on two checkouts to compare.
"""

from __future__ import annotations

import inspect
import time

from edge import live as live_module
from edge.metrics import EdgeMetrics

ROUNDS, REQUESTS = 5, 100_000


def keys() -> list[tuple[str, str]]:
    """(cache key, path) of playlists, parts and segments of three renditions."""
    out = []
    for msn in range(50):
        for rendition in ("180p", "360p", "720p"):
            for part in range(4):
                path = f"/live/cam/{rendition}/part{msn}.{part}.m4s"
                out.append(("live:" + path, path))
                out.append(
                    (
                        f"live:/live/cam/{rendition}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}",
                        f"/live/cam/{rendition}/index.m3u8",
                    )
                )
            out.append((f"live:/live/cam/{rendition}/seg{msn}.m4s", f"/live/cam/{rendition}/seg{msn}.m4s"))
    return out


def main() -> None:
    metrics = EdgeMetrics()
    timed = "seconds" in inspect.signature(metrics.count).parameters
    session_of = getattr(live_module, "session_of", None)
    mix = keys()
    sessions = [{"cmcd-session": f'sid="viewer-{n}"', "user-agent": "hls.js"} for n in range(200)]
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for i in range(REQUESTS):
            key, path = mix[i % len(mix)]
            headers = sessions[i % 200]
            if timed:
                metrics.count("live", "hit", 200, 20_000, 0.002)
            else:
                metrics.count("live", "hit", 200, 20_000)
            metrics.count_object(key, 20_000)
            who = session_of("127.0.0.1", "", headers) if session_of else "127.0.0.1"
            metrics.live.served(path, who, 20_000)
        best = min(best, time.perf_counter() - started)
    print(
        f"metrics per request: {best / REQUESTS * 1e6:.2f} us (best of {ROUNDS} x {REQUESTS} requests; "
        f"response time {'recorded' if timed else 'not recorded'}, sessions {'by CMCD id' if session_of else 'by address'})"
    )


if __name__ == "__main__":
    main()
