"""Certificates reloaded on change (web_dist.server.cert_reload), with real TLS on both engines: a
download in flight over TLS survives the swap, new connections get the new certificate, and a
pair that does not load is refused, logged and the old one kept."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from tests.conftest import read_until
from web_dist.cli.tls import CertFiles, make_server_cert
from web_dist.server import TLS_CHECK_INTERVAL, Engine, SharedApp, cert_reload, start_server

CHUNK = b"x" * 64 * 1024
INTERVAL = 0.1
CONNECTIONS = 16  # one handshake each: 2^-15 that they all land on one of two workers
CLIENTS = 12  # each opens a new TLS connection per request, without pause
RELOADS = 6
SILENCE = 0.1  # seconds a client waits between its handshake and its request


class HeldDownload:
    """GET /big: half the body, then the rest once `release` is set (a download in flight)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        held = scope["path"] == "/big"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(CHUNK) * (16 if held else 1)).encode())],
            }
        )
        for i in range(16 if held else 1):
            if held and i == 8:
                await self.release.wait()
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def serial(port: int, ca: Path) -> int:
    """The serial number of the certificate a new TLS connection to `port` gets."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ssl.create_default_context(cafile=str(ca)), server_hostname="localhost"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(True)
    writer.close()
    return x509.load_der_x509_certificate(der).serial_number


def install(files: CertFiles, cert: Path, key: Path) -> None:
    """Put a pair in place as certbot does: each file written beside and renamed over."""
    for source, target in ((files.cert, cert), (files.key, key)):
        shutil.copy(source, target.with_suffix(".new"))
        target.with_suffix(".new").replace(target)


def start_edge(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "web_dist.cli", "edge", "--config", str(config), "--name", "e"],
        stdout=subprocess.PIPE,
        text=True,
    )


async def until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not true within {within} s"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("engine", ["granian", "uvicorn"])
async def test_a_changed_certificate_serves_new_connections_and_cuts_none(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = (make_server_cert(tmp_path, ["localhost"], stem=stem) for stem in ("old", "new"))
    cert, key = tmp_path / "edge.pem", tmp_path / "edge-key.pem"
    install(old, cert, key)
    app = HeldDownload()
    server = await start_server(
        SharedApp(app), name="edge https", engine=engine, tls_cert=cert, tls_key=key, tls_check_interval=INTERVAL
    )
    old_serial = await serial(server.port, old.ca)
    trust = ssl.create_default_context(cafile=str(old.ca))
    try:
        async with httpx.AsyncClient(verify=trust, timeout=20) as client:
            async with client.stream("GET", f"https://localhost:{server.port}/big") as download:
                chunks = download.aiter_raw()
                body = [await anext(chunks)]  # in flight, held halfway

                async def refused() -> bool:
                    return "refused, the old one is kept" in caplog.text

                async def changed() -> bool:
                    return await serial(server.port, old.ca) != old_serial

                caplog.set_level(logging.ERROR, "cdn.tls")
                shutil.copy(new.cert, cert)  # the new certificate with the old key: refused
                await until(refused, 5)
                assert "key values mismatch" in caplog.text
                assert await serial(server.port, old.ca) == old_serial

                install(new, cert, key)
                await until(changed, 5)
                assert (await client.get(f"https://localhost:{server.port}/small")).status_code == 200

                app.release.set()
                body += [chunk async for chunk in chunks]
            assert download.status_code == 200 and b"".join(body) == CHUNK * 16  # not cut
    finally:
        await server.stop()


async def fresh_request(port: int, trust: ssl.SSLContext) -> str:
    """One request on a new TLS connection that waits `SILENCE` between connecting and sending it
    (as a slow client does): "200", or what went wrong."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust, server_hostname="localhost")
        await asyncio.sleep(SILENCE)
        writer.write(b"GET /small HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
    except OSError as exc:
        return type(exc).__name__
    return answer[9:12].decode() or "closed without an answer"


async def test_a_reload_cuts_no_connection_granian_has_accepted(tmp_path: Path) -> None:
    """Reloads under a stream of new TLS connections, each silent for a moment after its
    handshake: every one gets its 200, and a connection opened after a reload gets the new
    certificate. (Before the old granian server stopped accepting first, each reload cut the
    connections it had accepted and not yet read a request from.)"""
    pairs = [make_server_cert(tmp_path, ["localhost"], stem=stem) for stem in ("a", "b")]
    serials = [x509.load_pem_x509_certificate(p.cert.read_bytes()).serial_number for p in pairs]
    cert, key = tmp_path / "edge.pem", tmp_path / "edge-key.pem"
    install(pairs[0], cert, key)
    server = await start_server(
        SharedApp(HeldDownload()), name="edge https", engine="granian", tls_cert=cert, tls_key=key, tls_check_interval=0
    )
    trust = ssl.create_default_context(cafile=str(pairs[0].ca))
    answers: list[str] = []
    running = True

    async def client() -> None:
        while running:
            answers.append(await fresh_request(server.port, trust))

    clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
    try:
        for i in range(1, RELOADS + 1):
            await asyncio.sleep(SILENCE * 2.5)  # some clients are between their handshake and their request
            install(pairs[i % 2], cert, key)
            await server.reload_tls()
            assert await serial(server.port, pairs[0].ca) == serials[i % 2]
    finally:
        running = False
        await asyncio.gather(*clients)
        await server.stop()
    assert len(answers) >= CLIENTS * RELOADS
    assert {answer: answers.count(answer) for answer in answers} == {"200": len(answers)}


async def test_a_server_that_cannot_stop_accepting_is_stopped_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the socket filter is refused, a reload still serves the new certificate; the old
    server stops at once (as before stop_accepting), not after the grace."""
    monkeypatch.setattr(cert_reload, "SO_ATTACH_FILTER", -1)  # an option no system has
    pairs = [make_server_cert(tmp_path, ["localhost"], stem=stem) for stem in ("a", "b")]
    cert, key = tmp_path / "edge.pem", tmp_path / "edge-key.pem"
    install(pairs[0], cert, key)
    server = await start_server(
        SharedApp(HeldDownload()), name="edge https", engine="granian", tls_cert=cert, tls_key=key, tls_check_interval=0
    )
    try:
        install(pairs[1], cert, key)
        await server.reload_tls()
        assert "cannot stop accepting" in caplog.text
        await asyncio.wait_for(asyncio.gather(*server._draining), 5)  # not 30 s
        new_serial = x509.load_pem_x509_certificate(pairs[1].cert.read_bytes()).serial_number
        assert {await serial(server.port, pairs[0].ca) for _ in range(4)} == {new_serial}
    finally:
        await server.stop()


async def test_every_worker_of_an_edge_serves_the_new_certificate(tmp_path: Path) -> None:
    """`cdn edge` with two workers (the kernel spreads connections over them): after a swap of
    the files, within the check interval, no new connection gets the old certificate."""
    old, new = (make_server_cert(tmp_path, ["localhost", "127.0.0.1"], stem=stem) for stem in ("old", "new"))
    cert, key = tmp_path / "edge.pem", tmp_path / "edge-key.pem"
    install(old, cert, key)
    config = tmp_path / "cdn.toml"
    config.write_text(f"""
[origins.o]
url = "http://127.0.0.1:9"

[edges.e]
listen = "127.0.0.1:0"
https_listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
workers = 2

[distributions.site]
domains = ["localhost"]
origin = "o"
""")
    proc = start_edge(config)
    try:
        line = await asyncio.to_thread(read_until, proc, "ready edge e", 90)
        port = int(re.search(r" https https://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        old_serial, new_serial = (x509.load_pem_x509_certificate(f.cert.read_bytes()).serial_number for f in (old, new))
        assert {await serial(port, old.ca) for _ in range(CONNECTIONS)} == {old_serial}
        install(new, cert, key)

        async def every_connection_new() -> bool:  # and none cut meanwhile
            return {await serial(port, old.ca) for _ in range(CONNECTIONS)} == {new_serial}

        await until(every_connection_new, TLS_CHECK_INTERVAL * 3)
    finally:
        proc.terminate()
        proc.wait(20)


async def test_an_sni_listener_reloads_in_place_and_keeps_its_h2_connections(tmp_path: Path) -> None:
    """Hypercorn with two certificates chosen by SNI: after one pair changes, an h2 connection
    opened before goes on serving requests (and a download held across the swap arrives whole),
    and a new connection for that name gets the new certificate."""
    old, new = (make_server_cert(tmp_path, ["localhost"], stem=stem) for stem in ("old", "new"))
    other = make_server_cert(tmp_path, ["other.test"], stem="other")
    cert, key = tmp_path / "edge.pem", tmp_path / "edge-key.pem"
    install(old, cert, key)
    app = HeldDownload()
    server = await start_server(
        SharedApp(app),
        name="edge https",
        tls_cert=other.cert,
        tls_key=other.key,
        sni=[(cert, key)],
        tls_check_interval=INTERVAL,
    )
    old_serial = await serial(server.port, old.ca)
    try:
        async with httpx.AsyncClient(http2=True, verify=ssl.create_default_context(cafile=str(old.ca))) as client:
            url = f"https://localhost:{server.port}"
            async with client.stream("GET", f"{url}/big") as download:
                assert download.http_version == "HTTP/2"
                chunks = download.aiter_raw()
                body = [await anext(chunks)]  # in flight, held halfway
                install(new, cert, key)

                async def changed() -> bool:
                    return await serial(server.port, old.ca) != old_serial

                await until(changed, 5)
                again = await client.get(f"{url}/small")  # on the connection opened before
                assert again.status_code == 200 and again.http_version == "HTTP/2"
                app.release.set()
                body += [chunk async for chunk in chunks]
            assert download.status_code == 200 and b"".join(body) == CHUNK * 16  # not cut
            assert len(client._transport._pool.connections) == 1  # one connection throughout
        new_serial = x509.load_pem_x509_certificate(new.cert.read_bytes()).serial_number
        assert await serial(server.port, old.ca) == new_serial
    finally:
        await server.stop()
