"""A media file looped as if it were live: paced by its timestamps, each pass continuing
the previous one's timeline, so players see one endless stream."""

from __future__ import annotations

import logging
import threading
import time

import av

from ..media import SessionStart
from . import SessionSink
from .demux import TrackMap, map_tracks, to_media_packet

log = logging.getLogger(__name__)


class FileSource:
    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, sink: SessionSink, stop: threading.Event) -> None:
        try:
            self._loop(sink, stop)
        except (OSError, av.FFmpegError, ValueError) as exc:
            log.error("file source %s failed: %s", self.path, exc)

    def _loop(self, sink: SessionSink, stop: threading.Event) -> None:
        with av.open(self.path) as first:
            mapping = map_tracks(first)
        if not mapping.tracks:
            raise ValueError("no H.264/AAC stream to pass through")
        sink.start(SessionStart(mapping.tracks, "file", time.time()))
        clock0, media_offset = time.monotonic(), 0.0  # seconds of media already played
        try:
            while not stop.is_set():
                played = self._play_once(sink, stop, mapping, clock0, media_offset)
                if played <= 0:
                    raise ValueError("the file has no packets")
                media_offset += played
        finally:
            sink.end()

    def _play_once(
        self, sink: SessionSink, stop: threading.Event, mapping: TrackMap, clock0: float, media_offset: float
    ) -> float:
        """One pass over the file; returns the media seconds it lasted. Its length is that
        of the video (audio usually runs a few ms longer: the overlap is dropped downstream),
        so the picture's clock runs on without a gap from one pass to the next."""
        end = 0.0
        lead = "video" if any(t.kind == "video" for t in mapping.tracks) else "audio"
        with av.open(self.path) as container:
            for packet in container.demux():
                if packet.dts is None or packet.time_base is None:
                    continue
                seconds = float(packet.dts * packet.time_base)
                shift = round(media_offset / packet.time_base)
                media = to_media_packet(packet, mapping, shift)
                if media is None:
                    continue
                if stop.wait(max(0.0, clock0 + media_offset + seconds - time.monotonic())):
                    return end
                sink.packet(media)
                if packet.stream.type == lead:
                    duration = float((packet.duration or 0) * packet.time_base)
                    end = max(end, seconds + duration)
        return end
