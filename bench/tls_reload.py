"""What a certificate reload costs the connections arriving meanwhile (web_dist/server/cert_reload.py).

One granian HTTPS listener (as an edge's) answers a tiny response; 4 clients open a new TLS
connection per request, without pause, while the listener reloads its certificate every
0.2 s. Prints the requests answered and the connections that failed, per reload. A reload
starts a second granian server; the old one stops accepting and serves the connections it has
accepted for a grace period (30 s) before it stops, so none is cut. Before, it stopped at once,
closing the connections it had accepted and not yet read a request from (a handshake under
way): about 1.5 per reload were cut. Each old server still in its grace wakes for every new
connection (finding none to accept): with a reload every 0.2 s, 40 of them at the end, that
costs this bench some of its rate; an edge reloads once per renewal.

    python -m bench.tls_reload [--reloads 40]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import write_results
from bench.procs import machine_load
from web_dist.cli.tls import make_server_cert
from web_dist.server import SharedApp, start_server

CLIENTS = 4
EVERY = 0.2  # seconds between reloads


async def tiny(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


async def measure(reloads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cdn-bench-tls-reload-") as tmp:
        files = make_server_cert(Path(tmp), ["localhost"])
        server = await start_server(
            SharedApp(tiny),
            name="https",
            engine="granian",
            tls_cert=files.cert,
            tls_key=files.key,
            tls_check_interval=0,
        )
        trust = ssl.create_default_context(cafile=str(files.ca))
        outcomes: Counter[str] = Counter()
        running = True

        async def client() -> None:
            while running:
                try:
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", server.port, ssl=trust, server_hostname="localhost"
                    )
                    writer.write(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                    answer = await reader.read()
                    writer.close()
                    outcomes["answered" if answer.startswith(b"HTTP/1.1 200") else "bad answer"] += 1
                except OSError as exc:
                    outcomes[type(exc).__name__] += 1

        clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        for _ in range(reloads):
            await asyncio.sleep(EVERY)
            await server.reload_tls()
        await asyncio.sleep(EVERY)
        running = False
        await asyncio.gather(*clients)
        retired = len(server._draining)
        await server.stop()
    failed = sum(n for kind, n in outcomes.items() if kind != "answered")
    return {
        "reloads": reloads,
        "outcomes": dict(outcomes),
        "failed_per_reload": round(failed / max(1, reloads), 2),
        "old_servers_in_grace_at_end": retired,
        "load": machine_load(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tls_reload", description=__doc__.split("\n")[0] if __doc__ else None
    )
    parser.add_argument("--reloads", type=int, default=40)
    args = parser.parse_args(argv)
    report = asyncio.run(measure(args.reloads))
    print(
        f"{report['reloads']} reloads, {EVERY:g} s apart, {CLIENTS} clients each opening a TLS connection per request: "
        f"{report['outcomes']}; {report['failed_per_reload']} connections cut per reload, "
        f"{report['old_servers_in_grace_at_end']} old servers still in their grace at the end (load {report['load']})"
    )
    write_results("tls_reload", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
