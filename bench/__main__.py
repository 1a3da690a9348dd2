"""`python -m bench` (what `make bench` runs): every benchmark, one after the other, each in a
process of its own so that one's memory (the media soak reports its own RSS) or threads never
colour another's figures."""

from __future__ import annotations

import subprocess
import sys

# The 10-minute media soak (issue 5: memory stays flat) comes last: it is the longest.
BENCHMARKS = (
    "edge_vs_nginx",
    "slow_readers",
    "hang_up",
    "servers",
    "clients",
    "live_relay",
    "webrtc_relay",
    "upload",
    "invalidation",
    "loadtest_capacity",
    "player_latency",
    "https_hits",
    "tls_reload",
    "glob_hostile",
    "dash_tracks",
    "metrics_record",
    "media_soak",
)


def main() -> int:
    for name in BENCHMARKS:
        print(f"\n=== bench.{name} ===", flush=True)
        code = subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode
        if code:
            print(f"bench.{name} failed (exit {code})", flush=True)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
