"""Issue 2's choice of ASGI server, by measurement: the edge's hit path under each candidate.

The same edge app (`build_edge_app`, access log on) serves a cached 1 KiB object under:
`cdn edge` with `server = "uvicorn"` (httptools + uvloop, one worker, in-process) and as it
ships (granian embedded in the edge's loop), uvicorn's own
CLI with 2 workers, granian (`--interface asgi`, 1 and 2 workers) and hypercorn (uvloop
worker). Each is warmed and checked to serve hits (every worker has its own cache, so several
hits in a row on new connections are asked for), then driven by wrk like edge_vs_nginx.

    python -m bench.servers [--repeat 3] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import results_dir
from bench.procs import Children, RssSampler, free_port, machine_load, progress, wait_http
from bench.stack import (
    BIN,
    EDGE_NAME,
    OBJECTS,
    Server,
    edge_hit,
    make_site,
    start_edge,
    start_origin,
    warm,
    write_edge_config,
)
from bench.wrk import CONNECTIONS, DURATION, THREADS, WrkResult, median_result, run_wrk

REPO = Path(__file__).resolve().parent.parent
FACTORY = "bench.edge_asgi:build"


def _factory_server(name: str, argv: Callable[[int], list[str]]) -> Callable[[Children, Path, str], Server]:
    """A server that imports the edge from bench/edge_asgi.py, listening on a free port."""

    def start(children: Children, folder: Path, origin_url: str) -> Server:
        port = free_port()
        config = write_edge_config(folder, origin_url, port)
        env = {"CDN_BENCH_CONFIG": str(config), "CDN_BENCH_EDGE": EDGE_NAME, "PYTHONPATH": str(REPO)}
        child = children.spawn(name, argv(port), env=env, cwd=REPO)
        wait_http(child, port, "/_cdn/health")
        return Server(name, child, port)

    return start


def _granian(workers: int) -> Callable[[int], list[str]]:
    return lambda port: [
        str(BIN / "granian"),
        "--interface",
        "asgi",
        "--factory",
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-ws",
        "--no-access-log",
        "--log-level",
        "warning",
        FACTORY,
    ]


def _uvicorn(workers: int) -> Callable[[int], list[str]]:
    return lambda port: [
        str(BIN / "uvicorn"),
        "--factory",
        FACTORY,
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--no-server-header",
        "--no-date-header",
        "--log-level",
        "warning",
        "--lifespan",
        "on",
    ]


def _hypercorn(workers: int) -> Callable[[int], list[str]]:
    return lambda port: [
        str(BIN / "hypercorn"),
        "--worker-class",
        "uvloop",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        FACTORY + "()",
    ]


# name -> (how to start it, workers); `cdn edge` is the baseline the others are compared with.
CANDIDATES: dict[str, tuple[Callable[[Children, Path, str], Server], int]] = {
    "cdn edge (uvicorn 1w)": (lambda children, folder, url: start_edge(children, folder, url, "uvicorn"), 1),
    "cdn edge (granian embedded)": (start_edge, 1),
    "uvicorn 2w": (_factory_server("uvicorn-2w", _uvicorn(2)), 2),
    "granian 1w": (_factory_server("granian-1w", _granian(1)), 1),
    "granian 2w": (_factory_server("granian-2w", _granian(2)), 2),
    "hypercorn 1w": (_factory_server("hypercorn-1w", _hypercorn(1)), 1),
}
BASELINE = "cdn edge (uvicorn 1w)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=DURATION)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; figures are medians (default %(default)s)")
    parser.add_argument("--out", type=Path, default=results_dir() / "servers.json")
    args = parser.parse_args(argv)
    report = run(args.duration, args.repeat)
    print(format_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def run(duration: int, repeat: int) -> dict[str, Any]:
    path, size = OBJECTS["1KiB"]
    runs: dict[str, list[WrkResult]] = {}
    peaks: dict[str, int] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="cdn-bench-") as tmp, Children(Path(tmp)) as children:
        folder = Path(tmp)
        origin = start_origin(children, make_site(folder / "site"))
        for round_no in range(1, repeat + 1):
            # One server at a time: they would otherwise share the two cores with each other.
            for name, (start, workers) in CANDIDATES.items():
                if name in skipped:
                    continue
                try:
                    server = start(children, folder, origin.url)  # OSError: not installed
                except (RuntimeError, OSError) as exc:
                    skipped[name] = str(exc).splitlines()[0]
                    progress(f"{name}: skipped: {skipped[name]}")
                    continue
                try:
                    warm(server, path, size, edge_hit, in_a_row=8 * workers)
                    with RssSampler(server.child.pid) as sampler:
                        result = run_wrk(server.url + path, duration=duration)
                    result = WrkResult(
                        result.requests_per_s,
                        result.p50_ms,
                        result.p99_ms,
                        result.requests,
                        result.errors,
                        machine_load(),
                    )
                finally:
                    children.stop(server.child)
                runs.setdefault(name, []).append(result)
                peaks[name] = max(peaks.get(name, 0), sampler.peak_kib)
                progress(
                    f"round {round_no}/{repeat} {name}: {result.requests_per_s:,.0f} req/s "
                    f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms errors {result.errors}"
                )
    medians = {name: median_result(rs) for name, rs in runs.items()}
    base = medians.get(BASELINE)
    return {
        "settings": {
            "wrk": f"-t{THREADS} -c{CONNECTIONS} -d{duration}s --latency",
            "repeat": repeat,
            "object": "1KiB cache hit",
        },
        "results": {
            name: {
                **m.as_dict(),
                "runs_requests_per_s": [r.requests_per_s for r in runs[name]],
                "vs_baseline": m.requests_per_s / base.requests_per_s if base else None,
                "peak_rss_kib": peaks[name],
            }
            for name, m in medians.items()
        },
        "skipped": skipped,
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        "",
        f"edge hit path, 1 KiB, wrk {report['settings']['wrk']}, median of {report['settings']['repeat']}",
        "",
        f"{'server':<28} {'req/s':>9} {'x base':>7} {'p50 ms':>7} {'p99 ms':>7} {'RSS MiB':>8} {'errors':>6}  load",
    ]
    for name, m in report["results"].items():
        ratio = f"{m['vs_baseline']:.2f}" if m["vs_baseline"] is not None else "-"
        lines.append(
            f"{name:<28} {m['requests_per_s']:>9,.0f} {ratio:>7} {m['p50_ms']:>7.2f} {m['p99_ms']:>7.2f} "
            f"{m['peak_rss_kib'] / 1024:>8.1f} {m['errors']:>6}  {m['load']}"
        )
    for name, why in report["skipped"].items():
        lines.append(f"{name:<28} skipped: {why}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
