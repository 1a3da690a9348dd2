"""Fan-out of one live stream's encoded packets to its WebRTC viewers. Pure: no I/O, no codecs.

After aiortc's `MediaRelay`: one reader per source publishes, each viewer has its own small
proxy, and an end marker (None) tells a viewer the stream is over. Unlike `MediaRelay`, every
viewer's queue is capped: a viewer that falls behind is dropped (its queues emptied, the end
marker left), so it never grows memory and never holds back the others. A new viewer is fed
from the next video keyframe on (audio included, so both start together); a stream without
video is fed at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")
VIDEO = "video"
DEFAULT_QUEUE_PACKETS = 256  # per kind: about 10 s of 25 fps video, 5 s of 20 ms Opus


class RelayViewer(Generic[T]):
    """One viewer's side of the relay: a capped queue per kind it receives."""

    def __init__(
        self,
        kinds: Iterable[str],
        queue_packets: int,
        waits_for_keyframe: bool,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self._queues: dict[str, asyncio.Queue[T | None]] = {kind: asyncio.Queue(queue_packets) for kind in kinds}
        self.kinds = tuple(self._queues)  # read for every packet published: made once
        self.joined = not waits_for_keyframe
        self.dropped = False  # cut off for being too slow
        self.ended = False  # the end marker was queued
        self.on_drop = on_drop

    def queued(self) -> int:
        return sum(queue.qsize() for queue in self._queues.values())

    async def next(self, kind: str) -> T | None:
        """The next packet of `kind`, or None once the stream is over for this viewer."""
        return await self._queues[kind].get()

    def offer(self, kind: str, item: T) -> bool:
        """Queue `item`; False when the queue is full (the caller drops the viewer)."""
        try:
            self._queues[kind].put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def end(self) -> None:
        """Empty every queue and leave only the end marker."""
        if self.ended:
            return
        self.ended = True
        for queue in self._queues.values():
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)


class PacketRelay(Generic[T]):
    """One stream's packets to any number of viewers."""

    def __init__(self, kinds: Iterable[str], *, queue_packets: int = DEFAULT_QUEUE_PACKETS) -> None:
        if queue_packets < 1:
            raise ValueError("queue_packets must be at least 1")
        self.kinds = tuple(kinds)
        self.queue_packets = queue_packets
        self.viewers: set[RelayViewer[T]] = set()
        self.ended = False
        self.dropped = 0

    def join(self, kinds: Iterable[str] | None = None, on_drop: Callable[[], None] | None = None) -> RelayViewer[T]:
        """A new viewer of `kinds` (default: all the stream has), fed from the next keyframe.
        `on_drop` is called if it is cut off for being slow, so its owner can hang up."""
        wanted = [kind for kind in (kinds or self.kinds) if kind in self.kinds]
        viewer: RelayViewer[T] = RelayViewer(wanted, self.queue_packets, VIDEO in self.kinds, on_drop)
        if self.ended:
            viewer.end()
        else:
            self.viewers.add(viewer)
        return viewer

    def leave(self, viewer: RelayViewer[T]) -> None:
        self.viewers.discard(viewer)

    def publish(self, kind: str, item: T, keyframe: bool = False) -> None:
        for viewer in list(self.viewers):
            if not viewer.joined:
                if kind != VIDEO or not keyframe:
                    continue
                viewer.joined = True
            if kind in viewer.kinds and not viewer.offer(kind, item):
                self._drop(viewer)

    def end(self) -> None:
        """The stream is over: every viewer gets the end marker."""
        self.ended = True
        for viewer in list(self.viewers):
            viewer.end()
        self.viewers.clear()

    def _drop(self, viewer: RelayViewer[T]) -> None:
        self.viewers.discard(viewer)
        self.dropped += 1
        viewer.dropped = True
        viewer.end()
        if viewer.on_drop is not None:
            viewer.on_drop()
