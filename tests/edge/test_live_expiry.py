"""Live objects leave the memory cache once no rule lets them be served: a stream's parts
must not pile up until LRU reaches them (they would push out everything else first)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .conftest import EdgeRig


async def test_expired_live_parts_leave_memory_as_new_parts_arrive(rig_factory: Callable[..., Any]) -> None:
    rig: EdgeRig = await rig_factory(kind="streaming")
    store = rig.app.flow.store
    for n in range(100):
        rig.origin.set(f"/live/part{n}.m4s", b"p" * 4096, headers={"cache-control": "max-age=2"})
        assert (await rig.get(f"/live/part{n}.m4s")).status_code == 200
    assert len(store) == 100
    full = store.used_bytes
    rig.clock.advance(3)  # every part so far is out of the live window
    for n in range(100, 102):  # the stream goes on: two more parts
        rig.origin.set(f"/live/part{n}.m4s", b"p" * 4096, headers={"cache-control": "max-age=2"})
        assert (await rig.get(f"/live/part{n}.m4s")).status_code == 200
    assert len(store) == 2 and store.used_bytes < full / 10
    assert (await rig.get("/live/part101.m4s")).headers["x-cache"].startswith("Hit")


async def test_a_web_distribution_keeps_expired_objects_for_revalidation(rig: EdgeRig) -> None:
    for n in range(10):
        rig.origin.set(f"/page{n}", b"x", headers={"cache-control": "max-age=2", "etag": '"v1"'})
        await rig.get(f"/page{n}")
    rig.clock.advance(3)
    rig.origin.set("/new", b"x")
    await rig.get("/new")
    assert len(rig.app.flow.store) == 11  # stale, but a 304 can refresh them
