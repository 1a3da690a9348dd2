"""Certificates reloaded on change, without cutting a connection.

A TLS listener's certificate and key files are read again every few seconds; when their bytes
change and the new pair loads (the key matches the certificate), new connections get it:
uvicorn loads it into the listener's SSLContext; granian, which takes a certificate only when
a server starts, gets a second server on the same listening socket with the new pair. The old
one then stops accepting (`stop_accepting`), so every new connection goes to the new one, and
goes on serving the connections it has accepted for `TLS_RELOAD_GRACE` seconds (granian's own
deadline for a request head), so each has sent its request, before it stops as granian stops,
letting every request it has in flight finish. Stopped at once instead, it cut the connections
it had accepted and not yet read a request from, handshakes under way and clients about to
send (bench.tls_reload: about 1.5 per reload at 450 new connections/s; now none). The socket
stays open throughout, so no connection is refused, and each worker of an edge does this on
its own socket. A pair that does not load is logged and ignored: the old certificate keeps
serving until a good pair arrives.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import os
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("cdn.tls")
SO_ATTACH_FILTER = 26  # Linux: a classic BPF program run on each packet the socket receives
_DROP_ALL = struct.pack("=HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K 0: keep none of the packet


def stop_accepting(fd: int) -> bool:
    """Make `fd`, a server's own copy of a listening socket it accepts from, a listening
    socket that no connection reaches: the server finds nothing to accept from then on, while
    the socket it shared goes on listening (the other copies accept from it), and the
    connections the server already has are untouched. (The server's poller still wakes for the
    shared socket, whose registration it keeps until it stops; each such accept finds none.)
    False, logged, when the system refuses (no SO_ATTACH_FILTER): the server still accepts."""
    quiet = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        program = ctypes.create_string_buffer(_DROP_ALL)
        quiet.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("@HP", 1, ctypes.addressof(program)))
        quiet.bind(("127.0.0.1", 0))
        quiet.listen(1)  # a SYN to it is dropped by the filter: it never has a connection
        quiet.setblocking(False)  # so an accept on `fd` returns at once, finding none
        os.dup2(quiet.fileno(), fd, inheritable=False)  # atomic: `fd` is never a closed descriptor
    except OSError:
        log.exception("a server replaced by a certificate reload cannot stop accepting; it stops now")
        return False
    finally:
        quiet.close()
    return True


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
