"""What HTTPS costs on a cache hit, edge and nginx side by side, with the same certificate.

Starts a web origin with a 1 KiB and a 1 MiB object, one `cdn edge` (granian, its default
workers: one per core) with its HTTP and HTTPS listeners on the same cache, the same edge
with a second certificate chosen by SNI (`edge-sni`: its HTTPS listener is uvicorn on Python's
ssl, web_dist/server/sni.py), and nginx (`proxy_cache`, `worker_processes auto`) with an HTTP and an
HTTPS listener using the edge's certificate (one ECDSA P-256 certificate, TLS 1.3 negotiated). Each cache is warmed and
checked to answer hits on both listeners, then each (server, object, listener) is driven with
the same wrk settings, one after the other; 1 KiB also over TLS with a new connection per
request (`Connection: close`: the handshake too). Prints requests/s, the TLS/plain ratio per
server and edge/nginx per row; the same goes to bench/results/https_hits.json.

    python -m bench.https_hits [--duration 5]

wrk speaks HTTP/1.1 only: this measures TLS, not h2. On a shared machine, compare figures of
one run only.
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import write_results
from bench.procs import Children, free_port, machine_load, progress, wait_http, wait_ready
from bench.stack import (
    BIN,
    EDGE_NAME,
    HIT_CHECKS,
    OBJECTS,
    Server,
    edge_hit,
    make_site,
    start_nginx,
    start_origin,
    warm,
    write_edge_config,
)
from bench.wrk import run_wrk
from web_dist.cli.tls import CertFiles, make_server_cert

DURATION = 5  # seconds per wrk run
MODES = ("http", "https", "https new connection per request")


def start_tls_edge(
    children: Children, folder: Path, origin_url: str, files: CertFiles, *, sni: CertFiles | None = None
) -> Server:
    """`cdn edge` with HTTPS on `files`; with `sni`, a second certificate chosen by SNI."""
    port, https_port = free_port(), free_port()
    name = "edge" if sni is None else "edge-sni"
    tls = f'https_listen = "127.0.0.1:{https_port}"\ntls_cert = "{files.cert}"\ntls_key = "{files.key}"'
    if sni is not None:
        tls += f'\ncertificates = [{{ cert = "{sni.cert}", key = "{sni.key}" }}]'
    config = write_edge_config(folder, origin_url, port, edge_lines=tls, name=name)
    child = children.spawn(name, [str(BIN / "cdn"), "edge", "--config", str(config), "--name", EDGE_NAME])
    wait_http(child, port, "/_cdn/health", timeout=90.0)
    wait_ready(child, "ready edge")
    return Server(name, child, port, https_port)


def is_hit(name: str) -> Callable[[Mapping[str, str]], bool]:
    return HIT_CHECKS.get(name, edge_hit)


def check_tls_hit(server: Server, path: str, size: int, ca: Path) -> str:
    """One GET over TLS (verified against the local CA): a whole hit; the TLS version."""
    assert server.https_port is not None
    conn = http.client.HTTPSConnection(
        "localhost", server.https_port, timeout=10, context=ssl.create_default_context(cafile=str(ca))
    )
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        if resp.status != 200 or len(body) != size or not is_hit(server.name)(headers):
            raise RuntimeError(f"{server.name} over TLS: {path} answered {resp.status}, {len(body)} bytes, {headers}")
        assert conn.sock is not None
        return str(conn.sock.version())
    finally:
        conn.close()


def run(duration: int) -> dict[str, Any]:
    report: dict[str, Any] = {"load_at_start": machine_load(), "duration_s": duration, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="cdn-bench-https-") as tmp, Children(Path(tmp)) as children:
        folder = Path(tmp)
        files = make_server_cert(folder / "tls", ["localhost", "127.0.0.1"])
        origin = start_origin(children, make_site(folder / "site"))
        other = make_server_cert(folder / "tls", ["other.test"], stem="other")
        servers = [
            start_tls_edge(children, folder, origin.url, files),
            start_tls_edge(children, folder, origin.url, files, sni=other),
            start_nginx(children, folder, origin.port, tls=(files.cert, files.key)),
        ]
        for server in servers:
            for path, size in OBJECTS.values():
                warm(server, path, size, is_hit(server.name), in_a_row=8)
                report["tls_version"] = check_tls_hit(server, path, size, files.ca)
        for label, (path, _) in OBJECTS.items():
            for mode in MODES:
                if mode.endswith("request") and label != "1KiB":
                    continue
                for server in servers:
                    scheme, port = ("http", server.port) if mode == "http" else ("https", server.https_port)
                    result = run_wrk(
                        f"{scheme}://127.0.0.1:{port}{path}",
                        duration=duration,
                        headers=["Connection: close"] if mode.endswith("request") else (),
                    )
                    report["runs"].setdefault(label, {}).setdefault(mode, {})[server.name] = result.as_dict()
                    progress(
                        f"{label} {mode} {server.name}: {result.requests_per_s:,.0f} req/s "
                        f"p99 {result.p99_ms:.2f} ms errors {result.errors}"
                    )
    report["load_at_end"] = machine_load()
    return report


def format_table(report: dict[str, Any]) -> str:
    """req/s and x plain of each server, per object and listener, then edge/nginx."""
    names = list(next(iter(report["runs"].values()))["http"])
    lines = [
        f"{'object':<6} {'listener':<33}"
        + "".join(f" {n + ' req/s':>15} {'x plain':>7}" for n in names)
        + f" {'edge/nginx':>10}"
    ]
    for label, modes in report["runs"].items():
        for mode, by in modes.items():
            cells = ""
            for name in names:
                rate, plain = by[name]["requests_per_s"], modes["http"][name]["requests_per_s"]
                cells += f" {rate:>15,.0f} {rate / plain if plain else 0:>6.2f}x"
            ratio = by["edge"]["requests_per_s"] / by["nginx"]["requests_per_s"] if by["nginx"]["requests_per_s"] else 0
            lines.append(f"{label:<6} {mode:<33}{cells} {ratio:>10.2f}")
    lines.append(
        f"TLS {report.get('tls_version')}; load average {report['load_at_start']} at start, "
        f"{report['load_at_end']} at the end"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.https_hits", description=__doc__.split("\n")[0] if __doc__ else None
    )
    parser.add_argument("--duration", type=int, default=DURATION, help="seconds per wrk run (default %(default)s)")
    args = parser.parse_args(argv)
    report = run(args.duration)
    print(format_table(report))
    write_results("https_hits", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
