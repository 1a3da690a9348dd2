"""`python -m bench` (what `make bench` runs): every benchmark, one after the other."""

from __future__ import annotations

import sys

from bench import (
    clients,
    edge_vs_nginx,
    invalidation,
    live_relay,
    loadtest_capacity,
    media_soak,
    player_latency,
    servers,
    upload,
    webrtc_relay,
)


def main() -> int:
    # The 10-minute media soak (issue 5: memory stays flat) comes last: it is the longest.
    for bench in (edge_vs_nginx, servers, clients, live_relay, webrtc_relay, upload, invalidation,
                  loadtest_capacity, player_latency, media_soak):
        print(f"\n=== {bench.__name__} ===", flush=True)
        code = bench.main([])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
