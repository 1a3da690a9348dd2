"""Slow readers of one large cache hit: does each cost a small buffer or a copy of the object?

A counting origin and `cdn edge` (a child process) run on loopback; the object is cached by one
full read, then `--connections` viewers read it at `--rate-kib` KiB/s for `--seconds`. Printed:
the edge's RSS before, its peak while they read, the growth, and the growth per viewer. An edge
that streams hits in bounded slices grows by about a socket's worth per viewer; one that hands
the server the whole body grows by the object size per viewer (issue 13: 200 viewers of 50 MB,
target under 64 MiB in all).

    python -m bench.slow_readers [--connections 200] [--size-mib 50] [--rate-kib 64] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import write_results
from bench.procs import Children, RssSampler, group_rss_kib, machine_load, progress
from bench.stack import MIB
from bench.viewers import CountingOrigin, open_viewer, read_at, start_edge


def warm(port: int, path: str) -> str:
    """Read `path` whole on new connections until every worker of the edge holds it."""
    for _ in range(12):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        conn.close()
    return resp.getheader("x-cache") or ""


async def readers(port: int, count: int, rate: int, seconds: float) -> int:
    async def one() -> int:
        reader, writer = await open_viewer(port, "/big.bin")
        try:
            return await read_at(reader, rate, seconds)
        finally:
            writer.transport.abort()

    return sum(await asyncio.gather(*(one() for _ in range(count))))


def run(connections: int, size_mib: int, rate_kib: int, seconds: float) -> dict[str, object]:
    size = size_mib * MIB
    with (
        tempfile.TemporaryDirectory(prefix="cdn-bench-slow-") as tmp,
        Children(Path(tmp)) as children,
        CountingOrigin(size, "max-age=3600") as origin,
    ):
        edge, port = start_edge(children, Path(tmp), origin.port, cache_bytes=4 * size, max_object_bytes=2 * size)
        evidence = warm(port, "/big.bin")
        before = group_rss_kib(edge.pid)
        progress(
            f"{connections} viewers reading a {size_mib} MiB hit at {rate_kib} KiB/s for {seconds:.0f} s ({evidence})"
        )
        with RssSampler(edge.pid) as sampler:
            read = asyncio.run(readers(port, connections, rate_kib * 1024, seconds))
        growth = (sampler.peak_kib - before) / 1024
        return {
            "connections": connections,
            "size_mib": size_mib,
            "rate_kib": rate_kib,
            "seconds": seconds,
            "hit": evidence,
            "origin_requests": origin.requests,
            "read_mib": round(read / MIB, 1),
            "edge_rss_before_mib": round(before / 1024, 1),
            "edge_rss_peak_mib": round(sampler.peak_kib / 1024, 1),
            "edge_rss_growth_mib": round(growth, 1),
            "growth_per_viewer_kib": round(growth * 1024 / connections),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_readers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--size-mib", type=int, default=50)
    parser.add_argument("--rate-kib", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    progress(f"machine load {machine_load()}")
    row = run(args.connections, args.size_mib, args.rate_kib, args.seconds)
    print(
        f"\nedge RSS {row['edge_rss_before_mib']} MiB -> peak {row['edge_rss_peak_mib']} MiB: "
        f"+{row['edge_rss_growth_mib']} MiB for {row['connections']} slow viewers of a {row['size_mib']} MiB hit "
        f"({row['growth_per_viewer_kib']} KiB each; read {row['read_mib']} MiB; origin requests {row['origin_requests']})"
    )
    write_results("slow_readers", row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
