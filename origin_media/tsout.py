"""The MPEG-TS packet feed for WebRTC relays at the edges: H.264 without B-frames + Opus.

Encoded once per stream in the ingest thread (`TsEncoder`), fanned out on the event loop
(`TsHub`) to any number of HTTP readers, each behind a capped queue: a reader that falls
behind is cut off rather than allowed to grow memory. A reader joins at a keyframe, and the
reader is sent the stream's PAT/PMT first, so it can decode from its first byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
from av.audio.codeccontext import AudioCodecContext
from av.audio.stream import AudioStream
from av.codec.context import CodecContext
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext

from . import encoders, h264
from .media import MediaPacket, SessionStart, Track

TS_CLOCK = Fraction(1, 90_000)
OPUS_RATE = 48_000
READER_QUEUE_CHUNKS = 256  # about 10 s of video frames


FIRST_PID = 0x100  # FFmpeg numbers streams from here, in the order added: video first
PMT_PID = 0x1000


@dataclass(frozen=True)
class TsChunk:
    data: bytes
    join_at: int | None  # offset of a keyframe's first TS packet: a new reader starts there
    header: bytes = b""  # PAT + PMT to send a new reader first


def _pid(data: bytes, offset: int) -> int:
    return ((data[offset + 1] & 0x1F) << 8) | data[offset + 2]


def keyframe_offset(data: bytes) -> int | None:
    """Offset of the first TS packet that starts a video keyframe: payload_unit_start set and
    the adaptation field's random_access_indicator, which the muxer sets for key packets."""
    for offset in range(0, len(data) - 5, 188):
        starts = data[offset + 1] & 0x40
        has_adaptation = data[offset + 3] & 0x20 and data[offset + 4] > 0
        if starts and has_adaptation and _pid(data, offset) == FIRST_PID and data[offset + 5] & 0x40:
            return offset
    return None


def psi_packets(data: bytes) -> bytes:
    """The PAT and PMT packets found in `data` (empty until both are)."""
    found = {}
    for offset in range(0, len(data) - 3, 188):
        pid = _pid(data, offset)
        if pid in (0, PMT_PID) and pid not in found:
            found[pid] = data[offset : offset + 188]
    return found[0] + found[PMT_PID] if len(found) == 2 else b""


class _Collector:
    """The file object the muxer writes into; drained after every packet."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class TsEncoder:
    """One session's TS output. Video passes through unless it has B-frames (then it is
    re-encoded for this output only); AAC is decoded and re-encoded as Opus."""

    def __init__(self, start: SessionStart, base_time: int) -> None:
        self.tracks = start.tracks
        self.video = next((i for i, t in enumerate(self.tracks) if t.kind == "video"), None)
        self.audio = next((i for i, t in enumerate(self.tracks) if t.kind == "audio"), None)
        self._out_file = _Collector()
        self._mux = av.open(
            self._out_file,
            "w",
            format="mpegts",
            # Each packet leaves as soon as it is muxed: no waiting to interleave audio and
            # video (max_interleave_delta), video PES with their length so a reader need not
            # wait for the next one to know where one ends (measured at the edge: 154 -> 92 ms).
            options={
                "pes_payload_size": "0",
                "flush_packets": "1",
                "max_interleave_delta": "1",
                "omit_video_pes_length": "0",
            },
        )
        self._base_time = base_time  # keeps the TS clock running across sessions
        self._shift: int | None = None
        self.end_time = base_time
        self._vstream = self._open_video()
        self._astream, self._adecoder, self._resampler = self._open_audio()
        self._reencoder: VideoCodecContext | None = None
        self._header = b""
        self._audio_next: int | None = None  # next audio pts, in samples at OPUS_RATE
        self._vdecoder: VideoCodecContext | None = None

    def _open_video(self) -> Stream | None:
        if self.video is None:
            return None
        track = self.tracks[self.video]
        stream = self._mux.add_mux_stream("h264", width=track.width, height=track.height)
        stream.time_base = TS_CLOCK
        return stream

    def _open_audio(self) -> tuple[AudioStream | None, AudioCodecContext | None, av.AudioResampler | None]:
        if self.audio is None:
            return None, None, None
        track = self.tracks[self.audio]
        layout = "mono" if track.channels == 1 else "stereo"
        stream = self._mux.add_stream("libopus", rate=OPUS_RATE, layout=layout)
        stream.time_base = TS_CLOCK
        decoder = cast(AudioCodecContext, CodecContext.create(track.codec, "r"))
        decoder.extradata = track.extradata or None
        resampler = av.AudioResampler(format="flt", layout=layout, rate=OPUS_RATE)
        return stream, decoder, resampler

    def push(self, packet: MediaPacket) -> list[TsChunk]:
        if packet.track == self.video:
            self._push_video(packet)
        elif packet.track == self.audio:
            self._push_audio(packet)
        return self._take()

    def close(self) -> list[TsChunk]:
        try:
            if self._astream is not None:
                for out in self._astream.encode(None):
                    self._mux.mux(out)
            self._mux.close()
        except (av.FFmpegError, ValueError):
            pass  # closing a muxer that never got a packet
        return self._take()

    def _take(self) -> list[TsChunk]:
        # PyAV muxes with av_interleaved_write_frame, which holds packets back to interleave
        # them, so the bytes that come out are not those of the packet just pushed: find the
        # join points in the bytes themselves.
        data = self._out_file.take()
        if not data:
            return []
        if not self._header:
            self._header = psi_packets(data)
        return [TsChunk(data, keyframe_offset(data), self._header)]

    # ---- video -----------------------------------------------------------------------------

    def _ts(self, ticks: int, track: Track) -> int:
        value = round(ticks * track.time_base / TS_CLOCK)
        if self._shift is None:
            self._shift = self._base_time - value
        return value + self._shift

    def _push_video(self, packet: MediaPacket) -> None:
        track = self.tracks[packet.track]
        if self._shift is None and not packet.keyframe:
            return
        if packet.pts != packet.dts and self._reencoder is None:
            self._start_reencoding(track)
        if self._reencoder is not None:
            self._reencode(packet, track)
        else:
            self._mux_video(
                h264.avcc_to_annexb(packet.data, track.extradata, packet.keyframe),
                self._ts(packet.pts, track),
                self._ts(packet.dts, track),
                packet.keyframe,
            )

    def _mux_video(self, data: bytes, pts: int, dts: int, keyframe: bool) -> None:
        out = av.Packet(data)
        assert self._vstream is not None
        out.stream = self._vstream
        out.pts, out.dts, out.time_base = pts, dts, TS_CLOCK
        out.is_keyframe = keyframe
        self._mux.mux(out)
        self.end_time = max(self.end_time, dts + 3600)

    def _start_reencoding(self, track: Track) -> None:
        """B-frames seen: WebRTC cannot carry them, so decode and encode again."""
        self._vdecoder = CodecContext.create("h264", "r")
        self._vdecoder.extradata = track.extradata
        self._reencoder = encoders.h264_encoder(
            track.width, track.height, 30, 60, 2_000_000, time_base=TS_CLOCK, global_header=False
        )

    def _reencode(self, packet: MediaPacket, track: Track) -> None:
        assert self._vdecoder is not None and self._reencoder is not None
        source = av.Packet(packet.data)
        source.pts, source.dts, source.time_base = packet.pts, packet.dts, track.time_base
        for frame in self._vdecoder.decode(source):
            if frame.pts is None:
                continue
            frame.pts = self._ts(frame.pts, track)
            frame.time_base = TS_CLOCK
            for out in self._reencoder.encode(frame):
                if out.pts is not None and out.dts is not None:
                    self._mux_video(bytes(out), out.pts, out.dts, out.is_keyframe)

    # ---- audio -----------------------------------------------------------------------------

    def _push_audio(self, packet: MediaPacket) -> None:
        if self._shift is None or self._adecoder is None:
            return  # audio waits for the first video keyframe, like the HLS packager
        assert self._astream is not None and self._resampler is not None
        track = self.tracks[packet.track]
        source = av.Packet(packet.data)
        source.pts, source.dts, source.time_base = packet.pts, packet.dts, track.time_base
        for frame in self._adecoder.decode(source):
            for resampled in self._resampler.resample(frame):
                pts = self._audio_pts(round(self._ts(packet.pts, track) * OPUS_RATE * TS_CLOCK))
                if pts is None:
                    continue
                resampled.pts, resampled.time_base = pts, Fraction(1, OPUS_RATE)
                self._audio_next = pts + resampled.samples
                for out in self._astream.encode(resampled):
                    self._mux.mux(out)

    def _audio_pts(self, source_pts: int) -> int | None:
        """Audio on our own sample count (the muxer refuses time going backwards, e.g. an
        encoder-priming packet at a file loop); None drops a frame that lies in the past."""
        expected = self._audio_next
        if expected is None or abs(source_pts - expected) > OPUS_RATE // 10:
            return source_pts if expected is None or source_pts > expected else None
        return expected


class TsHub:
    """Fan-out of one stream's TS chunks to HTTP readers (event-loop side)."""

    def __init__(self) -> None:
        self._readers: set[asyncio.Queue[TsChunk | None]] = set()
        self._waiting_keyframe: set[asyncio.Queue[TsChunk | None]] = set()
        # read by the ingest thread: encode the feed only while someone reads it
        self.wanted = False

    def _update(self) -> None:
        self.wanted = bool(self._readers)

    @property
    def reader_count(self) -> int:
        return len(self._readers)

    def publish(self, chunks: list[TsChunk]) -> None:
        for chunk in chunks:
            for queue in list(self._readers):
                self._offer(queue, chunk)

    def _offer(self, queue: asyncio.Queue[TsChunk | None], chunk: TsChunk) -> None:
        if queue in self._waiting_keyframe:
            if chunk.join_at is None:
                return
            self._waiting_keyframe.discard(queue)
            chunk = TsChunk(chunk.header + chunk.data[chunk.join_at :], 0)
        try:
            queue.put_nowait(chunk)
        except asyncio.QueueFull:
            self._drop(queue)

    def _drop(self, queue: asyncio.Queue[TsChunk | None]) -> None:
        """Too slow: empty its queue and leave only the end marker."""
        self._readers.discard(queue)
        self._update()
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    def close_all(self) -> None:
        for queue in list(self._readers):
            self._drop(queue)

    async def read(self) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[TsChunk | None] = asyncio.Queue(READER_QUEUE_CHUNKS)
        self._readers.add(queue)
        self._waiting_keyframe.add(queue)
        self._update()
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk.data
        finally:
            self._readers.discard(queue)
            self._waiting_keyframe.discard(queue)
            self._update()
