"""Certificates per distribution domain, chosen by SNI (`[[edges.NAME.certificates]]`), with
real TLS: each client gets the certificate that names the server name it sent (an exact name,
else a wildcard), others the default (tls_cert); each pair is reloaded on change."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import h2.config
import h2.connection
import h2.events
import pytest
from cryptography import x509

from edge.app import build_edge_app
from tests.conftest import read_until
from tests.edge.conftest import ScriptedOrigin
from tests.edge.test_bounded_viewers import MIB, CountingOrigin, _logged
from web_dist.cli.tls import CertFiles, make_server_cert
from web_dist.config import ConfigError, load_config, parse_config
from web_dist.server import RunningServer, SharedApp, start_server

SITE = ["site.test", "localhost", "127.0.0.1"]
OTHER = ["other.test", "*.cdn.other"]


def serial_of(files: CertFiles) -> int:
    return x509.load_pem_x509_certificate(files.cert.read_bytes()).serial_number


async def handshake(port: int, ca: Path, server_name: str | None) -> tuple[int, str | None]:
    """A TLS connection sending `server_name` (None: no SNI): the certificate's serial, the ALPN chosen."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if server_name is None:
        ctx.check_hostname = False
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=server_name)
    tls = writer.get_extra_info("ssl_object")
    der = tls.getpeercert(True)
    writer.close()
    return x509.load_der_x509_certificate(der).serial_number, tls.selected_alpn_protocol()


def raw_config(
    origin_url: str, site: CertFiles, other: CertFiles, https_port: int = 0, workers: int = 1
) -> dict[str, Any]:
    return {
        "origins": {"o": {"url": origin_url}},
        "edges": {
            "e": {
                "listen": "127.0.0.1:0",
                "https_listen": f"127.0.0.1:{https_port}",
                "workers": workers,
                "tls_cert": str(site.cert),
                "tls_key": str(site.key),
                "certificates": [{"cert": str(other.cert), "key": str(other.key)}],
            }
        },
        "distributions": {
            "site": {"domains": SITE, "origin": "o"},
            "other": {"domains": ["other.test", "a.cdn.other"], "origin": "o"},
        },
    }


async def test_each_domain_gets_its_own_certificate_by_sni_and_reloads(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    origin = ScriptedOrigin()
    origin.set("/page", b"one page, two names")
    served = await serve(origin, name="origin")
    site = make_server_cert(tmp_path, SITE, stem="site")
    other_files = make_server_cert(tmp_path, OTHER, stem="other-made")
    other = CertFiles(site.ca, tmp_path / "other.pem", tmp_path / "other-key.pem")
    shutil.copy(other_files.cert, other.cert)
    shutil.copy(other_files.key, other.key)
    config = parse_config(raw_config(served.url, site, other))
    app = build_edge_app(config, "e")
    edge = config.edges["e"]
    await serve(app, name="edge", engine="granian")  # the app's lifespan runs on its plain listener
    server = await start_server(
        SharedApp(app),
        name="edge https",
        engine="granian",
        tls_cert=edge.tls_cert,
        tls_key=edge.tls_key,
        sni=edge.certificates,
        tls_check_interval=0.1,
    )
    try:
        port, ca = server.port, site.ca
        assert await handshake(port, ca, "other.test") == (serial_of(other_files), "h2")
        assert (await handshake(port, ca, "a.cdn.other"))[0] == serial_of(other_files)  # the wildcard
        assert (await handshake(port, ca, "site.test"))[0] == serial_of(site)
        assert (await handshake(port, ca, None))[0] == serial_of(site)  # no SNI: the default
        trust = ssl.create_default_context(cafile=str(ca))
        async with aiohttp.ClientSession() as session:
            for name in ("other.test", "site.test"):
                async with session.get(
                    f"https://127.0.0.1:{port}/page", ssl=trust, server_hostname=name, headers={"host": name}
                ) as resp:
                    assert resp.status == 200 and await resp.read() == b"one page, two names"

        renewed = make_server_cert(tmp_path, OTHER, stem="renewed")
        shutil.copy(renewed.key, other.key.with_suffix(".new"))
        shutil.copy(renewed.cert, other.cert)
        other.key.with_suffix(".new").replace(other.key)
        deadline = time.monotonic() + 5
        while (await handshake(port, ca, "other.test"))[0] != serial_of(renewed):
            assert time.monotonic() < deadline, "the renewed certificate was never served"
            await asyncio.sleep(0.05)
        assert (await handshake(port, ca, "site.test"))[0] == serial_of(site)
    finally:
        await server.stop()


async def curl(*args: str) -> tuple[str, bytes]:
    """curl's output and its `-w "\\n%{http_version}"`: the HTTP version it spoke, and what came before."""
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "20", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"curl {' '.join(args)}: {err.decode()}"
    rest, _, version = out.rpartition(b"\n")
    return version.decode(), rest


async def sni_edge(serve: Callable[..., Any], tmp_path: Path, origin_url: str) -> tuple[Any, RunningServer, CertFiles]:
    """An edge whose HTTPS listener holds two certificates: site's (the default) and other's."""
    site = make_server_cert(tmp_path, SITE, stem="site")
    other = make_server_cert(tmp_path, OTHER, stem="other")
    config = parse_config(raw_config(origin_url, site, other))
    app = build_edge_app(config, "e")
    edge = config.edges["e"]
    await serve(app, name="edge", engine="granian")  # the app's lifespan runs on its plain listener
    server = await start_server(
        SharedApp(app), name="edge https", tls_cert=edge.tls_cert, tls_key=edge.tls_key, sni=edge.certificates
    )
    return app, server, site


async def test_the_sni_listener_speaks_h2_and_http1_with_each_names_certificate(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    origin = ScriptedOrigin()
    origin.set("/page", b"one page, two names")
    big = bytes(range(256)) * (32 * 1024)  # 8 MiB, streamed
    origin.set("/big.bin", big)
    _, server, site = await sni_edge(serve, tmp_path, (await serve(origin, name="origin")).url)
    try:
        port = server.port
        for name in ("other.test", "a.cdn.other", "site.test"):
            # curl checks the certificate against the name: each name gets the one naming it
            where = ["--cacert", str(site.ca), "--resolve", f"{name}:{port}:127.0.0.1"]
            for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
                got = await curl(flag, *where, "-w", "\n%{http_version}", "-o", "-", f"https://{name}:{port}/page")
                assert got == (version, b"one page, two names"), (name, flag)
        assert (await handshake(port, site.ca, "other.test"))[1] == "h2"  # ALPN: h2 first
        where = [
            "--http2",
            "--cacert",
            str(site.ca),
            "--resolve",
            f"site.test:{port}:127.0.0.1",
            "-w",
            "\n%{http_version}",
        ]
        url = f"https://site.test:{port}/big.bin"
        assert await curl(*where, "-o", "-", url) == ("2", big)
        version, head = await curl(*where, "-I", url)
        lines = head.decode().lower().splitlines()
        assert version == "2" and f"content-length: {len(big)}" in lines, head  # HEAD: the length, no body
        assert not any(line.startswith("server:") for line in lines), head  # the edge adds none
        assert sum(line.startswith("date:") for line in lines) == 1, head  # the origin's, passed through
        assert origin.hits["/big.bin"] == 1
    finally:
        await server.stop()


async def h2_viewer(port: int, ca: Path, path: str, read: int = 32 * 1024) -> asyncio.StreamWriter:
    """An h2 viewer of `path` that reads `read` body bytes and then stops: it acknowledges none,
    so the edge's send waits for the viewer's flow-control window, as a stalled player's does."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="site.test")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.increment_flow_control_window(8 * 1024 * 1024)  # the connection's: the stream's is the limit
    request = [(":method", "GET"), (":scheme", "https"), (":authority", "site.test"), (":path", path)]
    conn.send_headers(1, request, end_stream=True)
    writer.write(conn.data_to_send())
    got = 0
    while got < read:
        data = await asyncio.wait_for(reader.read(65536), 10)
        assert data, "the edge closed the connection"
        events = conn.receive_data(data)
        got += sum(len(e.data) for e in events if isinstance(e, h2.events.DataReceived))
        writer.write(conn.data_to_send())
    writer.conn = conn  # type: ignore[attr-defined]
    return writer


@pytest.mark.parametrize("leaves", ["resets its stream", "closes the connection"])
async def test_an_h2_viewer_leaving_mid_download_stops_the_origin_pull(
    leaves: str, serve: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On h2 a viewer leaves a download by resetting its stream (the connection stays) or by
    closing the connection: either way the edge stops pulling a pass-through from the origin."""
    caplog.set_level(logging.INFO, logger="cdn.access")
    origin = CountingOrigin(256 * MIB, "no-store")
    await origin.start()
    app, server, site = await sni_edge(serve, tmp_path, origin.url)
    try:
        writer = await h2_viewer(server.port, site.ca, "/feed.ts")
        if leaves == "resets its stream":
            conn = writer.conn  # type: ignore[attr-defined]
            conn.reset_stream(1)
            writer.write(conn.data_to_send())
        else:
            writer.transport.abort()
        await asyncio.wait_for(origin.ended.wait(), 10)  # the edge closed the origin's stream
        assert origin.sent < 16 * MIB, f"the edge pulled {origin.sent / MIB:.0f} MiB after the viewer left"
        line = await _logged(app, caplog, "/feed.ts")
        assert "cache=client-gone" in line and "status=200" in line, line
        writer.close()
    finally:
        await server.stop()
        await origin.close()


def start_edge(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "web_dist.cli", "edge", "--config", str(config), "--name", "e"],
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_cdn_edge_with_workers_chooses_by_sni(tmp_path: Path) -> None:
    site = make_server_cert(tmp_path, SITE, stem="site")
    other = make_server_cert(tmp_path, OTHER, stem="other")
    config = tmp_path / "cdn.toml"
    config.write_text(
        f"""
[origins.o]
url = "http://127.0.0.1:9"

[edges.e]
listen = "127.0.0.1:0"
https_listen = "127.0.0.1:0"
tls_cert = "{site.cert}"
tls_key = "{site.key}"
workers = 2
certificates = [{{ cert = "{other.cert}", key = "{other.key}" }}]

[distributions.site]
domains = {SITE!r}
origin = "o"
""".replace("'", '"')
    )
    assert load_config(config).edges["e"].certificates == ((other.cert, other.key),)
    proc = start_edge(config)
    try:
        line = await asyncio.to_thread(read_until, proc, "ready edge e", 90)
        port = int(re.search(r" https https://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        for _ in range(8):  # new connections, spread over both workers
            assert (await handshake(port, site.ca, "x.cdn.other"))[0] == serial_of(other)
            assert (await handshake(port, site.ca, "localhost"))[0] == serial_of(site)
    finally:
        proc.terminate()
        proc.wait(20)


def test_certificates_need_https_and_both_files(tmp_path: Path) -> None:
    site = make_server_cert(tmp_path, SITE, stem="site")
    raw = raw_config("http://127.0.0.1:9", site, site)
    del raw["edges"]["e"]["https_listen"]
    with pytest.raises(ConfigError, match=r"edges\.e\.certificates: needs https_listen"):
        parse_config(raw)
    raw = raw_config("http://127.0.0.1:9", site, site)
    raw["edges"]["e"]["certificates"] = [{"cert": str(site.cert)}]
    with pytest.raises(ConfigError, match=r"edges\.e\.certificates\[0\]\.key: missing"):
        parse_config(raw)
