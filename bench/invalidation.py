"""Invalidation propagation: control API accepted -> last of 3 edges applied, embedded and Redis.

Real processes, as `cdn up` runs them: a web origin, three `cdn edge`s, `cdn control` (and a
`redis-server` on a free port for the Redis mode). Every edge caches the object first, so
each invalidation really removes something. For each invalidation two figures:

- propagation: the record's `completed - created`, both stamped by the servers (the control
  API when it accepted the request, each edge when it had applied it; one machine, one clock);
- seen by the client: from sending the POST until a GET of the id says Completed (polling
  every 2 ms), what `cdn invalidate --wait` would see.

    python -m bench.invalidation [--count 50]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench import results_dir
from bench.procs import Children, free_port, machine_load, progress, wait_http

EDGES = ("e1", "e2", "e3")
TOKEN = "bench-token-0123456789abcdef"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def write_config(folder: Path, redis_url: str | None) -> tuple[Path, dict[str, int]]:
    (folder / "site").mkdir(exist_ok=True)
    (folder / "site" / "page.html").write_text("<p>page</p>")
    ports = {name: free_port() for name in ("origin", "control", *EDGES)}
    edges = "".join(f'[edges.{e}]\nlisten = "127.0.0.1:{ports[e]}"\n' for e in EDGES)
    redis = f'redis_url = "{redis_url}"\n' if redis_url else ""
    config = folder / "cdn.toml"
    config.write_text(
        f'[origins.site]\nroot = "site"\nlisten = "127.0.0.1:{ports["origin"]}"\n{edges}'
        '[distributions.site]\ndomains = ["localhost", "127.0.0.1"]\norigin = "site"\n'
        "[distributions.site.default_behavior]\ndefault_ttl = 3600\n"
        f'[control]\nlisten = "127.0.0.1:{ports["control"]}"\n{redis}'
    )
    return config, ports


def start_cdn(children: Children, config: Path, ports: dict[str, int]) -> None:
    cli = [sys.executable, "-m", "web_dist.cli", "--log-level", "warning"]
    env = {"CDN_CONTROL_TOKEN": TOKEN}
    origin = children.spawn("origin", [*cli, "origin", "--config", str(config), "--name", "site"])
    wait_http(origin, ports["origin"])
    control = children.spawn("control", [*cli, "control", "--config", str(config)], env=env)
    wait_http(control, ports["control"], "/health")
    for edge in EDGES:
        child = children.spawn(edge, [*cli, "edge", "--config", str(config), "--name", edge], env=env)
        wait_http(child, ports[edge], "/_cdn/health")


def measure(ports: dict[str, int], count: int) -> dict[str, Any]:
    api = f"http://127.0.0.1:{ports['control']}/distributions/site/invalidations"
    auth = {"authorization": f"Bearer {TOKEN}"}
    propagation, seen = [], []
    with httpx.Client(timeout=30) as client:
        for i in range(count + 3):  # the first 3 warm connections up and are not counted
            for edge in EDGES:
                client.get(f"http://127.0.0.1:{ports[edge]}/page.html")
            started = time.perf_counter()
            record = client.post(api, json={"paths": ["/page.html"]}, headers=auth).json()
            while record["status"] != "Completed":
                if time.perf_counter() - started > 30:
                    raise RuntimeError(f"{record['id']} not completed in 30 s: {record}")
                time.sleep(0.002)
                record = client.get(f"{api}/{record['id']}", headers=auth).json()
            if i >= 3:
                seen.append(time.perf_counter() - started)
                propagation.append(record["completed"] - record["created"])
    return {"propagation_ms": _summary(propagation), "seen_by_client_ms": _summary(seen), "count": count}


def _summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {
        "median": round(statistics.median(ms), 2),
        "p95": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "max": round(ms[-1], 2),
    }


def run_mode(mode: str, count: int, folder: Path) -> dict[str, Any]:
    with Children(folder) as children:
        redis_url = None
        if mode == "redis":
            port = free_port()
            redis = children.spawn(
                "redis",
                [
                    REDIS,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(folder),
                ],
            )
            redis_url = f"redis://127.0.0.1:{port}/0"
            _wait_redis(redis, port)
        config, ports = write_config(folder, redis_url)
        start_cdn(children, config, ports)
        progress(f"{mode}: {count} invalidations, 3 edges")
        return {"mode": mode, **measure(ports, count)}


def _wait_redis(child: Any, port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start:\n{child.tail()}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.invalidation", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args(argv)
    modes = ["embedded"] + (["redis"] if Path(REDIS).exists() else [])
    rows = []
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix=f"bench-inv-{mode}-") as tmp:
            rows.append(run_mode(mode, args.count, Path(tmp)))
    print(f"\nInvalidation propagation to 3 edges, {args.count} invalidations each (load {machine_load()})")
    print(f"{'mode':<10} {'propagation ms (median / p95 / max)':<38} {'seen by client ms (median / p95 / max)'}")
    for row in rows:
        p, s = row["propagation_ms"], row["seen_by_client_ms"]
        print(
            f"{row['mode']:<10} {p['median']:>8} / {p['p95']:>8} / {p['max']:>8}        "
            f"{s['median']:>8} / {s['p95']:>8} / {s['max']:>8}"
        )
    out = results_dir() / "invalidation.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"(written to {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
