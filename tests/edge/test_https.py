"""HTTPS at the edge, with real TLS: a local CA (web_dist/cli/tls.py), an edge listening for HTTPS
beside HTTP on granian (ALPN h2 and http/1.1), viewer protocol policies, and https:// origins
verified against a configured CA."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from edge.app import build_edge_app
from tests.edge.conftest import ScriptedOrigin
from web_dist.cli.tls import CertFiles, make_ca, make_server_cert
from web_dist.config import ConfigError, parse_config
from web_dist.server import RunningServer, SharedApp, start_server

NAMES = ["site.test", "localhost", "127.0.0.1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TlsRig:
    origin: ScriptedOrigin
    files: CertFiles
    http: str  # the edge's plain URL
    https: str  # its HTTPS URL
    https_port: int
    servers: list[RunningServer]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_server_cert(tmp_path_factory.mktemp("tls"), NAMES)


def tls_config(origin_url: str, files: CertFiles, https_port: int, *, ca: bool = True) -> Any:
    origin: dict[str, Any] = {"url": origin_url}
    if ca:
        origin["ca_file"] = str(files.ca)
    return parse_config(
        {
            "origins": {"o": origin},
            "edges": {
                "edge-test": {
                    "listen": "127.0.0.1:0",
                    "https_listen": f"127.0.0.1:{https_port}",
                    "tls_cert": str(files.cert),
                    "tls_key": str(files.key),
                }
            },
            "distributions": {
                "site": {
                    "domains": NAMES,
                    "origin": "o",
                    "hsts_max_age": 31536000,
                    "behaviors": [
                        {"path": "/secure/*", "viewer_protocol": "https-only"},
                        {
                            "path": "/moved/*",
                            "viewer_protocol": "redirect-to-https",
                            "query_keys": "all",
                            "methods": ["GET", "HEAD", "PUT"],
                        },
                    ],
                }
            },
        }
    )


@pytest.fixture
async def rig(files: CertFiles) -> AsyncIterator[TlsRig]:
    origin = ScriptedOrigin()
    for path in ("/page", "/secure/s", "/moved/m"):
        origin.set(path, f"body of {path}".encode())
    servers = [await start_server(origin, name="origin", tls_cert=files.cert, tls_key=files.key)]  # an https:// origin
    port = free_port()
    app = build_edge_app(tls_config(f"https://localhost:{servers[0].port}", files, port), "edge-test")
    servers.append(await start_server(app, name="edge", engine="granian"))
    servers.append(
        await start_server(
            SharedApp(app),
            f"127.0.0.1:{port}",
            name="edge https",
            engine="granian",
            tls_cert=files.cert,
            tls_key=files.key,
        )
    )
    yield TlsRig(origin, files, servers[1].url, servers[2].url, port, servers)
    for server in reversed(servers):
        await server.stop()


async def negotiated(
    port: int, ca: Path, alpn: list[str], maximum: ssl.TLSVersion | None = None
) -> tuple[str | None, str | None]:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(alpn)
    if maximum is not None:
        ctx.maximum_version = maximum
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="site.test")
    tls = writer.get_extra_info("ssl_object")
    writer.close()
    return tls.selected_alpn_protocol(), tls.version()


async def test_the_edge_serves_https_with_h2_by_alpn_from_an_https_origin(rig: TlsRig, tmp_path: Path) -> None:
    assert await negotiated(rig.https_port, rig.files.ca, ["h2", "http/1.1"]) == ("h2", "TLSv1.3")
    assert await negotiated(rig.https_port, rig.files.ca, ["http/1.1"]) == ("http/1.1", "TLSv1.3")
    assert await negotiated(rig.https_port, rig.files.ca, ["http/1.1"], ssl.TLSVersion.TLSv1_2) == (
        "http/1.1",
        "TLSv1.2",
    )
    ctx = ssl.create_default_context(cafile=str(rig.files.ca))
    async with httpx.AsyncClient(verify=ctx, timeout=20) as client:
        first = await client.get(f"https://localhost:{rig.https_port}/page")
        assert first.status_code == 200 and first.content == b"body of /page"
        assert first.headers["strict-transport-security"] == "max-age=31536000"
        plain = await client.get(rig.http + "/page")  # the same cache behind both listeners
        assert plain.status_code == 200 and "hit" in plain.headers["cache-status"]
        assert "strict-transport-security" not in plain.headers  # RFC 6797: over HTTPS only
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"https://127.0.0.1:{rig.https_port}/page",
            ssl=ctx,
            server_hostname="site.test",
            headers={"host": "site.test"},
        ) as resp:
            assert resp.status == 200 and await resp.read() == b"body of /page"
    assert rig.origin.hits["/page"] == 1
    other_ca, _ = make_ca(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):  # not trusted by a client that trusts another CA
        await negotiated(rig.https_port, other_ca, ["h2"])


async def test_viewer_protocol_policies(rig: TlsRig) -> None:
    ctx = ssl.create_default_context(cafile=str(rig.files.ca))
    async with httpx.AsyncClient(verify=ctx, timeout=20) as client:
        refused = await client.get(rig.http + "/secure/s")
        assert refused.status_code == 403 and "HTTPS only" in refused.text
        assert (await client.get(f"https://localhost:{rig.https_port}/secure/s")).content == b"body of /secure/s"
        moved = await client.get(rig.http + "/moved/m?a=1", headers={"host": "site.test:8080"})
        assert moved.status_code == 301
        assert moved.headers["location"] == f"https://site.test:{rig.https_port}/moved/m?a=1"
        assert (await client.put(rig.http + "/moved/m", content=b"x")).status_code == 403  # only GET/HEAD move
        assert (await client.get(rig.http + "/page")).status_code == 200  # allow-all
    assert "/secure/s" in rig.origin.hits and rig.origin.hits["/secure/s"] == 1


async def test_an_https_origin_is_verified(files: CertFiles) -> None:
    origin = ScriptedOrigin()
    origin.set("/page", b"x")
    tls_origin = await start_server(origin, name="origin", tls_cert=files.cert, tls_key=files.key)
    edge = await start_server(
        build_edge_app(tls_config(f"https://localhost:{tls_origin.port}", files, free_port(), ca=False), "edge-test"),
        name="edge",
        engine="granian",
    )
    try:
        async with httpx.AsyncClient(timeout=20) as client:
            resp = await client.get(edge.url + "/page", headers={"host": "site.test"})
        assert resp.status_code == 502  # the system trust store does not know the local CA
        assert not origin.hits
    finally:
        await edge.stop()
        await tls_origin.stop()


def test_https_needs_a_certificate_and_policies_need_https(files: CertFiles) -> None:
    base = {
        "origins": {"o": {"url": "http://127.0.0.1:9"}},
        "distributions": {"d": {"domains": ["localhost"], "origin": "o"}},
    }
    with pytest.raises(ConfigError, match=r"edges\.e\.tls_cert: missing: https_listen needs tls_cert and tls_key"):
        parse_config({**base, "edges": {"e": {"listen": "127.0.0.1:0", "https_listen": "127.0.0.1:0"}}})
    with pytest.raises(ConfigError, match=r"edges\.e\.tls_key: .* is not a PEM file"):
        parse_config(
            {
                **base,
                "edges": {
                    "e": {
                        "listen": "127.0.0.1:0",
                        "https_listen": "127.0.0.1:0",
                        "tls_cert": str(files.cert),
                        "tls_key": str(files.ca),
                    }
                },
            }
        )
    with pytest.raises(
        ConfigError,
        match=r"default_behavior\.viewer_protocol: 'https-only' needs HTTPS, but edge 'e' has no https_listen",
    ):
        parse_config(
            {
                "origins": base["origins"],
                "edges": {"e": {"listen": "127.0.0.1:0"}},
                "distributions": {
                    "d": {
                        "domains": ["localhost"],
                        "origin": "o",
                        "default_behavior": {"viewer_protocol": "https-only"},
                    }
                },
            }
        )


async def test_the_load_tester_trusts_the_local_ca_with_cacert(rig: TlsRig) -> None:
    from streaming.loadtest import LoadPlan, run_load
    from streaming.report import summarize

    target = (f"https://localhost:{rig.https_port}",)
    plan = LoadPlan(
        target, viewers=4, duration=1.5, ramp=100, mode="web", objects=("/page",), think=0.05, cacert=str(rig.files.ca)
    )
    figures = summarize(await run_load(plan, progress=None))
    assert figures["errors"] == {} and figures["requests"] > 10
    untrusted = summarize(
        await run_load(
            LoadPlan(target, viewers=2, duration=1, ramp=100, mode="web", objects=("/page",), think=0.05), progress=None
        )
    )
    assert untrusted["errors"], "without --cacert the local CA is not trusted"
