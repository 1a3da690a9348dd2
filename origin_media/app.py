"""The media origin: a Starlette app whose lifespan runs the ingest of every configured
stream (test pattern, file, RTMP, SRT, WHIP) and whose routes serve them as LL-HLS.

    /streams                                   JSON: state, protocol, bitrate, age
    /live/STREAM/master.m3u8                   multivariant playlist (every rendition)
    /live/STREAM/manifest.mpd                  dynamic MPEG-DASH MPD over the same segments
    /time                                      wall clock (ISO 8601) for DASH UTCTiming
    /live/STREAM/RENDITION/index.m3u8          media playlist (_HLS_msn/_HLS_part blocking);
                                               RENDITION: "source" and/or ladder names ("360p")
    /live/STREAM/RENDITION/EPOCH/init1.mp4     init segment (one per publisher session)
    /live/STREAM/RENDITION/EPOCH/seg7.m4s      segment;  part7.2.m4s: part
    /live/STREAM/RENDITION/EPOCH/video/seg7.m4s  one track of it (and of init1.mp4): DASH
    /live/STREAM/stream.ts                     MPEG-TS feed (H.264 without B-frames + Opus)
    /recordings/STREAM                         JSON: the stream's recordings (record = true)
    /recordings/STREAM/ID/master.m3u8          a recording, every rendition (multivariant);
    /recordings/STREAM/ID/RENDITION/index.m3u8   EVENT while live, VOD once closed
    POST /whip/STREAM, DELETE /whip/STREAM/ID  WebRTC ingest (RFC 9725)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from web_dist.config.media import MediaOriginSettings, StreamSettings
from web_dist.http.access import OriginSecretGuard

from .dash_live import DashRoutes
from .recording import Recorder
from .recording_routes import RecordingRoutes
from .routes import MediaRoutes
from .sources.file import FileSource
from .sources.rtmp import RtmpIngest
from .sources.srt import SrtIngest, SrtStream
from .sources.testpattern import TestPattern, TestPatternSettings
from .sources.whip import WhipIngest
from .stream import LiveStream, WindowSettings

__all__ = ["MediaOriginSettings", "build_media_origin_app"]

log = logging.getLogger(__name__)


@dataclass
class _Running:
    """What the lifespan started and must stop."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    rtmp: RtmpIngest | None = None
    srt: SrtIngest | None = None

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)


def build_media_origin_app(settings: MediaOriginSettings, *, access_secret: str | None = None) -> Starlette:
    """The media origin; with `access_secret`, every request but a publisher's WHIP ingest
    (which has its stream key) needs it (edges send it): viewers cannot reach the origin, nor
    its MPEG-TS feed, around the CDN."""
    streams: dict[str, LiveStream] = {}
    routes = MediaRoutes(streams)
    dash = DashRoutes(streams)
    recorders: dict[str, Recorder] = {}
    recordings = RecordingRoutes(recorders)
    whip = WhipIngest(streams, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        window = WindowSettings(
            settings.segment_seconds, settings.part_seconds, settings.listed_seconds, settings.reconnect_grace_seconds
        )
        for config in settings.streams:
            if config.record:
                recorders[config.name] = Recorder(
                    Path(settings.recordings_dir) / config.name,
                    config.record_max_seconds,
                    config.record_reconnect_seconds,
                )
            streams[config.name] = LiveStream(config, window, loop, recorder=recorders.get(config.name))
        running = _Running()
        await _start_sources(settings, streams, running)
        app.state.rtmp = running.rtmp
        app.state.srt = running.srt
        try:
            yield
        finally:
            await _stop_sources(running, whip)

    return Starlette(
        routes=[
            Route("/streams", routes.list_streams),
            Route("/time", dash.time),
            Route("/live/{stream}/master.m3u8", routes.multivariant),
            Route("/live/{stream}/manifest.mpd", dash.manifest),
            Route("/live/{stream}/stream.ts", routes.ts_feed),
            Route("/live/{stream}/{rendition}/index.m3u8", routes.media_playlist),
            Route("/live/{stream}/{rendition}/{epoch}/{name}", routes.media_object),
            Route("/live/{stream}/{rendition}/{epoch}/{track}/{name}", routes.track_object),
            Route("/recordings/{stream}", recordings.list),
            Route("/recordings/{stream}/{recording}/master.m3u8", recordings.multivariant),
            Route("/recordings/{stream}/{recording}/{rendition}/index.m3u8", recordings.playlist),
            Route("/recordings/{stream}/{recording}/{rendition}/{name}", recordings.file),
            Route("/whip/{stream}", whip.offer, methods=["POST", "OPTIONS"]),
            # no trickle ICE or ICE restart: PATCH gets a 405, as RFC 9725 asks
            Route("/whip/{stream}/{session}", whip.delete, methods=["DELETE", "OPTIONS"]),
        ],
        lifespan=lifespan,
        middleware=[Middleware(OriginSecretGuard, secret=access_secret, open_prefixes=("/whip/",))],
    )


async def _start_sources(settings: MediaOriginSettings, streams: dict[str, LiveStream], running: _Running) -> None:
    for config in settings.streams:
        stream = streams[config.name]
        if config.source == "test":
            pattern = TestPattern(_pattern_settings(config, settings))
            running.spawn(f"test-{config.name}", partial(pattern.run, stream, running.stop))
        elif config.source == "file":
            assert config.path is not None
            source = FileSource(config.path)
            running.spawn(f"file-{config.name}", partial(source.run, stream, running.stop))
    keys = {c.key: streams[c.name] for c in settings.streams if c.source == "rtmp" and c.key}
    if keys:
        running.rtmp = RtmpIngest(settings.rtmp_listen, keys)
        await running.rtmp.start()
    srt = {
        c.name: SrtStream(streams[c.name], c.key, c.passphrase, c.pbkeylen)
        for c in settings.streams
        if c.source == "srt" and c.key
    }
    if srt:
        running.srt = SrtIngest(settings.srt_listen, srt, settings.srt_latency_ms)
        running.srt.start()


def _pattern_settings(config: StreamSettings, settings: MediaOriginSettings) -> TestPatternSettings:
    # one keyframe per segment: segments come out exactly on target
    return TestPatternSettings(
        config.width, config.height, config.fps, settings.segment_seconds, config.bitrate, config.renditions
    )


async def _stop_sources(running: _Running, whip: WhipIngest) -> None:
    running.stop.set()
    await whip.close()
    if running.rtmp is not None:
        await running.rtmp.stop()
    if running.srt is not None:
        await asyncio.to_thread(running.srt.stop)
    for thread in running.threads:
        await asyncio.to_thread(thread.join, 5)
        if thread.is_alive():
            log.warning("source thread %s did not stop", thread.name)
