"""Uploads through the edge: does the edge's memory stay flat while a large PUT goes through?

`cdn origin` (a folder) and `cdn edge` (a behavior allowing PUT) run as child processes; a
client streams a PUT of `--size-mib` (default 1024) through the edge, once with
Content-Length and an x-amz-checksum-sha256 the origin verifies, once chunked. The edge's
RSS is sampled every 50 ms throughout; the figures are its RSS before, its peak during, the
difference, and the throughput. A streaming edge's peak stays within a few MiB of where it
started, whatever the size; one that buffered would grow by the size of the body.

    python -m bench.upload [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench import results_dir
from bench.procs import (
    Children,
    RssSampler,
    free_port,
    machine_load,
    progress,
    status_kib,
    wait_http,
)
from bench.stack import BIN, MIB, start_origin

BLOCK = bytes(range(256)) * 4096  # 1 MiB

UPLOAD_TOKEN = "bench-upload-token-0123456789"  # writes through an edge need one


def write_config(folder: Path, origin_port: int, edge_port: int, limit: int) -> Path:
    config = folder / "upload.toml"
    config.write_text(f"""\
[origins.bucket]
url = "http://127.0.0.1:{origin_port}"
read_timeout = 120

[edges.upload-edge]
listen = "127.0.0.1:{edge_port}"
max_upload_bytes = {limit}

[distributions.site]
domains = ["127.0.0.1"]
origin = "bucket"
upload_token = "{UPLOAD_TOKEN}"

[[distributions.site.behaviors]]
path = "/uploads/*"
methods = ["GET", "HEAD", "PUT", "DELETE"]
""")
    return config


def blocks(count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield BLOCK


def put(port: int, path: str, mib: int, *, chunked: bool) -> tuple[int, float]:
    """Stream `mib` MiB as one PUT; (status, seconds)."""
    headers = {"content-type": "application/octet-stream", "authorization": f"Bearer {UPLOAD_TOKEN}"}
    if not chunked:
        digest = hashlib.sha256()
        for block in blocks(mib):
            digest.update(block)
        headers |= {
            "content-length": str(mib * MIB),
            "x-amz-checksum-sha256": base64.b64encode(digest.digest()).decode(),
        }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    conn.request("PUT", path, body=blocks(mib), headers=headers, encode_chunked=chunked)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, time.perf_counter() - started


def run(size_mib: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="cdn-bench-upload-") as tmp, Children(Path(tmp)) as children:
        folder = Path(tmp)
        (folder / "bucket" / "uploads").mkdir(parents=True)
        origin, edge_port = start_origin(children, folder / "bucket"), free_port()
        config = write_config(folder, origin.port, edge_port, 2 * size_mib * MIB)
        edge = children.spawn(
            "edge",
            [str(BIN / "cdn"), "--log-level", "warning", "edge", "--config", str(config), "--name", "upload-edge"],
        )
        wait_http(edge, edge_port, "/_cdn/health")
        put(edge_port, "/uploads/warm.bin", 8, chunked=False)  # pools and buffers exist before the baseline
        for chunked in (False, True):
            mode = "chunked" if chunked else "content-length + sha256"
            progress(f"PUT {size_mib} MiB through the edge ({mode})")
            before = status_kib(edge.pid, "VmRSS")
            with RssSampler(edge.pid) as sampler:
                status, seconds = put(edge_port, f"/uploads/big-{int(chunked)}.bin", size_mib, chunked=chunked)
            stored = (folder / "bucket" / "uploads" / f"big-{int(chunked)}.bin").stat().st_size
            rows.append(
                {
                    "mode": mode,
                    "size_mib": size_mib,
                    "status": status,
                    "stored_bytes": stored,
                    "edge_rss_before_mib": round(before / 1024, 1),
                    "edge_rss_peak_mib": round(sampler.peak_kib / 1024, 1),
                    "edge_rss_growth_mib": round((sampler.peak_kib - before) / 1024, 1),
                    "seconds": round(seconds, 2),
                    "mib_per_s": round(size_mib / seconds, 1),
                }
            )
            (folder / "bucket" / "uploads" / f"big-{int(chunked)}.bin").unlink()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upload", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args(argv)
    progress(f"machine load {machine_load()}")
    rows = run(args.size_mib)
    print(
        f"\n{'mode':<26} {'status':>6} {'stored MiB':>10} {'RSS before':>10} {'RSS peak':>9} {'growth':>7} {'MiB/s':>7}"
    )
    for r in rows:
        print(
            f"{r['mode']:<26} {r['status']:>6} {int(r['stored_bytes']) / MIB:>10.0f} {r['edge_rss_before_mib']:>9}M "  # type: ignore[call-overload]
            f"{r['edge_rss_peak_mib']:>8}M {r['edge_rss_growth_mib']:>6}M {r['mib_per_s']:>7}"
        )
    out = results_dir() / "upload.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nfigures written to {out}")
    ok = all(r["status"] in (200, 201) and r["stored_bytes"] == args.size_mib * MIB for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
