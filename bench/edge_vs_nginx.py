"""Issue 3's benchmark: cache hits from the edge, nginx `proxy_cache` and Varnish, side by side.

Starts a web origin with a 1 KiB and a 1 MiB object, the edge (`cdn edge`) twice, with its
default worker processes (one per core) and with `workers = 1`, nginx and Varnish in front of
that origin, warms each cache and checks it answers hits, then drives each with the same wrk
settings, one after the other, and prints requests/s, p50 and p99, CPU microseconds per hit
(the server's process CPU time over the requests it answered), the ratios edge/nginx and
edge/Varnish, and each server's RSS at rest and at peak. The same goes to
bench/results/edge_vs_nginx.json.

    python -m bench.edge_vs_nginx [--repeat 3] [--duration 10]

With --repeat N the servers take turns N times and each figure is the median of its N runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import results_dir
from bench.procs import (
    Children,
    RssSampler,
    group_cpu_seconds,
    group_rss_kib,
    machine_load,
    progress,
    status_kib,
)
from bench.stack import (
    HIT_CHECKS,
    OBJECTS,
    Server,
    fetch,
    make_site,
    start_edge,
    start_nginx,
    start_origin,
    start_varnish,
    warm,
)
from bench.wrk import CONNECTIONS, DURATION, THREADS, WrkResult, median_result, run_wrk

TARGETS = {"1KiB": 0.5, "1MiB": 1.0}  # edge/nginx the issue asks for


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.edge_vs_nginx", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=DURATION, help="seconds per wrk run (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; figures are medians (default %(default)s)")
    parser.add_argument("--out", type=Path, default=results_dir() / "edge_vs_nginx.json")
    args = parser.parse_args(argv)
    report = run(args.duration, args.repeat)
    print(format_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def run(duration: int, repeat: int) -> dict[str, Any]:
    load_start = machine_load()
    with tempfile.TemporaryDirectory(prefix="cdn-bench-") as tmp, Children(Path(tmp)) as children:
        folder = Path(tmp)
        progress("starting origin, edge, nginx and varnish")
        origin = start_origin(children, make_site(folder / "site"))
        servers = [
            start_edge(children, folder, origin.url),
            start_edge(children, folder, origin.url, workers=1, name="edge-w1"),
            start_nginx(children, folder, origin.port),
            start_varnish(children, folder, origin.port),
        ]
        for server in servers:
            for label, (path, size) in OBJECTS.items():
                headers = warm(server, path, size, HIT_CHECKS[server.name])
                progress(f"{server.name} serves {label} from its cache: {_hit_evidence(server.name, headers)}")
        runs: dict[str, dict[str, list[WrkResult]]] = {label: {s.name: [] for s in servers} for label in OBJECTS}
        cpu: dict[str, dict[str, list[float]]] = {label: {s.name: [] for s in servers} for label in OBJECTS}
        peaks: dict[str, int] = {s.name: 0 for s in servers}
        at_rest = {s.name: group_rss_kib(s.child.pid) for s in servers}
        for round_no in range(1, repeat + 1):
            for label, (path, size) in OBJECTS.items():
                for server in servers:
                    used = group_cpu_seconds(server.child.pid)
                    result, peak = _drive(server, path, duration)
                    per_hit = (group_cpu_seconds(server.child.pid) - used) / max(1, result.requests) * 1e6
                    _check_still_hit(server, path, size)
                    runs[label][server.name].append(result)
                    cpu[label][server.name].append(per_hit)
                    peaks[server.name] = max(peaks[server.name], peak)
                    progress(
                        f"round {round_no}/{repeat} {label} {server.name}: {result.requests_per_s:,.0f} req/s "
                        f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms {per_hit:.0f} CPU us/hit "
                        f"errors {result.errors}"
                    )
        edge = servers[0]
        edge_hwm = status_kib(edge.child.pid, "VmHWM")
        report = _report(runs, peaks, edge_hwm, duration, repeat, load_start)
        report["cpu_us_per_hit"] = {
            label: {name: round(statistics.median(v), 1) for name, v in by.items()} for label, by in cpu.items()
        }
        report["rss_at_rest_kib"] = at_rest
        return report


def _drive(server: Server, path: str, duration: int) -> tuple[WrkResult, int]:
    """One wrk run against `server`, sampling its process group's RSS meanwhile."""
    with RssSampler(server.child.pid) as sampler:
        result = run_wrk(server.url + path, duration=duration)
    loaded = WrkResult(
        result.requests_per_s, result.p50_ms, result.p99_ms, result.requests, result.errors, machine_load()
    )
    return loaded, sampler.peak_kib


def _check_still_hit(server: Server, path: str, size: int) -> None:
    status, headers, length = fetch(server.port, path)
    if status != 200 or length != size or not HIT_CHECKS[server.name](headers):
        raise RuntimeError(f"{server.name} no longer serves {path} as a hit after the run: {status} {headers}")


def _hit_evidence(name: str, headers: dict[str, str]) -> str:
    shown = {
        "edge": ("cache-status", "age"),
        "edge-w1": ("cache-status", "age"),
        "nginx": ("x-cache-status",),
        "varnish": ("x-varnish", "age"),
    }[name]
    return ", ".join(f"{h}: {headers.get(h)}" for h in shown)


def _report(
    runs: dict[str, dict[str, list[WrkResult]]],
    peaks: dict[str, int],
    edge_hwm: int,
    duration: int,
    repeat: int,
    load_start: str,
) -> dict[str, Any]:
    medians = {label: {name: median_result(rs) for name, rs in by.items()} for label, by in runs.items()}
    ratios = {
        label: {
            "edge/nginx": by["edge"].requests_per_s / by["nginx"].requests_per_s,
            "edge/varnish": by["edge"].requests_per_s / by["varnish"].requests_per_s,
            "edge-w1/varnish": by["edge-w1"].requests_per_s / by["varnish"].requests_per_s,
            "target_edge/nginx": TARGETS[label],
            "target_edge/varnish": 1.0,
        }
        for label, by in medians.items()
    }
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {
            "wrk": f"-t{THREADS} -c{CONNECTIONS} -d{duration}s --latency",
            "repeat": repeat,
            "cpus": _cpus(),
            "python": sys.version.split()[0],
        },
        "versions": _versions(),
        "load": {"start": load_start, "end": machine_load()},
        "results": {
            label: {
                name: {**m.as_dict(), "runs_requests_per_s": [r.requests_per_s for r in runs[label][name]]}
                for name, m in by.items()
            }
            for label, by in medians.items()
        },
        "ratios": ratios,
        "peak_rss_kib": {"edge_vmhwm": edge_hwm, **{f"{name}_sampled": kib for name, kib in peaks.items()}},
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        "",
        f"cache hits, wrk {report['settings']['wrk']}, median of {report['settings']['repeat']} "
        f"(load {report['load']['start']} -> {report['load']['end']})",
        "",
        f"{'object':<7} {'server':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/hit':>10} {'errors':>7}  load",
    ]
    for label, by in report["results"].items():
        for name, m in by.items():
            lines.append(
                f"{label:<7} {name:<8} {m['requests_per_s']:>10,.0f} {m['p50_ms']:>8.2f} "
                f"{m['p99_ms']:>8.2f} {report['cpu_us_per_hit'][label][name]:>10.1f} {m['errors']:>7}  {m['load']}"
            )
    lines.append("(edge: a worker process per core; edge-w1: workers = 1)")
    lines.append("")
    for label, r in report["ratios"].items():
        met = "meets" if r["edge/nginx"] >= r["target_edge/nginx"] else "below"
        v_met = "meets" if r["edge/varnish"] >= r["target_edge/varnish"] else "below"
        lines.append(
            f"{label}: edge/nginx {r['edge/nginx']:.2f} ({met} the target {r['target_edge/nginx']}), "
            f"edge/varnish {r['edge/varnish']:.2f} ({v_met} the target {r['target_edge/varnish']}), "
            f"edge-w1/varnish {r['edge-w1/varnish']:.2f}"
        )
    rss = report["peak_rss_kib"]
    rest = report["rss_at_rest_kib"]
    lines.append(
        "RSS at rest: "
        + ", ".join(f"{name} {kib / 1024:.1f} MiB" for name, kib in rest.items())
        + " (all processes of each)"
    )
    lines.append(
        f"edge peak RSS: {rss['edge_vmhwm'] / 1024:.1f} MiB (VmHWM, leader), "
        f"{rss['edge_sampled'] / 1024:.1f} MiB sampled while serving (edge-w1 {rss['edge-w1_sampled'] / 1024:.1f}); "
        f"nginx {rss['nginx_sampled'] / 1024:.1f} MiB, varnish {rss['varnish_sampled'] / 1024:.1f} MiB "
        "(all processes of each)"
    )
    return "\n".join(lines)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _versions() -> dict[str, str]:
    found = {}
    for name, argv in {"nginx": ["nginx", "-v"], "varnish": ["varnishd", "-V"], "wrk": ["wrk", "-v"]}.items():
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            found[name] = (done.stderr or done.stdout).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            found[name] = "?"
    return found


if __name__ == "__main__":
    sys.exit(main())
