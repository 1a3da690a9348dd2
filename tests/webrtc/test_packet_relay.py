"""The relay's rules, with real queues: join at a keyframe, drop the slow, end for all."""

from __future__ import annotations

import asyncio

from edge.packet_relay import PacketRelay


async def test_a_new_viewer_starts_at_the_next_keyframe_with_audio_alongside() -> None:
    relay: PacketRelay[str] = PacketRelay(("video", "audio"))
    viewer = relay.join()
    relay.publish("video", "v1")
    relay.publish("audio", "a1")
    relay.publish("video", "key2", keyframe=True)
    relay.publish("audio", "a2")
    assert await viewer.next("video") == "key2"
    assert await viewer.next("audio") == "a2"
    assert viewer.queued() == 0


async def test_audio_only_stream_is_fed_at_once() -> None:
    relay: PacketRelay[str] = PacketRelay(("audio",))
    viewer = relay.join()
    relay.publish("audio", "a1")
    assert await viewer.next("audio") == "a1"


async def test_a_slow_viewer_is_dropped_and_the_others_keep_everything() -> None:
    dropped = []
    relay: PacketRelay[int] = PacketRelay(("video",), queue_packets=8)
    slow = relay.join(on_drop=lambda: dropped.append("slow"))
    fast = relay.join(on_drop=lambda: dropped.append("fast"))
    received: list[int | None] = []
    for n in range(100):
        relay.publish("video", n, keyframe=n % 10 == 0)
        received.append(await fast.next("video"))
    assert received == list(range(100))
    assert dropped == ["slow"] and slow.dropped and relay.dropped == 1
    assert slow.queued() == 1 and await slow.next("video") is None  # only the end marker left
    assert relay.viewers == {fast}


async def test_only_the_kinds_a_viewer_takes_are_queued() -> None:
    relay: PacketRelay[str] = PacketRelay(("video", "audio"), queue_packets=2)
    video_only = relay.join(("video",))
    relay.publish("video", "key", keyframe=True)
    for n in range(10):
        relay.publish("audio", f"a{n}")  # nobody reads audio here: no queue to overflow
    assert not video_only.dropped and await video_only.next("video") == "key"


async def test_end_reaches_every_viewer_and_late_joiners() -> None:
    relay: PacketRelay[str] = PacketRelay(("video",))
    viewers = [relay.join() for _ in range(3)]
    waiting = [asyncio.create_task(v.next("video")) for v in viewers]
    await asyncio.sleep(0)
    relay.end()
    assert await asyncio.gather(*waiting) == [None, None, None]
    assert await relay.join().next("video") is None
    assert not relay.viewers
