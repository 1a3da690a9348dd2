"""Where the edge spends its time on a 1 KiB cache hit: py-spy on a `cdn edge` under wrk.

Starts the origin and an edge, warms the object, drives it with wrk and meanwhile lets py-spy
sample the edge twice: a flame graph (bench/results/hit.svg) and raw collapsed stacks, from
which it prints the functions with the most samples, inclusive and self, edge/ and web_dist/
code first. Not part of `python -m bench` (py-spy is a profiling tool, not a dependency):

    pip install py-spy && python -m bench.profile_hit [--seconds 10]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import results_dir
from bench.procs import Children, progress
from bench.stack import BIN, OBJECTS, edge_hit, make_site, start_edge, start_origin, warm
from bench.wrk import CONNECTIONS, THREADS, require_wrk

OURS = ("edge/", "web_dist/")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_hit", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="seconds per py-spy recording")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--native", action="store_true", help="sample C frames too (syscalls, uvloop)")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    path, size = OBJECTS["1KiB"]
    with tempfile.TemporaryDirectory(prefix="cdn-bench-") as tmp, Children(Path(tmp)) as children:
        folder = Path(tmp)
        origin = start_origin(children, make_site(folder / "site"))
        edge = start_edge(children, folder, origin.url, workers=1)  # one process: py-spy follows one
        warm(edge, path, size, edge_hit)
        load = subprocess.Popen(
            [require_wrk(), f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{2 * args.seconds + 6}s", edge.url + path],
            stdout=subprocess.DEVNULL,
        )
        try:
            for fmt, name in (("flamegraph", "hit.svg"), ("raw", "hit.txt")):
                progress(f"py-spy recording {args.seconds} s of the edge under wrk -> {out / name}")
                subprocess.run(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(edge.child.pid),
                        "--duration",
                        str(args.seconds),
                        "--rate",
                        str(args.rate),
                        "--format",
                        fmt,
                        "--output",
                        str(out / name),
                        *(["--native"] if args.native else ["--nonblocking"]),
                    ],
                    check=True,
                    capture_output=True,
                )
        finally:
            load.terminate()
            load.wait()
    print(top_functions((out / "hit.txt").read_text(), args.top))
    return 0


def top_functions(collapsed: str, top: int) -> str:
    """Inclusive and self sample shares per function from py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if total == 0:
        return "no samples"
    lines = [f"{total} samples", "", "inclusive, our code (edge/, web_dist/):"]
    ours = [(f, n) for f, n in inclusive.most_common() if any(o in f for o in OURS)]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in ours[:top]]
    lines += ["", "self (where the CPU is), any code:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`send (uvicorn/protocols/http/httptools_impl.py:123)` without the line number or venv path."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


if __name__ == "__main__":
    sys.exit(main())
