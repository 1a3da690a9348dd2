"""Certificates reloaded on change, without cutting a request in flight.

A TLS listener's certificate and key files are read again every few seconds; when their bytes
change and the new pair loads (the key matches the certificate), new connections get it:
uvicorn loads it into the listener's SSLContext; granian, which takes a certificate only when
a server starts, gets a second server on the same listening socket with the new pair, and the
old one stops as granian stops, letting every request it has in flight finish. The socket
stays open throughout, so no connection is refused, and each worker of an edge does this on
its own socket. What granian's stop does cut: connections it accepted and has not read a
request from yet (a handshake under way; bench.tls_reload: about 1.5 per reload at 450 new
connections/s). A pair that does not load is logged and ignored: the old certificate keeps
serving until a good pair arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("cdn.tls")


def digest(cert: Path, key: Path) -> str | None:
    """What the pair's files hold now (None: one cannot be read, e.g. mid-replace)."""
    try:
        return hashlib.sha256(cert.read_bytes() + b"\0" + key.read_bytes()).hexdigest()
    except OSError:
        return None


def pair_problem(cert: Path, key: Path) -> str | None:
    """Why `cert` and `key` cannot serve TLS (unreadable, not PEM, a key of another certificate), or None."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def watch(cert: Path, key: Path, reload: Callable[[], Awaitable[None]], *, what: str, interval: float) -> None:
    """Call `reload` each time the files of `cert` and `key` change to a pair that loads
    (looked at every `interval` seconds)."""
    served = await asyncio.to_thread(digest, cert, key)
    refused: str | None = None
    while True:
        await asyncio.sleep(interval)
        now = await asyncio.to_thread(digest, cert, key)
        if now is None or now in (served, refused):
            continue
        problem = await asyncio.to_thread(pair_problem, cert, key)
        if problem is not None:
            refused = now
            log.error("%s: new certificate %s (key %s) refused, the old one is kept: %s", what, cert, key, problem)
            continue
        try:
            await reload()
        except Exception:
            refused = now
            log.exception("%s: reloading the certificate %s failed; the old one is kept", what, cert)
            continue
        served, refused = now, None
        log.info("%s: certificate %s reloaded", what, cert)
