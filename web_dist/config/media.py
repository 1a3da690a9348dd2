"""Configuration of the media origin: frozen values, checked loudly when read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from web_dist.config import did_you_mean

SOURCE_KINDS = ("rtmp", "test", "file", "whip", "srt")
PASSTHROUGH_SOURCES = ("rtmp", "file", "srt")  # their own encoding is served as the "source" rendition
SOURCE_RENDITION = "source"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class RenditionSettings:
    """One rung of an ABR ladder: transcoded at this size and video bitrate."""

    name: str
    width: int
    height: int
    bitrate: int


# name -> (width, height, video bits/s): the usual 16:9 ladder (4:2:0 wants even sizes, hence
# 852 and 424 rather than 854 and 426)
PRESETS = {
    "1080p": (1920, 1080, 5_000_000),
    "720p": (1280, 720, 2_800_000),
    "540p": (960, 540, 1_600_000),
    "480p": (852, 480, 1_200_000),
    "360p": (640, 360, 800_000),
    "240p": (424, 240, 400_000),
    "180p": (320, 180, 250_000),
}


@dataclass(frozen=True)
class StreamSettings:
    name: str
    source: str  # one of SOURCE_KINDS
    key: str | None = field(default=None, repr=False)  # RTMP/SRT stream key, WHIP bearer token
    path: str | None = None  # file source
    width: int = 640  # test source
    height: int = 360
    fps: int = 25
    bitrate: int = 800_000
    renditions: tuple[RenditionSettings, ...] = ()  # an ABR ladder, transcoded
    passphrase: str | None = field(default=None, repr=False)  # SRT encryption
    pbkeylen: int = 16  # SRT AES key length: 16, 24 or 32
    record: bool = False  # write every rendition's segments to disk (see recording.py)
    record_max_seconds: float = 3600.0  # the oldest recorded segments are deleted past this
    record_reconnect_seconds: float = 10.0  # a publisher back within this continues a recording

    @property
    def rendition_names(self) -> tuple[str, ...]:
        """What the multivariant playlist lists, in order: a passthrough source keeps its own
        encoding as "source"; an encoding source (test, WHIP) serves just the ladder."""
        ladder = tuple(r.name for r in self.renditions)
        if self.source in PASSTHROUGH_SOURCES or not ladder:
            return (SOURCE_RENDITION, *ladder)
        return ladder


@dataclass(frozen=True)
class MediaOriginSettings:
    streams: tuple[StreamSettings, ...] = ()
    rtmp_listen: str = "127.0.0.1:1935"
    srt_listen: str = "127.0.0.1:8890"  # srt://HOST:PORT?streamid=publish:STREAM:KEY
    srt_latency_ms: int = 120  # SRT's receive latency (its default): the loss-recovery budget
    segment_seconds: float = 2.0
    part_seconds: float = 0.5
    window_seconds: float = 12.0
    dvr_seconds: float = 0.0  # >0: list (and keep) this much instead of window_seconds
    # a publisher back within this long continues its playlist; after it, EXT-X-ENDLIST
    reconnect_grace_seconds: float = 10.0
    recordings_dir: str = "var/recordings"  # one folder per stream, one below it per recording

    @property
    def listed_seconds(self) -> float:
        return max(self.window_seconds, self.dvr_seconds)

    def stream(self, name: str) -> StreamSettings | None:
        return next((s for s in self.streams if s.name == name), None)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, where: str) -> MediaOriginSettings:
        known = {
            "streams",
            "rtmp_listen",
            "srt_listen",
            "srt_latency_ms",
            "segment_seconds",
            "part_seconds",
            "window_seconds",
            "dvr_seconds",
            "recordings_dir",
            "reconnect_grace_seconds",
        }
        for key in options:
            if key not in known:
                raise ValueError(
                    f"{where}.{key}: unknown option{did_you_mean(key, known)} (known: {', '.join(sorted(known))})"
                )
        segment = _number(options, "segment_seconds", 2.0, where, 0.5, 30)
        part = _number(options, "part_seconds", 0.5, where, 0.1, segment)
        window = _number(options, "window_seconds", max(12.0, 3 * segment), where, 2 * segment, 3600)
        dvr = _number(options, "dvr_seconds", 0.0, where, 0, 6 * 3600)
        grace = _number(options, "reconnect_grace_seconds", 10.0, where, 0, 3600)
        listen = _listen(options, "rtmp_listen", "127.0.0.1:1935", where)
        srt_listen = _listen(options, "srt_listen", "127.0.0.1:8890", where)
        streams = _streams(options.get("streams", {}), f"{where}.streams")
        recordings = options.get("recordings_dir", "var/recordings")
        if not isinstance(recordings, str) or not recordings:
            raise ValueError(f"{where}.recordings_dir: expected the path of a folder")
        latency = _number(options, "srt_latency_ms", 120, where, 20, 10_000)
        return cls(
            streams,
            listen,
            srt_listen,
            int(latency),
            segment,
            part,
            window,
            dvr,
            reconnect_grace_seconds=grace,
            recordings_dir=recordings,
        )


def _listen(options: Mapping[str, Any], key: str, default: str, where: str) -> str:
    listen = options.get(key, default)
    if not isinstance(listen, str) or not re.match(r"^\[?[0-9A-Za-z.:-]*\]?:\d+$", listen):
        raise ValueError(f"{where}.{key}: expected HOST:PORT, got {listen!r}")
    return listen


def _number(options: Mapping[str, Any], key: str, default: float, where: str, low: float, high: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}.{key}: expected a number of seconds, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{where}.{key}: {value} is outside [{low}, {high}]")
    return float(value)


def _streams(raw: Any, where: str) -> tuple[StreamSettings, ...]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a table of streams")
    streams = tuple(_stream(name, body, f"{where}.{name}") for name, body in raw.items())
    keys = [s.key for s in streams if s.source == "rtmp"]
    if len(keys) != len(set(keys)):
        raise ValueError(f"{where}: two RTMP streams share a stream key")
    return streams


def _stream(name: str, body: Any, where: str) -> StreamSettings:
    if not _NAME.match(name):
        raise ValueError(f"{where}: stream names are letters, digits, '-' and '_'")
    if not isinstance(body, Mapping):
        raise ValueError(f"{where}: expected a table")
    source = body.get("source")
    if source not in SOURCE_KINDS:
        raise ValueError(f"{where}.source: expected one of {', '.join(SOURCE_KINDS)}, got {source!r}")
    key = body.get("key")
    if source in ("rtmp", "whip", "srt") and (not isinstance(key, str) or not key):
        what = {
            "rtmp": "an RTMP stream needs a stream key",
            "srt": "an SRT stream needs a key (streamid=publish:STREAM:KEY)",
        }.get(source, "a WHIP stream needs a key (its bearer token)")
        raise ValueError(f"{where}.key: {what}")
    if key is not None and (not isinstance(key, str) or not re.match(r"^[\x21-\x7e]{1,128}$", key)):
        raise ValueError(f"{where}.key: printable ASCII without spaces, at most 128 characters")
    path = body.get("path")
    if source == "file" and (not isinstance(path, str) or not path):
        raise ValueError(f"{where}.path: a file source needs the path of a media file")
    sizes = {k: body.get(k, d) for k, d in (("width", 640), ("height", 360), ("fps", 25), ("bitrate", 800_000))}
    for k, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{where}.{k}: expected a positive integer, got {v!r}")
    if sizes["width"] % 2 or sizes["height"] % 2:
        raise ValueError(f"{where}.width: width and height must be even (4:2:0 video)")
    renditions = _renditions(body.get("renditions", []), f"{where}.renditions")
    record = body.get("record", False)
    if not isinstance(record, bool):
        raise ValueError(f"{where}.record: expected true or false, got {record!r}")
    max_seconds = _number(body, "record_max_seconds", 3600.0, where, 1, 7 * 24 * 3600)
    reconnect = _number(body, "record_reconnect_seconds", 10.0, where, 0.1, 3600)
    passphrase, pbkeylen = body.get("passphrase"), body.get("pbkeylen", 16)
    if passphrase is not None and (not isinstance(passphrase, str) or not 10 <= len(passphrase) <= 79):
        raise ValueError(f"{where}.passphrase: SRT passphrases are 10 to 79 characters")
    if pbkeylen not in (16, 24, 32) or isinstance(pbkeylen, bool):
        raise ValueError(f"{where}.pbkeylen: expected 16, 24 or 32, got {pbkeylen!r}")
    return StreamSettings(
        name,
        source,
        key,
        path,
        **sizes,
        renditions=renditions,
        passphrase=passphrase,
        pbkeylen=pbkeylen,
        record=record,
        record_max_seconds=max_seconds,
        record_reconnect_seconds=reconnect,
    )


def _renditions(raw: Any, where: str) -> tuple[RenditionSettings, ...]:
    """`["720p", "360p"]` (presets) or tables `{name, width, height, bitrate}`, mixed freely."""
    if not isinstance(raw, list):
        raise ValueError(f'{where}: expected a list like ["720p", "360p"]')
    rungs = tuple(_rendition(item, f"{where}[{i}]") for i, item in enumerate(raw))
    names = [r.name for r in rungs]
    if len(names) != len(set(names)) or SOURCE_RENDITION in names:
        raise ValueError(f"{where}: rendition names must be unique and not {SOURCE_RENDITION!r}")
    return rungs


def _rendition(item: Any, where: str) -> RenditionSettings:
    if isinstance(item, str):
        if item not in PRESETS:
            raise ValueError(
                f"{where}: unknown preset {item!r}{did_you_mean(item, PRESETS)} (known: {', '.join(PRESETS)})"
            )
        return RenditionSettings(item, *PRESETS[item])
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: expected a preset name or a table")
    unknown = set(item) - {"name", "width", "height", "bitrate"}
    if unknown:
        raise ValueError(f"{where}.{sorted(unknown)[0]}: unknown key (known: name, width, height, bitrate)")
    width, height, bitrate = (item.get(k) for k in ("width", "height", "bitrate"))
    name = item.get("name", f"{height}p")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}.name: letters, digits, '-' and '_'")
    for key, value in (("width", width), ("height", height), ("bitrate", bitrate)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{where}.{key}: expected a positive integer, got {value!r}")
    assert isinstance(width, int) and isinstance(height, int) and isinstance(bitrate, int)
    if width % 2 or height % 2 or width > 4096 or height > 4096:
        raise ValueError(f"{where}.width: width and height must be even and at most 4096")
    return RenditionSettings(name, width, height, bitrate)
