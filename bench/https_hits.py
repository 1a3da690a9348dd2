"""What HTTPS costs on a cache hit: one `cdn edge` (granian) with its HTTP and HTTPS listeners
on the same cache, the same 1 KiB object, driven by aiohttp clients in this process, one
listener after the other. Prints requests/s over plain HTTP, over TLS on kept-alive connections
(the symmetric crypto), and over TLS with a new connection per request (the handshake too).

    python -m bench.https_hits [--seconds 8] [--concurrency 32]

aiohttp speaks HTTP/1.1 only: this measures TLS, not h2. The figures go to
bench/results/https_hits.json. On a shared machine, compare figures of one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench import write_results
from bench.procs import Children, free_port, machine_load, progress, wait_http
from bench.stack import BIN, EDGE_NAME, OBJECTS, make_site, start_origin, write_edge_config
from web_dist.cli.tls import make_server_cert

PATH = OBJECTS["1KiB"][0]


def write_config(folder: Path, origin_url: str, port: int, https_port: int) -> Path:
    files = make_server_cert(folder / "tls", ["localhost", "127.0.0.1"])
    tls = f'https_listen = "127.0.0.1:{https_port}"\ntls_cert = "{files.cert}"\ntls_key = "{files.key}"'
    return write_edge_config(folder, origin_url, port, edge_lines=tls, name="edge-https")


async def drive(url: str, seconds: float, concurrency: int, tls: ssl.SSLContext | None, reuse: bool) -> dict[str, Any]:
    done = errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=not reuse, ssl=tls if tls is not None else True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < deadline:
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        if resp.status == 200 and "hit" in resp.headers.get("cache-status", ""):
                            done += 1
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"requests_per_s": round(done / elapsed, 1), "requests": done, "errors": errors}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cdn-bench-https-") as tmp, Children(Path(tmp)) as children:
        folder = Path(tmp)
        origin = start_origin(children, make_site(folder / "site"))
        port, https_port = free_port(), free_port()
        config = write_config(folder, origin.url, port, https_port)
        edge = children.spawn("edge", [str(BIN / "cdn"), "--log-level", "warning", "edge", "--config", str(config),
                                       "--name", EDGE_NAME])
        wait_http(edge, port, "/_cdn/health")
        tls = ssl.create_default_context(cafile=str(folder / "tls" / "ca.pem"))
        runs = {
            "http keep-alive": (f"http://127.0.0.1:{port}{PATH}", None, True),
            "https keep-alive": (f"https://localhost:{https_port}{PATH}", tls, True),
            "https new connection per request": (f"https://localhost:{https_port}{PATH}", tls, False),
        }
        report: dict[str, Any] = {"load": machine_load(), "concurrency": args.concurrency, "seconds": args.seconds}
        asyncio.run(drive(runs["http keep-alive"][0], 0.5, 2, None, True))  # the first request fills the cache
        for name, (url, ctx, reuse) in runs.items():
            progress(f"{name}: {args.seconds:g} s")
            report[name] = asyncio.run(drive(url, args.seconds, args.concurrency, ctx, reuse))
    plain = report["http keep-alive"]["requests_per_s"]
    for name in runs:
        figures = report[name]
        ratio = figures["requests_per_s"] / plain if plain else 0.0
        print(f"{name:<34} {figures['requests_per_s']:>9.1f} req/s  ({ratio:.2f}x plain; errors {figures['errors']})")
    write_results("https_hits", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
