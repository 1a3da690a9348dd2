"""RTMP push ingest at rtmp://HOST:PORT/live/STREAM_KEY.

FFmpeg's listen mode does the RTMP conversation and FLV demuxing, but it serves a single
client per `av.open` and accepts whatever key the client names (a mismatch is only a log
warning, and PyAV does not tell us the key). So this module owns the public port and speaks
the start of RTMP itself (`PublishGate`: handshake, `connect`, `createStream`, up to the
`publish` naming the key), on the event loop, with no thread and no FFmpeg. A wrong key (or a
stream already being published), or anything that is not a well-formed publisher, is refused
and closed there, logged, and creates nothing.

Only a valid key gets an FFmpeg listener on an ephemeral loopback port: it is handed the
publisher's conversation verbatim (`FfmpegAnswers` drops FFmpeg's answers to what was already
answered), and from NetStream.Publish.Start on, bytes are relayed both ways.

A connection that has not yet named a valid key is "pending": at most `max_pending_per_address`
of them per client address and `max_pending` in all (more are closed at once), each has
`auth_seconds` and `SNIFF_LIMIT` bytes to name its key. A pending connection costs a socket and
a few KiB of buffers, however many are opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import av

from ..media import SessionStart
from . import Publishable
from .demux import map_tracks, to_media_packet
from .rtmp_gate import HANDSHAKE, FfmpegAnswers, Publish, PublishGate, client_ack, client_hello
from .rtmp_wire import RtmpProtocolError

log = logging.getLogger(__name__)

APP = "live"
SNIFF_LIMIT = 256 * 1024  # bytes a client may send before naming its key
IDLE_SECONDS = 10.0  # a publisher silent this long is gone (no FIN on a cut network)
LISTENER_WAIT = 5.0
MAX_PENDING = 64  # connections that have not named a valid key yet, in all
MAX_PENDING_PER_ADDRESS = 4  # ... and from one client address
AUTH_SECONDS = 10.0  # a connection has this long to name its key


class PendingLimits:
    """Counts unauthenticated connections, per address and in all. Pure."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total, self.per_address = total, per_address
        self.by_address: Counter[str] = Counter()

    def enter(self, address: str) -> str | None:
        """Count one more from `address`; or why not (the connection is then refused)."""
        if sum(self.by_address.values()) >= self.total:
            return f"{self.total} connections are already waiting to name a key"
        if self.by_address[address] >= self.per_address:
            return f"{address} already has {self.per_address} connections waiting to name a key"
        self.by_address[address] += 1
        return None

    def leave(self, address: str) -> None:
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


# FFmpeg reads this much before it reports the streams (and the session can start): the FLV
# header, the codec configurations and a frame or two, instead of up to 5 s of media.
PROBE_OPTIONS = {"probesize": "32768", "analyzeduration": "200000", "fpsprobesize": "0"}


@dataclass
class _Connection:
    peer: str
    host: str = ""
    stream: Publishable | None = None
    started: bool = False
    pending: bool = True  # counted in RtmpIngest.pending until it names a valid key
    # (time.time(), RTMP timestamp in seconds) when the first audio/video frame was all in
    first_media: tuple[float, float] | None = None


class RtmpIngest:
    def __init__(
        self,
        listen: str,
        keys: Mapping[str, Publishable],
        *,
        max_pending: int = MAX_PENDING,
        max_pending_per_address: int = MAX_PENDING_PER_ADDRESS,
        auth_seconds: float = AUTH_SECONDS,
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]") or "127.0.0.1", int(port)
        self._keys = dict(keys)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._threads: set[threading.Thread] = set()
        self.refused = 0
        self.pending = PendingLimits(max_pending, max_pending_per_address)
        self.over_limit = 0  # connections refused by the pending limits
        self.auth_seconds = auth_seconds
        self.listeners = 0  # FFmpeg listeners started: one per admitted publisher

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("RTMP ingest on rtmp://%s:%d/%s/KEY", self.host, self.port, APP)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for thread in list(self._threads):
            await asyncio.to_thread(thread.join, 5)

    # ---- one client ------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        conn = _Connection(peer, host)
        refusal = self.pending.enter(host)
        if refusal is not None:
            self.refused += 1
            self.over_limit += 1
            if self.over_limit & (self.over_limit - 1) == 0:  # 1st, 2nd, 4th, 8th...: a flood logs little
                log.warning("RTMP client %s refused: %s (%d refused so far)", peer, refusal, self.over_limit)
            writer.close()
            self._tasks.discard(task)
            return
        try:
            gate = PublishGate()
            publish = await self._greet(reader, writer, gate)
            if publish is None:
                return  # the client left before naming a key
            why = self._admit(publish, conn)
            if why is not None:
                writer.write(gate.refused(why))
                return
            await self._through_ffmpeg(reader, writer, gate, conn)
        except (OSError, TimeoutError) as exc:
            log.warning("RTMP client %s: %s", peer, exc)
        finally:
            writer.close()
            self._tasks.discard(task)
            self._authenticated(conn)
            if conn.stream is not None and not conn.started:
                conn.stream.release()  # claimed, but FFmpeg never got as far as a session

    async def _greet(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: PublishGate
    ) -> Publish | None:
        """Answer the client until `publish` names a key (None: the client left first)."""
        try:
            async with asyncio.timeout(self.auth_seconds):
                while data := await reader.read(65536):
                    writer.write(self._feed(gate, data))
                    await writer.drain()
                    if gate.publish is not None:
                        return gate.publish
                    if len(gate.replay) > SNIFF_LIMIT:
                        self.refused += 1
                        raise OSError("refused: no stream key within the first 256 KiB")
        except TimeoutError:
            self.refused += 1
            raise TimeoutError(f"refused: no valid stream key within {self.auth_seconds:g} s") from None
        return None

    def _feed(self, gate: PublishGate, data: bytes) -> bytes:
        try:
            return gate.feed(data)
        except RtmpProtocolError as exc:
            self.refused += 1
            raise OSError(f"refused: not a well-formed RTMP publisher ({exc})") from exc

    def _authenticated(self, conn: _Connection) -> None:
        """The connection named a valid key, or ended: it no longer counts as pending."""
        if conn.pending:
            conn.pending = False
            self.pending.leave(conn.host)

    def _admit(self, publish: Publish, conn: _Connection) -> str | None:
        """Claim the stream the key names; or why not (told to the client)."""
        stream = self._keys.get(publish.key)
        if publish.app != APP or stream is None:
            self.refused += 1
            # the key itself is a secret: log its length only
            log.warning(
                "RTMP client %s refused: unknown app/key (app=%r, key of %d chars)",
                conn.peer,
                publish.app,
                len(publish.key),
            )
            return "unknown app or stream key"
        if not stream.claim():
            self.refused += 1
            log.warning("RTMP client %s refused: stream %s already has a publisher", conn.peer, stream.name)
            return "the stream already has a publisher"
        conn.stream = stream
        self._authenticated(conn)
        log.info("RTMP client %s publishing to stream %s", conn.peer, stream.name)
        return None

    async def _through_ffmpeg(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: PublishGate, conn: _Connection
    ) -> None:
        """Start FFmpeg, hand it the conversation so far, then relay both ways."""
        port = _free_port()
        self._spawn_listener(port, conn)
        self.listeners += 1
        up_reader, up_writer = await _connect(port)
        try:
            async with asyncio.timeout(LISTENER_WAIT):
                answers, after = await _hand_over(up_reader, up_writer, gate)
            writer.write(gate.started() + after)
            _stamp_first_media(gate, conn)
            await _first_done(
                self._client_to_ffmpeg(reader, up_writer, gate, conn),
                _ffmpeg_to_client(up_reader, writer, answers),
            )
        finally:
            up_writer.close()

    async def _client_to_ffmpeg(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, gate: PublishGate, conn: _Connection
    ) -> None:
        watching: PublishGate | None = gate if conn.first_media is None else None
        while data := await asyncio.wait_for(reader.read(65536), IDLE_SECONDS):
            if watching is not None:  # until the first frame is in: then bytes are just relayed
                try:
                    watching.feed(data)
                except RtmpProtocolError:
                    watching = None
                if _stamp_first_media(gate, conn):
                    watching = None
            upstream.write(data)
            await upstream.drain()

    # ---- FFmpeg side (a thread per connection) ---------------------------------------------

    def _spawn_listener(self, port: int, conn: _Connection) -> None:
        thread = threading.Thread(target=self._ingest, args=(port, conn), daemon=True, name=f"rtmp-{conn.peer}")
        self._threads.add(thread)
        thread.start()

    def _ingest(self, port: int, conn: _Connection) -> None:
        try:
            self._read(port, conn)
        except (OSError, av.FFmpegError, ValueError) as exc:
            log.debug("RTMP listener for %s ended: %s", conn.peer, exc)
        finally:
            self._threads.discard(threading.current_thread())

    def _read(self, port: int, conn: _Connection) -> None:
        url = f"rtmp://127.0.0.1:{port}/{APP}/relay"
        options = {"listen": "1", "timeout": str(int(LISTENER_WAIT) + 5), **PROBE_OPTIONS}
        # format="flv": unnamed, FFmpeg guesses the format from the first 2 KiB it can read,
        # which a low-bitrate audio-only stream takes seconds to send (silent AAC: ~1 KB/s)
        with av.open(url, "r", format="flv", options=options) as container:
            stream = conn.stream
            if stream is None:
                return  # only reachable if the relay admitted nobody
            mapping = map_tracks(container)
            conn.started = True
            # EXT-X-PROGRAM-DATE-TIME from the first frame's arrival, not from now (after probing)
            wall, source = conn.first_media or (time.time(), None)
            stream.start(SessionStart(mapping.tracks, "rtmp", wall, clock_source=source))
            try:
                for packet in container.demux():
                    media = to_media_packet(packet, mapping)
                    if media is not None:
                        stream.packet(media)
            except (OSError, av.FFmpegError) as exc:
                # FFmpeg raises EIO when the publisher leaves: the normal end of a session
                log.info("RTMP publisher %s left stream %s (%s)", conn.peer, stream.name, exc)
            finally:
                stream.end()


def _stamp_first_media(gate: PublishGate, conn: _Connection) -> bool:
    """Note when the first audio/video frame was all in (once the gate has seen it)."""
    if gate.first_media is None:
        return False
    if conn.first_media is None:
        conn.first_media = (time.time(), gate.first_media[1] / 1000)
    return True


async def _hand_over(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: PublishGate
) -> tuple[FfmpegAnswers, bytes]:
    """Our handshake with FFmpeg, then the client's conversation, then FFmpeg's answers read
    (and dropped) up to its Publish.Start; returns the reader of its answers and what came after."""
    writer.write(client_hello())
    writer.write(client_ack(await reader.readexactly(1 + 2 * HANDSHAKE)) + bytes(gate.replay))
    gate.replay.clear()
    await writer.drain()
    answers, after = FfmpegAnswers(), b""
    while not answers.published:
        data = await reader.read(65536)
        if not data:
            raise OSError("FFmpeg closed the connection before the publish started")
        try:
            after = answers.feed(data)
        except RtmpProtocolError as exc:
            raise OSError(str(exc)) from exc
    return answers, after


async def _ffmpeg_to_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: FfmpegAnswers) -> None:
    while data := await reader.read(65536):
        try:
            writer.write(answers.feed(data))
        except RtmpProtocolError as exc:
            raise OSError(f"FFmpeg's answers: {exc}") from exc
        await writer.drain()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the FFmpeg listener once it is up (it binds a moment after the thread starts)."""
    deadline = time.monotonic() + LISTENER_WAIT
    delay = 0.002
    while True:
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


async def _first_done(*coros: Coroutine[Any, Any, None]) -> None:
    """Run both directions; when either ends, stop the other (and surface its error)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, TimeoutError):
            await asyncio.gather(*tasks, return_exceptions=True)
