"""How many LL-HLS viewers one edge holds on this machine, measured with `cdn loadtest`'s viewers.

    .venv/bin/python -m bench.loadtest_capacity [--steps 250,500,1000,1500,2000] [--steady 20]
        [--renditions 2] [--ramp 100] [--segment-seconds 2] [--part-seconds 0.5]

A media origin (test pattern, a 2-rung ABR ladder, one rendition if the ladder will not start)
and one edge run as child processes, as `cdn` starts them; the virtual viewers run in this process (one
asyncio loop, one pooled aiohttp client), so origin, edge and load tester share the machine's
cores. Each step ramps up to its viewer count at `--ramp` viewers/s, holds `--steady` seconds,
and stops; the next step runs only while the stall ratio stays under 1 % (the capacity is the
largest step that does). Per step: stall ratio, startup p95, fetch p95, latency p50, errors,
origin requests per segment (the edge's origin requests during the step / segment durations
elapsed, all renditions together), and CPU of the load tester (per viewer, % of one core),
the edge and the origin. Bounded: the default steps take about two and a half minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import results_dir
from bench.procs import Children, cpu_seconds, free_port, machine_load, progress, wait_http
from streaming.loadtest import LoadPlan, run_load
from streaming.loadtest_cli import run_coroutine as run_loop
from streaming.playlist import PlaylistError, parse_media, parse_multivariant
from streaming.report import summarize

CDN = [sys.executable, "-m", "web_dist.cli", "--log-level", "warning"]
MASTER = "/live/bench/master.m3u8"
STALL_LIMIT = 0.01
LADDER = '[{name = "lo", width = 256, height = 144, bitrate = 150000}, {name = "hi", width = 320, height = 180, bitrate = 300000}]'


ADMIN_TOKEN = "bench-admin-token-0123456789"  # the edge's admin listener needs one


def write_config(folder: Path, ports: tuple[int, int, int], renditions: int, segment: float, part: float) -> Path:
    ladder = f"renditions = {LADDER}\n" if renditions > 1 else ""
    config = folder / "capacity.toml"
    config.write_text(f"""\
[origins.media]
kind = "media"
listen = "127.0.0.1:{ports[0]}"

[origins.media.options]
segment_seconds = {segment}
part_seconds = {part}
window_seconds = {max(12.0, 3 * segment)}
rtmp_listen = "127.0.0.1:{free_port()}"

[origins.media.options.streams.bench]
source = "test"
width = 320
height = 180
bitrate = 300000
{ladder}
[edges.bench-edge]
listen = "127.0.0.1:{ports[1]}"
admin_listen = "127.0.0.1:{ports[2]}"
admin_token = "{ADMIN_TOKEN}"

[distributions.live]
kind = "streaming"
domains = ["127.0.0.1", "localhost"]
origin = "media"

[[distributions.live.behaviors]]
path = "/live/*.m3u8"
query_keys = ["_HLS_msn", "_HLS_part"]
min_ttl = 0
default_ttl = 1
max_ttl = 1
""")
    return config


def stream_state(origin: str) -> tuple[str, int]:
    """("live" / "ended" / ..., renditions) of the bench stream, as the origin lists it."""
    with urllib.request.urlopen(origin + "/streams", timeout=5) as response:
        stream = json.loads(response.read())["streams"][0]
    return stream["state"], len(stream.get("renditions", ["source"]))


def wait_live(origin: str, limit: float = 30.0) -> bool:
    """Until the stream has a whole segment listed; False if it ended or never came."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        state, _ = stream_state(origin)
        if state == "ended":
            return False
        try:
            with urllib.request.urlopen(origin + MASTER, timeout=5) as response:
                uri = parse_multivariant(response.read().decode())[0].uri
            with urllib.request.urlopen(f"{origin}/live/bench/{uri}", timeout=5) as response:
                if any(s.uri is not None for s in parse_media(response.read().decode()).segments):
                    return True
        except (OSError, IndexError, PlaylistError):
            pass
        time.sleep(0.2)
    return False


def step(edge: str, admin: str, pids: dict[str, int], viewers: int, ramp: float, steady: float) -> dict[str, Any]:
    plan = LoadPlan(
        (edge,),
        MASTER,
        viewers=viewers,
        duration=viewers / ramp + steady,
        ramp=ramp,
        metrics=(admin + f"/metrics.json?token={ADMIN_TOKEN}",),
        timeout=15,
        label=f"{viewers} viewers",
    )
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    mine, started = cpu_seconds(), time.monotonic()
    figures = summarize(run_loop(run_load(plan, progress=None)))
    elapsed = time.monotonic() - started
    tester_cores = (cpu_seconds() - mine) / elapsed
    row = {
        "viewers": viewers,
        "stall_ratio": figures["stall_ratio"],
        "stalls": figures["stalls"],
        "never_started": figures["startup"]["never_started"],
        "startup_p95": figures["startup"]["p95"],
        "fetch_p95": figures["fetch_p95"],
        "latency_p50": figures["latency_p50"],
        "errors": figures["errors"],
        "request_rate": figures["request_rate"],
        "renditions": figures["renditions"],
        "offload": figures.get("offload"),
        "origin_requests_per_segment": figures.get("origin_requests_per_segment"),
        "tester_cpu_percent": round(100 * tester_cores, 1),
        "tester_cpu_percent_per_viewer": round(100 * tester_cores / viewers, 4),
        "load": machine_load(),
    }
    for name, pid in pids.items():
        row[f"{name}_cpu_percent"] = round(100 * (cpu_seconds(pid) - cpu[name]) / elapsed, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest_capacity")
    parser.add_argument("--steps", default="250,500,1000,1500,2000", help="viewer counts, comma-separated")
    parser.add_argument("--steady", type=float, default=20.0, help="seconds held at each step after the ramp")
    parser.add_argument("--ramp", type=float, default=100.0, help="viewers started per second")
    parser.add_argument("--renditions", type=int, choices=[1, 2], default=2)
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--part-seconds", type=float, default=0.5)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Children(Path(tmp)) as children:
        ports = free_port(), free_port(), free_port()
        origin_url, edge_url, admin_url = (f"http://127.0.0.1:{p}" for p in ports)
        renditions = args.renditions
        origin = None
        while origin is None:
            config = write_config(Path(tmp), ports, renditions, args.segment_seconds, args.part_seconds)
            origin = children.spawn("origin", [*CDN, "origin", "--config", str(config), "--name", "media"])
            wait_http(origin, ports[0], "/streams")
            if not wait_live(origin_url):
                if renditions == 1:
                    raise RuntimeError(f"the test stream did not start:\n{origin.tail()}")
                progress("the ABR ladder stream did not start; measuring one rendition instead")
                children.stop(origin)
                origin, renditions = None, 1
        edge = children.spawn("edge", [*CDN, "edge", "--config", str(config), "--name", "bench-edge"])
        wait_http(edge, ports[1], "/_cdn/health")
        wait_http(edge, ports[2], "/health")
        pids = {"edge": edge.pid, "origin": origin.pid}
        for viewers in [int(v) for v in args.steps.split(",") if v]:
            progress(f"{viewers} viewers: ramp {viewers / args.ramp:.0f} s, then {args.steady:g} s")
            row = step(edge_url, admin_url, pids, viewers, args.ramp, args.steady)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if row["stall_ratio"] >= STALL_LIMIT or row["never_started"]:
                break
    return report(rows, renditions, args)


def report(rows: list[dict[str, Any]], renditions: int, args: argparse.Namespace) -> int:
    held = [r for r in rows if r["stall_ratio"] < STALL_LIMIT and not r["never_started"]]
    best = held[-1] if held else None
    print(
        f"\n{'viewers':>8} {'stall %':>8} {'startup p95':>11} {'fetch p95':>9} {'latency':>8} "
        f"{'req/s':>7} {'origin/seg':>10} {'tester %':>8} {'edge %':>7} {'origin %':>8}"
    )
    for r in rows:
        print(
            f"{r['viewers']:>8} {100 * r['stall_ratio']:>8.2f} {r['startup_p95'] or 0:>11.2f} "
            f"{r['fetch_p95'] or 0:>9.3f} {r['latency_p50'] or 0:>8.2f} {r['request_rate']:>7.0f} "
            f"{r['origin_requests_per_segment'] or 0:>10.1f} {r['tester_cpu_percent']:>8.0f} "
            f"{r['edge_cpu_percent']:>7.0f} {r['origin_cpu_percent']:>8.0f}"
        )
    if best is None:
        print(f"no step held a stall ratio under {STALL_LIMIT:.0%}")
    else:
        print(
            f"capacity: {best['viewers']} concurrent viewers of a {renditions}-rendition LL-HLS stream "
            f"({args.segment_seconds:g} s segments, {args.part_seconds:g} s parts) "
            f"(stall ratio {best['stall_ratio']:.2%}); origin requests per segment "
            f"{best['origin_requests_per_segment']}; load tester CPU per viewer "
            f"{best['tester_cpu_percent_per_viewer']:.3f} % of a core (all on one machine, shared cores)"
        )
    out = results_dir() / "loadtest_capacity.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "renditions": renditions,
                "segment_seconds": args.segment_seconds,
                "part_seconds": args.part_seconds,
                "steps": rows,
                "steady_seconds": args.steady,
                "ramp": args.ramp,
                "capacity": best and best["viewers"],
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
