"""`cdn loadtest`: arguments, the run (or `--compare`'s two runs), reports and thresholds.

This module imports only the standard library at load time, so `cdn` can build its argument
parser without loading aiohttp; the load tester itself is imported when the command runs.

Exit codes: 0 all thresholds met, 3 a threshold exceeded (or, playing a stream, no viewer
started), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

THRESHOLD_EXCEEDED = 3
SHOWN_ERROR_SOURCES = 10  # where requests failed, most often first, in the summary printed
# option -> (figure, description); a run fails when the figure is above the limit
THRESHOLDS: dict[str, tuple[str, str]] = {
    "max_stall_ratio": ("stall_ratio", "stall ratio"),
    "max_p95_startup": ("startup.p95", "p95 startup (s)"),
    "max_error_ratio": ("error_ratio", "errors per request"),
    "max_p95_fetch": ("fetch_p95", "p95 segment fetch (s)"),
    "max_p95_latency": ("latency_p95", "p95 latency behind live (s)"),
    "max_never_started": ("startup.never_started", "viewers that never started"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help says each option's default, except where there is none to say (None, [], off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, [], False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where viewers go")
    where.add_argument(
        "--edge",
        action="append",
        default=[],
        metavar="URL",
        help="an edge's base URL (repeat: viewers are spread round-robin)",
    )
    where.add_argument("--router", metavar="URL", help="a request router's base URL (viewers follow its 302)")
    where.add_argument("--origin", metavar="URL", help="the origin's base URL (load it directly, or for --compare)")
    where.add_argument("--config", type=Path, help="take edges (and their admin /metrics.json) from this config")
    where.add_argument(
        "--path",
        help="the stream's multivariant playlist, its DASH MPD (/live/STREAM/manifest.mpd)"
        " or a recording's playlist (/recordings/STREAM/ID/master.m3u8) (default: with --config, "
        "the first stream of its streaming distribution; else /live/demo/master.m3u8)",
    )
    where.add_argument(
        "--host", help="Host header to send (default: with --config, the streaming distribution's first domain)"
    )
    where.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="URL",
        help="an edge's metrics JSON (admin listener /metrics.json); repeat per edge",
    )
    load = parser.add_argument_group("load")
    load.add_argument("--viewers", type=_positive_int, default=100, help="virtual viewers (or web clients)")
    load.add_argument("--duration", type=_positive_float, default=60.0, help="hard bound, seconds")
    load.add_argument("--ramp", type=_positive_float, default=50.0, help="viewers started per second")
    load.add_argument("--connections", type=_positive_int, default=0, help="pooled connections (default: viewers + 16)")
    load.add_argument("--timeout", type=_positive_float, default=10.0, help="per request, seconds")
    load.add_argument("--cacert", help="https:// targets: trust this CA certificate (PEM), as curl --cacert")
    load.add_argument("--compare", action="store_true", help="run the same load at --origin, then at the edges")
    web = parser.add_argument_group("web mode")
    web.add_argument("--mode", choices=["hls", "web"], default="hls", help="play a stream, or fetch --object paths")
    web.add_argument("--object", action="append", default=[], metavar="PATH", help="an object path, most popular first")
    web.add_argument("--objects-file", type=Path, help="object paths, one a line, most popular first")
    web.add_argument("--zipf", type=_positive_float, default=1.0, help="Zipf exponent of popularity")
    web.add_argument("--think", type=float, default=0.5, help="mean seconds between a client's requests")
    out = parser.add_argument_group("output and thresholds (exceeded: exit code 3)")
    out.add_argument("--json", type=Path, default=Path("loadtest.json"), help="JSON result file")
    out.add_argument("--html", type=Path, default=Path("loadtest.html"), help="HTML report file")
    out.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    for option, (_, what) in THRESHOLDS.items():
        out.add_argument("--" + option.replace("_", "-"), type=float, metavar="N", help=f"largest {what} allowed")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def exceeded(figures: Mapping[str, Any], limits: Mapping[str, float | None]) -> list[str]:
    """Which thresholds `figures` break, as sentences (a figure the run lacks breaks nothing)."""
    failed = []
    for option, limit in limits.items():
        if limit is None:
            continue
        key, what = THRESHOLDS[option]
        value = dig(figures, key)
        if value is not None and value > limit:
            failed.append(f"{what} {value:g} > {limit:g}")
    return failed


def checks(figures: Mapping[str, Any], limits: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """Each threshold given: its option, what it limits, the limit, the run's value and whether
    it passed (a figure the run lacks passes, as in `exceeded`)."""
    out = []
    for option, limit in limits.items():
        if limit is None:
            continue
        key, what = THRESHOLDS[option]
        value = dig(figures, key)
        out.append(
            {
                "option": "--" + option.replace("_", "-"),
                "what": what,
                "limit": limit,
                "value": value,
                "passed": value is None or value <= limit,
            }
        )
    return out


def targets_of(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(edge URLs, metrics URLs) from the arguments and the config."""
    edges, metrics = list(args.edge), list(args.metrics)
    if args.config is not None:
        from web_dist.config import load_config

        config = load_config(args.config)
        for edge in config.edges.values():
            edges.append(edge.url)
            if edge.admin_listen:
                token = f"?token={edge.admin_token}" if edge.admin_token else ""
                metrics.append(f"http://{edge.admin_listen}/metrics.json{token}")
    if args.router:
        edges = [args.router]
    return tuple(edges), tuple(metrics)


def stream_of(args: argparse.Namespace) -> tuple[str, str | None]:
    """(playlist path, Host) to load: as given, else the config's streaming distribution (its
    first domain) and the first stream of its media origin, else the demo stream's path."""
    path, host = args.path, args.host
    if args.config is not None and (path is None or host is None):
        from web_dist.config import load_config

        config = load_config(args.config)
        dist = next((d for d in config.distributions if d.kind == "streaming"), None)
        if dist is not None:
            host = host or dist.domains[0]
            streams = (
                list(config.origins[dist.origin].options.get("streams", {})) if dist.origin in config.origins else []
            )
            if path is None and streams:
                path = f"/live/{streams[0]}/master.m3u8"
    return path or "/live/demo/master.m3u8", host


def run(args: argparse.Namespace) -> int:
    from streaming.loadtest import LoadPlan, run_load
    from streaming.report import summarize, write_html, write_json

    edges, metrics = targets_of(args)
    if args.compare and (not args.origin or not edges):
        return _usage("--compare needs --origin and the edges (--edge, --router or --config)")
    if not edges and not args.origin:
        return _usage("give --edge URL (repeatable), --router URL, --config FILE or --origin URL")
    objects = list(args.object)
    if args.objects_file is not None:
        objects += [line.strip() for line in args.objects_file.read_text().splitlines() if line.strip()]
    if args.mode == "web" and not objects:
        return _usage("web mode needs --object PATH or --objects-file FILE")
    path, host = stream_of(args)
    common: dict[str, Any] = dict(
        path=path,
        viewers=args.viewers,
        duration=args.duration,
        ramp=args.ramp,
        connections=args.connections,
        host=host,
        timeout=args.timeout,
        mode=args.mode,
        objects=tuple(objects),
        zipf=args.zipf,
        think=args.think,
        cacert=args.cacert,
    )
    plans = []
    if args.origin and (args.compare or not edges):
        plans.append(LoadPlan((args.origin,), label="origin", **common))
    if edges:
        plans.append(LoadPlan(edges, metrics=metrics, label="edges" if not args.router else "router", **common))
    progress = None if args.quiet else sys.stderr
    runs = []
    for plan in plans:
        done = run_coroutine(run_load(plan, progress=progress))
        runs.append(summarize(done) | {"error_sources": done.tally.error_report()})
    if plans[0].label == "origin":  # every request of a run straight at the origin is an origin request
        direct = runs[0]
        direct.update(origin_requests=direct["requests"], offload=0.0)
        if direct.get("segment_seconds") and direct["seconds"]:
            direct["origin_requests_per_segment"] = round(
                direct["requests"] / (direct["seconds"] / direct["segment_seconds"]), 2
            )
    limits = {option: getattr(args, option) for option in THRESHOLDS}
    failed = exceeded(runs[-1], limits)
    if args.mode == "hls" and not runs[-1]["startup"]["viewers"]:
        failed.append("no viewer started playing")  # a stall ratio of 0 would pass otherwise
    result: dict[str, Any] = {
        "runs": runs,
        "thresholds": {k: v for k, v in limits.items() if v is not None},
        "checks": checks(runs[-1], limits),
        "failed": failed,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["cdn", *sys.argv[1:]]),
    }
    if len(runs) == 2:
        result["comparison"] = compare(runs[0], runs[1])
    write_json(result, args.json)
    write_html(result, args.html)
    _print_summary(result, args)
    return THRESHOLD_EXCEEDED if failed else 0


def compare(direct: Mapping[str, Any], edges: Mapping[str, Any]) -> dict[str, Any]:
    """Origin offload and QoE difference between a run at the origin and one through edges."""
    through = edges.get("origin_requests")
    out: dict[str, Any] = {
        "origin_requests_direct": direct["requests"],
        "origin_requests_through_edges": through,
        "offload": None if through is None or not direct["requests"] else round(1 - through / direct["requests"], 4),
    }
    for key in ("stall_ratio", "startup.p95", "fetch_p95", "latency_p50", "error_ratio", "request_p95"):
        a, b = (dig(r, key) for r in (direct, edges))
        if a is not None or b is not None:
            out[key] = {"origin": a, "edges": b, "difference": None if a is None or b is None else round(b - a, 4)}
    return out


def dig(figures: Mapping[str, Any], key: str) -> Any:
    value: Any = figures
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def run_coroutine(coro: Any) -> Any:
    """Run `coro` on a fresh event loop: uvloop's when installed (cheaper per request)."""
    import asyncio

    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _usage(message: str) -> int:
    print(f"cdn loadtest: {message}", file=sys.stderr)
    return 2


def _print_summary(result: Mapping[str, Any], args: argparse.Namespace) -> None:
    for r in result["runs"]:
        startup = r.get("startup", {})
        print(
            f"{r['label']}: {r['viewers_started']} viewers, {r['requests']} requests, "
            f"errors {sum(r['errors'].values())}, stalls {r.get('stalls', '-')}, "
            f"stall ratio {r.get('stall_ratio', '-')}, startup p95 {startup.get('p95', '-')} s, "
            f"origin requests {r.get('origin_requests', '-')}"
        )
        for source in r.get("error_sources", [])[:SHOWN_ERROR_SOURCES]:
            print(f"  {source['count']} x {source['kind']} from {source['edge']}: {source['url']}")
    if "comparison" in result:
        print(f"origin offload through the edges: {result['comparison']['offload']}")
    for sentence in result["failed"]:
        print(f"threshold exceeded: {sentence}")
    print(f"report: {args.json} {args.html}")
