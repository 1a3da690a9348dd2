"""The load generator every HTTP benchmark here uses: Debian's wrk, run and its output parsed."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

THREADS = 2
CONNECTIONS = 50
DURATION = 10  # seconds
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors of any kind plus non-2xx/3xx responses
    load: str = ""  # machine load average when the run ended

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed (Debian package `wrk`; `make bench` installs it)")
    return path


def run_wrk(
    url: str,
    *,
    threads: int = THREADS,
    connections: int = CONNECTIONS,
    duration: int = DURATION,
    headers: Sequence[str] = (),
) -> WrkResult:
    """Drive `url` with wrk and return what it measured."""
    argv = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    for header in headers:
        argv += ["-H", header]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


def parse_wrk(text: str) -> WrkResult:
    """requests/s, p50, p99 (ms), request count and errors from wrk --latency output."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    count = re.search(r"^\s*(\d+) requests in", text, re.M)
    latencies = {pct: float(value) * _UNITS[unit] for pct, value, unit in _LATENCY.findall(text)}
    if rate is None or count is None or set(latencies) != {"50", "99"}:
        raise ValueError(f"unexpected wrk output:\n{text}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non_ok = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors += int(non_ok.group(1)) if non_ok else 0
    return WrkResult(float(rate.group(1)), latencies["50"], latencies["99"], int(count.group(1)), errors)


def median_result(results: Sequence[WrkResult]) -> WrkResult:
    """Each figure's median over repeated runs (the load shown is the last run's)."""
    return WrkResult(
        requests_per_s=statistics.median(r.requests_per_s for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=int(statistics.median(r.requests for r in results)),
        errors=sum(r.errors for r in results),
        load=results[-1].load,
    )
