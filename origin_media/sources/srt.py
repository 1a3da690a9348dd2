"""SRT push ingest: `srt://HOST:PORT?streamid=publish:STREAM:KEY` carrying MPEG-TS.

PyAV's FFmpeg has no libsrt, so Debian's libsrt (installed with `srt-tools`) is driven through
ctypes: one listener socket whose listen callback reads each caller's stream id before the
handshake completes, so a wrong stream, key or a stream already being published is refused
(the caller sees a rejection) and logged, and creates nothing. An accepted connection gets a
thread that hands the received TS to PyAV's demuxer (a file-like reader over `srt_recvmsg`)
and on to the existing demux path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import av

from ..media import SessionStart
from . import Publishable
from .demux import map_tracks, to_media_packet

log = logging.getLogger(__name__)

LIBRARIES = ("libsrt-gnutls.so.1.5", "libsrt-openssl.so.1.5", "libsrt.so.1.5")
SRTO_LATENCY, SRTO_PASSPHRASE, SRTO_PBKEYLEN = 23, 26, 27  # srt.h's SRT_SOCKOPT
LOG_CRIT = 2  # syslog's level numbers
MAX_HANDSHAKES = 64  # callers admitted by the callback and not accepted yet (some never are)
MESSAGE = 1500  # a live-mode SRT message is at most 1456 bytes (7 TS packets: 1316)
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
)


def parse_stream_id(stream_id: str) -> tuple[str, str] | None:
    """`publish:STREAM:KEY` (MediaMTX's form) -> (STREAM, KEY); anything else is None."""
    action, _, rest = stream_id.partition(":")
    name, _, key = rest.partition(":")
    if action != "publish" or not name or not key:
        return None
    return name, key


def _library() -> ctypes.CDLL:
    for name in (*LIBRARIES, ctypes.util.find_library("srt-gnutls"), ctypes.util.find_library("srt")):
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    raise OSError("libsrt not found: install Debian's srt-tools (make deps)")


class _SrtReader:
    """A file-like `read` over one SRT connection, for `av.open`."""

    def __init__(self, lib: ctypes.CDLL, sock: int) -> None:
        self._lib, self._sock = lib, sock
        self._buffer = ctypes.create_string_buffer(MESSAGE)
        self.first_byte_at: float | None = None  # wall clock: what the first frame's PDT is

    def read(self, size: int = -1) -> bytes:
        got = self._lib.srt_recvmsg(self._sock, self._buffer, MESSAGE)
        if got > 0 and self.first_byte_at is None:
            self.first_byte_at = time.time()
        return self._buffer.raw[:got] if got > 0 else b""


@dataclass(frozen=True)
class SrtStream:
    """What a caller publishing to one stream must present."""

    stream: Publishable
    key: str = field(repr=False)
    passphrase: str | None = field(default=None, repr=False)  # AES encryption, 10..79 chars
    pbkeylen: int = 16  # AES-128, 24 or 32


class SrtIngest:
    def __init__(self, listen: str, streams: Mapping[str, SrtStream], latency_ms: int = 120) -> None:
        """`streams`: stream name -> what its publisher must present."""
        self.latency_ms = latency_ms
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]") or "127.0.0.1", int(port)
        self._streams = dict(streams)
        self._lib = _library()
        self._listener = -1
        self._admitted: dict[int, Publishable] = {}  # accepted socket -> its claimed stream
        self._sockets: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._hook = _CALLBACK(self._on_caller)  # kept alive as long as the listener
        self.refused = 0

    def start(self) -> None:
        lib = self._lib
        lib.srt_startup()
        lib.srt_setloglevel(LOG_CRIT)  # refusals are logged here, not on libsrt's stderr
        self._listener = lib.srt_create_socket()
        if self.port == 0:
            self.port = _free_udp_port(self.host)
        address = struct.pack("!HH4s8x", socket.AF_INET, self.port, socket.inet_aton(self.host))
        # sockaddr_in: family is in host byte order
        address = struct.pack("=H", socket.AF_INET) + address[2:]
        latency = ctypes.c_int(self.latency_ms)  # accepted sockets inherit it
        lib.srt_setsockflag(self._listener, SRTO_LATENCY, ctypes.byref(latency), ctypes.sizeof(latency))
        if (
            lib.srt_bind(self._listener, address, len(address)) < 0
            or lib.srt_listen_callback(self._listener, self._hook, None) < 0
            or lib.srt_listen(self._listener, 8) < 0
        ):
            raise OSError(f"SRT listen on {self.host}:{self.port}: {self._error()}")
        self._thread = threading.Thread(target=self._accept_loop, name="srt-accept", daemon=True)
        self._thread.start()
        log.info("SRT ingest listening on %s:%d", self.host, self.port)

    def stop(self) -> None:
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            self._lib.srt_close(sock)
        if self._thread is not None:
            self._thread.join(5)
        # libsrt's own threads must be gone before the interpreter frees the callback and exits
        # (its static destructors otherwise ran over freed memory at exit: glibc aborted).
        self._lib.srt_cleanup()

    def _error(self) -> str:
        self._lib.srt_getlasterror_str.restype = ctypes.c_char_p
        return str(self._lib.srt_getlasterror_str().decode(errors="replace"))

    # ---- listener thread (libsrt's) --------------------------------------------------------

    def _on_caller(
        self, _opaque: int | None, sock: int, _version: int, _peer: int | None, stream_id: bytes | None
    ) -> int:
        """0 accepts the caller, -1 refuses it (libsrt rejects the handshake)."""
        text = (stream_id or b"").decode(errors="replace")
        parsed = parse_stream_id(text)
        entry = self._streams.get(parsed[0]) if parsed else None
        if parsed is None or entry is None or entry.key != parsed[1]:
            self.refused += 1
            shown = f"publish:{parsed[0]}:***" if parsed else text  # never log a key
            log.warning("SRT caller refused: stream id %r names no stream with that key", shown)
            return -1
        stream = entry.stream
        if self._busy(stream):
            return -1
        if entry.passphrase and not self._encrypt(sock, entry):
            return -1
        with self._lock:
            # claimed at accept: the handshake may still fail (a wrong passphrase) after this
            self._admitted[sock] = stream
            while len(self._admitted) > MAX_HANDSHAKES:
                del self._admitted[next(iter(self._admitted))]
        return 0

    def _busy(self, stream: Publishable) -> bool:
        if not getattr(stream, "publishing", False):
            return False
        self.refused += 1
        log.warning("SRT caller refused: stream %s is already being published", stream.name)
        return True

    def _encrypt(self, sock: int, entry: SrtStream) -> bool:
        """Set the stream's passphrase on the new socket: a caller without it fails the handshake."""
        assert entry.passphrase is not None
        secret = entry.passphrase.encode()
        keylen = ctypes.c_int(entry.pbkeylen)
        ok: bool = (
            self._lib.srt_setsockflag(sock, SRTO_PASSPHRASE, secret, len(secret)) >= 0
            and self._lib.srt_setsockflag(sock, SRTO_PBKEYLEN, ctypes.byref(keylen), ctypes.sizeof(keylen)) >= 0
        )
        if not ok:
            log.error("SRT: cannot set the passphrase of stream %s: %s", entry.stream.name, self._error())
        return ok

    # ---- accept and ingest threads ---------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            sock = self._lib.srt_accept(self._listener, None, None)
            if sock < 0:
                return  # the listener was closed
            with self._lock:
                stream = self._admitted.pop(sock, None)
                self._sockets.add(sock)
            if stream is None or not stream.claim():
                if stream is not None:
                    self._busy(stream)  # two callers raced for it: the later one goes
                with self._lock:
                    self._sockets.discard(sock)
                self._lib.srt_close(sock)
                continue
            threading.Thread(target=self._ingest, args=(sock, stream), daemon=True, name=f"srt-{stream.name}").start()

    def _ingest(self, sock: int, stream: Publishable) -> None:
        started = False
        try:
            reader = _SrtReader(self._lib, sock)
            with av.open(reader, "r", format="mpegts") as container:
                mapping = map_tracks(container)
                # probing read ahead: the session began when its first bytes came, not now
                stream.start(SessionStart(mapping.tracks, "srt", reader.first_byte_at or time.time()))
                started = True
                log.info("SRT publisher started stream %s", stream.name)
                for packet in container.demux():
                    media = to_media_packet(packet, mapping)
                    if media is not None:
                        stream.packet(media)
        except (OSError, av.FFmpegError, ValueError) as exc:
            log.info("SRT publisher of %s left (%s)", stream.name, exc)
        finally:
            if started:
                stream.end()
            else:
                stream.release()
            self._lib.srt_close(sock)
            with self._lock:
                self._sockets.discard(sock)


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
