"""Issue 2's choice of HTTP client, by measurement: the edge's origin client, aiohttp or httpx.

Each client fetches a 1 KiB and a 1 MiB object N times (default 3000) with 50 requests in
flight, reading bodies in 64 KiB chunks as the edge does (edge/upstream.py), on uvloop, in a
process of its own so its CPU time (resource.getrusage, user + system) is its alone. Two
origins: the project's web origin (`cdn origin`), and nginx serving the same folder, fast
enough that the client, not the origin, is what limits the rate.

    python -m bench.clients [--requests 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bench import results_dir
from bench.procs import Children, cpu_seconds, machine_load, progress
from bench.stack import OBJECTS, make_site, start_nginx_static, start_origin

CONCURRENCY = 50
REQUESTS = 3000
CHUNK = 64 * 1024
CLIENTS = ("aiohttp", "httpx")


# -- one client, in its own process ------------------------------------------------------------
Figures = dict[str, float]


async def _aiohttp(url: str, count: int, concurrency: int) -> Figures:
    import aiohttp

    # As edge/upstream.py builds its session.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, ttl_dns_cache=60)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def one() -> int:
            async with session.get(url) as resp:
                got = 0
                async for chunk in resp.content.iter_chunked(CHUNK):
                    got += len(chunk)
                return got

        return await _measured(one, count, concurrency)


async def _httpx(url: str, count: int, concurrency: int) -> Figures:
    import httpx

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def one() -> int:
            async with client.stream("GET", url) as resp:
                got = 0
                async for chunk in resp.aiter_raw(CHUNK):
                    got += len(chunk)
                return got

        return await _measured(one, count, concurrency)


async def _measured(one: Callable[[], Awaitable[int]], count: int, concurrency: int) -> Figures:
    """Open the connections with a first wave, then time `count` requests, `concurrency` at a time."""
    await asyncio.gather(*(one() for _ in range(concurrency)))
    remaining = count
    total = 0

    async def worker() -> None:
        nonlocal remaining, total
        while remaining > 0:
            remaining -= 1
            got = await one()  # not `total += await ...`: that reads total before the await
            total += got

    wall, cpu = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"requests": count, "bytes": total, "wall_s": time.perf_counter() - wall, "cpu_s": cpu_seconds() - cpu}


def _worker_main(client: str, url: str, count: int, concurrency: int) -> None:
    import uvloop

    run = {"aiohttp": _aiohttp, "httpx": _httpx}[client]
    print(json.dumps(uvloop.run(run(url, count, concurrency))))


def _measure(client: str, url: str, count: int, concurrency: int) -> Figures:
    argv = [sys.executable, "-m", "bench.clients", "--worker", client, url, str(count), str(concurrency)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{client} worker failed: {done.stderr.strip()}")
    figures: Figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# -- the comparison ------------------------------------------------------------------------------
def run(count: int, repeat: int, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cdn-bench-") as tmp, Children(Path(tmp)) as children:
        folder = Path(tmp)
        site = make_site(folder / "site")
        origins = {
            "web origin": start_origin(children, site),
            "nginx static": start_nginx_static(children, folder, site),
        }
        for origin_name, origin in origins.items():
            for label, (path, size) in OBJECTS.items():
                samples: dict[str, list[Figures]] = {c: [] for c in CLIENTS}
                for _ in range(repeat):
                    for client in CLIENTS:  # interleaved, so drifting load hits both alike
                        figures = _measure(client, origin.url + path, count, concurrency)
                        if figures["bytes"] != count * size:
                            raise RuntimeError(f"{client} read {figures['bytes']} bytes, not {count * size}")
                        samples[client].append(figures)
                for client in CLIENTS:
                    row = _summary(samples[client])
                    rows[f"{origin_name}|{label}|{client}"] = {
                        "origin": origin_name,
                        "object": label,
                        "client": client,
                        **row,
                    }
                    progress(
                        f"{origin_name} {label} {client}: {row['requests_per_s']:,.0f} req/s, "
                        f"{row['cpu_ms_per_request']:.3f} ms CPU per request"
                    )
    return {
        "settings": {"requests": count, "concurrency": concurrency, "repeat": repeat, "chunk": CHUNK},
        "results": list(rows.values()),
    }


def _summary(samples: list[Figures]) -> dict[str, Any]:
    rates = [s["requests"] / s["wall_s"] for s in samples]
    cpus = [s["cpu_s"] for s in samples]
    return {
        "requests_per_s": statistics.median(rates),
        "cpu_s": statistics.median(cpus),
        "cpu_ms_per_request": statistics.median(cpus) / samples[0]["requests"] * 1000,
        "runs_requests_per_s": rates,
        "runs_cpu_s": cpus,
        "load": machine_load(),
    }


def format_table(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "",
        f"origin client, {s['requests']} requests, {s['concurrency']} in flight, median of {s['repeat']}",
        "",
        f"{'origin':<13} {'object':<6} {'client':<8} {'req/s':>8} {'CPU s':>7} {'CPU ms/req':>10}  load",
    ]
    for r in report["results"]:
        lines.append(
            f"{r['origin']:<13} {r['object']:<6} {r['client']:<8} {r['requests_per_s']:>8,.0f} "
            f"{r['cpu_s']:>7.2f} {r['cpu_ms_per_request']:>10.3f}  {r['load']}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--repeat", type=int, default=1, help="runs per client; figures are medians")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="requests in flight (default %(default)s)")
    parser.add_argument("--out", type=Path, default=results_dir() / "clients.json")
    parser.add_argument("--worker", nargs=4, metavar=("CLIENT", "URL", "COUNT", "CONCURRENCY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        client, url, count, concurrency = args.worker
        _worker_main(client, url, int(count), int(concurrency))
        return 0
    report = run(args.requests, args.repeat, args.concurrency)
    print(format_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
