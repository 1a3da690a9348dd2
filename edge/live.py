"""What an edge counts about the live streams it relays: viewers, origin requests, egress.

To an edge a live stream is a set of HTTP objects under one folder (a stream is named by the
first two path segments, `/live/NAME/...`, the media origin's layout), and the kind of an
object is read from its name: playlists end in `.m3u8` (or `.mpd`: DASH), init segments in
`.mp4`, parts are the media objects whose file name starts with `part`, every other media
object is a segment. Nothing here knows how the media is packaged; the request flow calls `served()` for every
answer of a streaming distribution and `fetched()` for every request it sends upstream.

A viewer is a playback session, not a client address: two hundred players behind one address
(a load test, an office, a carrier NAT) are two hundred viewers. A player names its session the
standard way, CMCD (CTA-5004): hls.js with `cmcd` set sends `CMCD-Session: sid="..."` (or a
`CMCD=` query parameter), and so does `cdn loadtest`. A player that names no session counts as
one per address and User-Agent, the best an edge can tell without one. A session is watching
while it asked for anything of the stream within the viewer window.

The counts are kept mergeable, for edges whose metrics several worker processes add up: per
stream, sessions are counted in time slots (`SLOTS_PER_WINDOW` per window) as
{slot: {session: requests}}; adding two processes' dicts key by key keeps the set of sessions
right, and the viewers are the distinct sessions of the slots that cover the window.

Memory is bounded: slots older than the window are dropped as time moves on, sessions per slot
are capped, and the distinct objects remembered per stream and kind are capped (oldest
forgotten first).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

VIEWER_WINDOW = 10.0  # seconds: a session seen this recently is watching
SLOTS_PER_WINDOW = 5  # a session is counted for between 1 and 1 + 1/5 windows after its last request
MAX_VIEWERS = 200_000  # sessions per stream and slot
MAX_OBJECTS = 4096  # distinct object names remembered per stream and kind
MAX_STREAMS = 1000
KINDS = ("playlist", "init", "segment", "part")
# CTA-5004 3.3: sid is a quoted string of at most 64 characters
_SID = re.compile(r'(?:^|,)\s*sid="([^"\\]{1,64})"')


def session_of(client: str, query: str, headers: Mapping[str, str]) -> str:
    """Who is watching: the CMCD session id (header, else query), else address and User-Agent."""
    sid = _sid(headers.get("cmcd-session", ""))
    if sid is None and "CMCD=" in query:
        sid = _sid(next((v for k, v in parse_qsl(query) if k == "CMCD"), ""))
    if sid is not None:
        return sid
    return f"{client} {headers.get('user-agent', '')[:200]}"


@lru_cache(maxsize=4096)  # a player sends the same CMCD-Session value with every request
def _sid(cmcd: str) -> str | None:
    found = _SID.search(cmcd)
    return None if found is None else "sid " + found.group(1)


def stream_of(path: str) -> str | None:
    """The stream a request path belongs to: its first two segments, `/live/NAME`."""
    parts = unquote(path).split("/", 3)
    if len(parts) < 4 or not parts[1] or not parts[2]:
        return None
    return f"/{parts[1]}/{parts[2]}"


def object_kind(path: str) -> str | None:
    """playlist, init, segment or part; None for anything else (a JSON status page, ...)."""
    name = path.split("?", 1)[0].rsplit("/", 1)[-1]
    if name.endswith((".m3u8", ".mpd")):
        return "playlist"
    if name.endswith(".mp4"):
        return "init"
    if name.endswith((".m4s", ".ts", ".aac", ".m4a", ".m4v", ".vtt")):
        return "part" if name.startswith("part") else "segment"
    return None


@dataclass
class StreamStats:
    """One stream at one edge."""

    sessions: dict[int, dict[str, int]] = field(default_factory=dict)  # time slot -> session -> requests
    egress_bytes: int = 0
    responses: int = 0
    origin_requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    objects: dict[str, OrderedDict[str, None]] = field(default_factory=lambda: {k: OrderedDict() for k in KINDS})
    distinct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def live_viewers(self, now: float, window: float) -> int:
        """Distinct sessions of the slots that cover the last `window` seconds."""
        first = _slot(now, window) - SLOTS_PER_WINDOW
        for old in [slot for slot in self.sessions if slot < first]:
            del self.sessions[old]
        if len(self.sessions) == 1:
            return len(next(iter(self.sessions.values())))
        return len(set().union(*self.sessions.values()))

    def per_object(self, kind: str) -> float:
        """Origin requests per distinct object of `kind` (the relay's goal: 1.0)."""
        return self.origin_requests[kind] / self.distinct[kind] if self.distinct[kind] else 0.0


class LiveStats:
    """Per-stream counters of one edge's streaming distributions."""

    def __init__(self, *, clock: Callable[[], float] = time.time, window: float = VIEWER_WINDOW) -> None:
        self.clock = clock
        self.window = window
        self.streams: dict[str, StreamStats] = {}
        # WebRTC viewers per stream path, asked at snapshot time (the edge's WHEP service sets it)
        self.webrtc_viewers: Callable[[], Mapping[str, int]] = dict

    def _stream(self, path: str) -> StreamStats | None:
        name = stream_of(path)
        if name is None:
            return None
        stats = self.streams.get(name)
        if stats is None:
            if len(self.streams) >= MAX_STREAMS:
                self.streams.pop(next(iter(self.streams)))
            stats = self.streams[name] = StreamStats()
        return stats

    def served(self, path: str, session: str, sent: int, *, viewer: bool = True) -> None:
        """A request of playback `session` (see `session_of`) answered, hit or not, with `sent`
        body bytes; `viewer` False for another edge filling its cache (egress, not a viewer)."""
        stats = self._stream(path)
        if stats is None:
            return
        stats.responses += 1
        stats.egress_bytes += sent
        if not viewer:
            return
        slot = _slot(self.clock(), self.window)
        counts = stats.sessions.get(slot)
        if counts is None:
            stats.live_viewers(self.clock(), self.window)  # a new slot: forget the old ones
            counts = stats.sessions[slot] = {}
        if session in counts:
            counts[session] += 1
        elif len(counts) < MAX_VIEWERS:
            counts[session] = 1

    def fetched(self, path: str) -> None:
        """One request sent upstream (origin or parent edge) for `path`."""
        kind = object_kind(path)
        stats = self._stream(path) if kind is not None else None
        if stats is None or kind is None:
            return
        stats.origin_requests[kind] += 1
        seen = stats.objects[kind]
        if path in seen:
            seen.move_to_end(path)
            return
        seen[path] = None
        stats.distinct[kind] += 1
        if len(seen) > MAX_OBJECTS:
            seen.popitem(last=False)

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        webrtc = self.webrtc_viewers()
        # a stream watched over WebRTC only is listed with empty HLS counters, without taking a
        # place among the MAX_STREAMS counted ones
        streams = {**dict.fromkeys(webrtc.keys() - self.streams.keys(), StreamStats()), **self.streams}
        return {
            name: {
                "viewers": s.live_viewers(now, self.window),
                "webrtc_viewers": webrtc.get(name, 0),
                "viewer_window_seconds": self.window,
                "responses": s.responses,
                "egress_bytes": s.egress_bytes,
                "origin_requests": dict(s.origin_requests),
                "objects_fetched": dict(s.distinct),
                "origin_requests_per_object": {k: round(s.per_object(k), 3) for k in KINDS},
            }
            for name, s in sorted(streams.items())
        }

    def export(self) -> dict[str, Any]:
        """The raw per-stream counters, for `absorb` in another process (edge/workers.py)."""
        return {
            name: {
                "sessions": {str(slot): ids for slot, ids in s.sessions.items()},
                "egress_bytes": s.egress_bytes,
                "responses": s.responses,
                "origin_requests": s.origin_requests,
                "distinct": s.distinct,
            }
            for name, s in self.streams.items()
        }

    def absorb(self, state: dict[str, Any]) -> None:
        """Another process's `export()` added in: counts summed, sessions united slot by slot
        (a session whose requests reached two workers is one viewer)."""
        for name, raw in state.items():
            stats = self.streams.setdefault(name, StreamStats())
            for slot, ids in raw["sessions"].items():
                mine = stats.sessions.setdefault(int(slot), {})
                for session, requests in ids.items():
                    mine[session] = mine.get(session, 0) + requests
            stats.egress_bytes += raw["egress_bytes"]
            stats.responses += raw["responses"]
            for kind in KINDS:
                stats.origin_requests[kind] += raw["origin_requests"].get(kind, 0)
                stats.distinct[kind] += raw["distinct"].get(kind, 0)

    def families(self) -> Iterator[Metric]:
        """The Prometheus families, built at scrape time."""
        now = self.clock()
        viewers = GaugeMetricFamily(
            "cdn_edge_live_viewers",
            f"Playback sessions of a live stream seen in the last {self.window:g} s",
            labels=["stream"],
        )
        egress = CounterMetricFamily(
            "cdn_edge_live_egress_bytes", "Bytes sent to viewers of a live stream", labels=["stream"]
        )
        fetched = CounterMetricFamily(
            "cdn_edge_live_origin_requests",
            "Requests sent upstream for a live stream's objects, by kind",
            labels=["stream", "kind"],
        )
        distinct = CounterMetricFamily(
            "cdn_edge_live_objects_fetched",
            "Distinct objects of a live stream fetched upstream, by kind",
            labels=["stream", "kind"],
        )
        webrtc = GaugeMetricFamily(
            "cdn_edge_live_webrtc_viewers", "WebRTC (WHEP) sessions of a live stream", labels=["stream"]
        )
        for name, count in sorted(self.webrtc_viewers().items()):
            webrtc.add_metric([name], count)
        for name, s in sorted(self.streams.items()):
            viewers.add_metric([name], s.live_viewers(now, self.window))
            egress.add_metric([name], s.egress_bytes)
            for kind in KINDS:
                fetched.add_metric([name, kind], s.origin_requests[kind])
                distinct.add_metric([name, kind], s.distinct[kind])
        yield from (viewers, webrtc, egress, fetched, distinct)


def _slot(now: float, window: float) -> int:
    return int(now // (window / SLOTS_PER_WINDOW))
