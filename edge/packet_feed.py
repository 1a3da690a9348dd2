"""Live streams pulled from the media origin once per edge, as encoded packets for WebRTC.

A `StreamFeed` is one HTTP GET of the origin's MPEG-TS feed (`/live/STREAM/stream.ts`: H.264
without B-frames in Annex B form, and Opus), demuxed by PyAV in a thread of its own; packets go
to the event loop and into the stream's `PacketRelay`. The thread reads the HTTP body through
the loop (`_BodyReader`), so the origin connection keeps TCP's back-pressure and the edge's
one origin client, timeouts and error mapping.

`StreamFeeds` keeps one feed per (distribution, stream) while anyone holds it, and closes the
upstream a grace period after the last holder lets go (a viewer who reloads the page finds
the pull still running).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.packet_relay import PacketRelay
from edge.upstream import OriginClient, UpstreamError, UpstreamResponse
from web_dist.config import Origin

if TYPE_CHECKING:
    import av

log = logging.getLogger("cdn.edge")
CODECS = {"video": "h264", "audio": "opus"}  # what WebRTC viewers get, as the origin encoded it
# Small probe: the origin starts a reader with PAT/PMT and a keyframe, so this is plenty.
DEMUX_OPTIONS = {"probesize": "65536", "analyzeduration": "1000000", "fflags": "nobuffer"}
POLL = 0.5  # seconds the demuxer thread waits for bytes before checking for a stop


class FeedUnavailable(Exception):
    """No feed for this stream; `status` is what the viewer is answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class FeedSettings:
    grace_seconds: float = 5.0  # upstream kept this long after the last viewer leaves
    queue_packets: int = 256  # per viewer and kind; a viewer further behind is dropped
    ready_timeout: float = 10.0  # for the origin's first packets


def feed_path(stream: str) -> str:
    return f"/live/{stream}/stream.ts"


class _BodyReader:
    """A blocking file object over an HTTP body that the event loop reads (demuxer side)."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._chunks = chunks
        self._loop = loop
        self._buffer = b""
        self._pending: concurrent.futures.Future[bytes] | None = None
        self.stopping = threading.Event()

    async def _next(self) -> bytes:
        try:
            return await anext(self._chunks)
        except (StopAsyncIteration, UpstreamError):
            return b""

    def stop(self) -> None:
        """From the loop: the demuxer's next read returns end of file."""
        self.stopping.set()
        pending = self._pending
        if pending is not None:
            pending.cancel()

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            if self.stopping.is_set():
                return b""
            if self._pending is None:
                self._pending = asyncio.run_coroutine_threadsafe(self._next(), self._loop)
            try:
                chunk = self._pending.result(POLL)
            except concurrent.futures.TimeoutError:
                continue
            except (concurrent.futures.CancelledError, RuntimeError):
                return b""
            self._pending = None
            if not chunk:
                return b""
            self._buffer = chunk
        size = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


class StreamFeed:
    """One stream's pull from the origin and the relay its packets go to."""

    def __init__(
        self, stream: str, response: UpstreamResponse, settings: FeedSettings, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.stream = stream
        self.settings = settings
        self._response = response
        self._loop = loop
        self._reader = _BodyReader(response.chunks(), loop)
        self._ready: asyncio.Future[None] = loop.create_future()
        self.relay: PacketRelay[av.Packet[Any]] = PacketRelay((), queue_packets=settings.queue_packets)
        self.done = asyncio.Event()
        self.holders = 0
        self.close_timer: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(target=self._demux, name=f"feed-{stream}", daemon=True)

    async def start(self) -> None:
        """Start demuxing; returns once the stream's tracks are known."""
        self._thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.settings.ready_timeout)
        except TimeoutError:
            await self.stop()
            raise FeedUnavailable(504, "the origin sent no media in time") from None
        except FeedUnavailable:
            await self.stop()
            raise

    async def stop(self) -> None:
        self._reader.stop()
        self._response.close()
        await asyncio.to_thread(self._thread.join, 5)
        self.relay.end()
        self.done.set()

    # ---- demuxer thread --------------------------------------------------------------------

    def _call(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the edge is stopping
            self._loop.call_soon_threadsafe(callback, *args)

    def _demux(self) -> None:
        import av  # loaded with the first feed (edge/whep_session.py says why)

        try:
            with av.open(self._reader, "r", format="mpegts", options=DEMUX_OPTIONS) as container:
                streams = [s for s in container.streams if CODECS.get(s.type) == s.codec_context.name]
                if not streams:
                    found = ", ".join(f"{s.type} {s.codec_context.name}" for s in container.streams)
                    raise ValueError(f"no H.264 video or Opus audio in the origin's feed ({found or 'nothing'})")
                self._call(self._started, tuple(s.type for s in streams))
                for packet in container.demux(streams):
                    if self._reader.stopping.is_set():
                        break
                    if packet.size and packet.pts is not None:
                        out = av.Packet(bytes(packet))
                        out.pts, out.dts, out.time_base = packet.pts, packet.dts, packet.time_base
                        self._call(self.relay.publish, packet.stream.type, out, packet.is_keyframe)
        except (av.FFmpegError, ValueError, OSError) as exc:
            self._call(self._failed, str(exc))
        finally:
            self._call(self._ended)

    # ---- back on the loop ------------------------------------------------------------------

    def _started(self, kinds: tuple[str, ...]) -> None:
        self.relay.kinds = kinds
        if not self._ready.done():
            self._ready.set_result(None)

    def _failed(self, message: str) -> None:
        log.warning("feed %s: %s", self.stream, message)
        if not self._ready.done():
            self._ready.set_exception(FeedUnavailable(502, f"the origin's feed is unusable: {message}"))

    def _ended(self) -> None:
        if not self._ready.done():
            self._ready.set_exception(FeedUnavailable(502, "the origin's feed ended before any media"))
        self.relay.end()
        self.done.set()


class StreamFeeds:
    """One feed per (distribution, stream) of an edge, kept while held plus a grace period."""

    def __init__(self, upstream: OriginClient, settings: FeedSettings, user_agent: str) -> None:
        self.upstream = upstream
        self.settings = settings
        self._headers = {"user-agent": user_agent}
        self._feeds: dict[tuple[str, str], StreamFeed] = {}
        self._opening: dict[tuple[str, str], asyncio.Task[StreamFeed]] = {}

    async def acquire(self, dist_id: str, origins: Sequence[Origin], stream: str) -> StreamFeed:
        """The running feed of `stream`, started if need be; FeedUnavailable if there is none."""
        key = (dist_id, stream)
        feed = self._feeds.get(key)
        if feed is None or feed.done.is_set():
            task = self._opening.get(key)
            if task is None:
                task = asyncio.create_task(self._open(key, origins, stream))
                self._opening[key] = task
                task.add_done_callback(lambda _: self._opening.pop(key, None))
            feed = await asyncio.shield(task)
        feed.holders += 1
        if feed.close_timer is not None:
            feed.close_timer.cancel()
            feed.close_timer = None
        return feed

    def release(self, feed: StreamFeed) -> None:
        feed.holders -= 1
        if feed.holders <= 0 and not feed.done.is_set() and feed.close_timer is None:
            loop = asyncio.get_running_loop()
            feed.close_timer = loop.call_later(self.settings.grace_seconds, self._close_idle, feed)

    async def close(self) -> None:
        for task in list(self._opening.values()):
            task.cancel()
        await asyncio.gather(*(feed.stop() for feed in self._feeds.values()), return_exceptions=True)
        self._feeds.clear()

    def _close_idle(self, feed: StreamFeed) -> None:
        feed.close_timer = None
        if feed.holders <= 0:
            key = next((k for k, f in self._feeds.items() if f is feed), None)
            if key is not None:
                del self._feeds[key]
            asyncio.get_running_loop().create_task(feed.stop())

    async def _open(self, key: tuple[str, str], origins: Sequence[Origin], stream: str) -> StreamFeed:
        try:
            response = await self.upstream.request(origins, "GET", feed_path(stream), self._headers)
        except UpstreamError as exc:
            raise FeedUnavailable(504 if exc.kind == "timeout" else 502, str(exc)) from exc
        if response.status != 200:
            response.close()
            if response.status == 404:
                raise FeedUnavailable(404, f"no live stream named {stream!r}")
            raise FeedUnavailable(502, f"the origin answered {response.status} for the stream's feed")
        feed = StreamFeed(stream, response, self.settings, asyncio.get_running_loop())
        await feed.start()
        self._feeds[key] = feed
        return feed
