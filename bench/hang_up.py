"""A viewer hangs up a large download: how much does the edge go on pulling from the origin?

A counting origin and `cdn edge` (a child process) run on loopback. A viewer asks for a
`--size-mib` object, reads 64 KiB and resets the connection, once for a pass-through
(`no-store`) and once for a cacheable object (a fill nobody else waits on, which the edge
abandons after `abandoned_fill_bytes`). Printed: bytes the origin sent in all, and after the
viewer left, and the seconds until the origin stream closed. Target (issue 13): under one buffer,
a few MiB, for the pass-through; about `abandoned_fill_bytes` for the abandoned fill.

    python -m bench.hang_up [--size-mib 400]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import write_results
from bench.procs import Children, machine_load, progress
from bench.stack import MIB
from bench.viewers import CountingOrigin, open_viewer, start_edge

ABANDONED_FILL = 4 * MIB


async def read_and_hang_up(port: int, path: str, read: int) -> None:
    reader, writer = await open_viewer(port, path)
    got = 0
    while got < read:
        chunk = await reader.read(read - got)
        if not chunk:
            break
        got += len(chunk)
    writer.transport.abort()
    await asyncio.sleep(0)


def one(size_mib: int, cache_control: str) -> dict[str, object]:
    size = size_mib * MIB
    with (
        tempfile.TemporaryDirectory(prefix="cdn-bench-hangup-") as tmp,
        Children(Path(tmp)) as children,
        CountingOrigin(size, cache_control) as origin,
    ):
        _, port = start_edge(
            children,
            Path(tmp),
            origin.port,
            cache_bytes=2 * size,
            max_object_bytes=size,
            abandoned_fill_bytes=ABANDONED_FILL,
        )
        asyncio.run(read_and_hang_up(port, "/big.bin", 64 * 1024))
        left_at, sent_then = time.perf_counter(), origin.sent
        while origin.open_streams and time.perf_counter() - left_at < 30:
            time.sleep(0.01)
        closed = time.perf_counter() - left_at
        return {
            "object": cache_control,
            "size_mib": size_mib,
            "origin_sent_mib": round(origin.sent / MIB, 2),
            "after_hang_up_mib": round((origin.sent - sent_then) / MIB, 2),
            "origin_stream_closed_s": round(closed, 2) if not origin.open_streams else None,
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hang_up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=400)
    args = parser.parse_args(argv)
    progress(f"machine load {machine_load()}")
    rows = []
    for cache_control in ("no-store", "max-age=3600"):
        progress(f"a viewer reads 64 KiB of a {args.size_mib} MiB object ({cache_control}) and hangs up")
        rows.append(one(args.size_mib, cache_control))
    print(f"\n{'object':<14} {'size MiB':>8} {'origin sent MiB':>15} {'after hang-up':>13} {'stream closed':>13}")
    for r in rows:
        closed = "never" if r["origin_stream_closed_s"] is None else f"{r['origin_stream_closed_s']} s"
        print(
            f"{r['object']:<14} {r['size_mib']:>8} {r['origin_sent_mib']:>15} {r['after_hang_up_mib']:>12}M {closed:>13}"
        )
    write_results("hang_up", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
