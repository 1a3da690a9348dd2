"""Ingest sources. Each runs in its own thread and pushes into a `SessionSink`.

A session is one publisher connection (or one run of a built-in source): `start`, packets,
`end`. The sink (a live stream) turns that into packaging work.
"""

from __future__ import annotations

from typing import Protocol

from ..media import MediaPacket, SessionStart


class SessionSink(Protocol):
    def start(self, start: SessionStart) -> None: ...

    def packet(self, packet: MediaPacket) -> None: ...

    def end(self) -> None: ...


class Releasable(SessionSink, Protocol):
    def release(self) -> None: ...


class Publishable(Releasable, Protocol):
    """A stream a publisher (RTMP, WHIP) can claim while it pushes, and release after."""

    name: str

    def claim(self) -> bool: ...
