"""The disk tier on real files: roundtrip, restart, corruption, LRU, atomic writes, close."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from edge.disk_store import HEADER, DiskStore, entry_path
from edge.store import CachedResponse

NOW = 1_700_000_000.0
MiB = 1024 * 1024


def response(body: bytes = b"hello", **kw: object) -> CachedResponse:
    fields: dict[str, object] = {
        "status": 200,
        "headers": [("content-type", "text/plain"), ("etag", '"v1"')],
        "body": body,
        "response_time": NOW,
        "initial_age": 3.0,
        "ttl": 60.0,
    }
    fields.update(kw)
    return CachedResponse(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def disk(tmp_path: Path) -> AsyncIterator[DiskStore]:
    store = DiskStore(tmp_path / "cache", capacity_bytes=MiB, max_object_bytes=256 * 1024)
    await store.open()
    yield store
    await store.close()


async def reopen(store: DiskStore, **kw: int) -> DiskStore:
    """Close `store` and open a new one on its folder, as a restarted edge would."""
    await store.close()
    capacity = kw.get("capacity_bytes", store.capacity_bytes)
    again = DiskStore(store.root, capacity, store.max_object_bytes)
    await again.open()
    return again


def flip_body_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 3)


def garbage_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(b"\x00garbage" * 3 + data[HEADER.size :])


def temp_files(root: Path) -> list[Path]:
    return list(root.rglob("*.tmp"))


CORRUPTIONS = [flip_body_byte, truncate, garbage_header]


async def test_roundtrip_keeps_every_field_but_the_gzip_copy(disk: DiskStore) -> None:
    entry = response(
        b"\x00\xffbody" * 100,
        status=203,
        must_revalidate=True,
        tags=("a", "b"),
        headers=[("x-caf\u00e9", "d\u00e9j\u00e0 vu"), ("vary", "accept")],
        stale_while_revalidate=30.0,
        stale_if_error=None,
        encoded={"gzip": b"gz"},
    )
    assert disk.put("/k?q=1", entry)
    assert await disk.get("/k?q=1") is entry  # queued: served from memory, never half-written
    await disk.flush()
    got = await disk.get("/k?q=1")
    assert got is not None and got is not entry
    assert got == replace(entry, encoded={})  # compressed copies are recomputed, not stored
    assert disk.used_bytes == entry_path(disk.root, "/k?q=1").stat().st_size
    assert list(disk.keys()) == ["/k?q=1"] and len(disk) == 1
    assert await disk.get("/other") is None


async def test_restart_finds_entries_with_their_ages(disk: DiskStore) -> None:
    for i in range(5):
        disk.put(f"/k{i}", response(b"x" * i * 100, response_time=NOW + i))
    again = await reopen(disk)
    try:
        assert sorted(again.keys()) == [f"/k{i}" for i in range(5)]
        got = await again.get("/k3")
        assert got is not None and got.body == b"x" * 300
        assert got.age(NOW + 10) == 3.0 + 7  # initial age + time since the stored response_time
        assert again.used_bytes == disk.used_bytes
    finally:
        await again.close()


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
async def test_corrupt_file_is_a_miss_and_removed_at_get(disk: DiskStore, corrupt: Callable[[Path], None]) -> None:
    disk.put("/bad", response(b"b" * 1000))
    disk.put("/good", response(b"g" * 1000))
    await disk.flush()
    corrupt(entry_path(disk.root, "/bad"))
    assert await disk.get("/bad") is None
    assert disk.corrupt_dropped == 1
    await disk.flush()
    assert not entry_path(disk.root, "/bad").exists()
    assert list(disk.keys()) == ["/good"]
    assert disk.used_bytes == entry_path(disk.root, "/good").stat().st_size
    assert await disk.get("/good") is not None


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
async def test_corrupt_file_is_dropped_at_open(disk: DiskStore, corrupt: Callable[[Path], None]) -> None:
    disk.put("/bad", response(b"b" * 1000))
    disk.put("/good", response(b"g" * 1000))
    await disk.close()
    corrupt(entry_path(disk.root, "/bad"))
    again = await reopen(disk)
    try:
        assert list(again.keys()) == ["/good"]
        assert again.corrupt_dropped == 1
        assert not entry_path(disk.root, "/bad").exists()
    finally:
        await again.close()


async def test_a_file_holding_another_key_is_never_served(disk: DiskStore) -> None:
    # What a sha256 collision would look like: /a's file name holds /b's entry.
    disk.put("/a", response(b"body of a"))
    disk.put("/b", response(b"body of b"))
    await disk.flush()
    shutil.copyfile(entry_path(disk.root, "/b"), entry_path(disk.root, "/a"))
    assert await disk.get("/a") is None
    got = await disk.get("/b")
    assert got is not None and got.body == b"body of b"


async def test_stray_temp_files_are_removed_at_open(disk: DiskStore) -> None:
    disk.put("/k", response())
    await disk.close()
    final = entry_path(disk.root, "/k")
    stray = final.parent / (final.name + ".abc123.tmp")
    stray.write_bytes(final.read_bytes()[:10])  # a write a crash cut short
    again = await reopen(disk)
    try:
        assert not stray.exists()
        assert list(again.keys()) == ["/k"] and again.corrupt_dropped == 0
    finally:
        await again.close()


async def test_capacity_evicts_the_least_recently_read(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, capacity_bytes=4000, max_object_bytes=2000)
    await store.open()
    try:
        for key in ("/a", "/b", "/c"):
            store.put(key, response(b"x" * 1000))
            await store.flush()
        assert await store.get("/a") is not None  # /b is now the least recently used
        store.put("/d", response(b"x" * 1000))
        await store.flush()
        assert sorted(store.keys()) == ["/a", "/c", "/d"] and store.evictions == 1
        assert not entry_path(tmp_path, "/b").exists()
        assert store.used_bytes <= store.capacity_bytes
        again = await reopen(store, capacity_bytes=2700)  # a smaller tier keeps the most recent
        assert sorted(again.keys()) == ["/a", "/d"]
        await again.close()
    finally:
        await store.close()


async def test_oversize_is_refused_and_drops_the_older_copy(disk: DiskStore) -> None:
    assert disk.put("/k", response(b"small"))
    await disk.flush()
    assert not disk.put("/k", response(b"x" * (disk.max_object_bytes + 1)))
    await disk.flush()
    assert await disk.get("/k") is None and len(disk) == 0
    assert not entry_path(disk.root, "/k").exists()


async def test_delete_removes_the_entry_now_and_the_file_soon(disk: DiskStore) -> None:
    disk.put("/k", response())
    await disk.flush()
    assert disk.delete("/k")
    assert await disk.get("/k") is None and len(disk) == 0 and disk.used_bytes == 0
    await disk.flush()
    assert not entry_path(disk.root, "/k").exists()
    assert not disk.delete("/k")
    disk.put("/q", response())  # deleted while still queued: never reaches the disk
    assert disk.delete("/q")
    await disk.flush()
    assert not entry_path(disk.root, "/q").exists()


async def test_a_full_write_queue_drops_and_counts(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, capacity_bytes=MiB, max_object_bytes=MiB, queue_size=2)
    await store.open()
    accepted = [store.put(f"/k{i}", response()) for i in range(5)]  # no await: writer can't run
    assert accepted == [True, True, False, False, False] and store.dropped_writes == 3
    assert store.put("/k0", response(b"newer"))  # already queued: replaces, not dropped
    await store.close()
    again = await reopen(store)
    got = await again.get("/k0")
    assert sorted(again.keys()) == ["/k0", "/k1"] and got is not None and got.body == b"newer"
    await again.close()


async def test_readers_never_see_a_partial_entry_while_it_is_rewritten(tmp_path: Path) -> None:
    # A second store on the folder reads the files that the first keeps replacing.
    writer = DiskStore(tmp_path, capacity_bytes=64 * MiB, max_object_bytes=4 * MiB)
    await writer.open()
    writer.put("/k", response(b"\x00" * MiB))
    await writer.flush()
    reader = DiskStore(tmp_path, capacity_bytes=64 * MiB, max_object_bytes=4 * MiB)
    await reader.open()
    stop = asyncio.Event()

    async def rewrite() -> None:
        for i in range(1, 30):
            writer.put("/k", response(bytes([i]) * (MiB + i * 1000), headers=[("x-n", str(i))]))
            await writer.flush()
        stop.set()

    async def read() -> int:
        seen = 0
        while not stop.is_set():
            got = await reader.get("/k")
            assert got is not None
            n = int(got.header("x-n") or 0)
            assert got.body == bytes([n]) * (MiB + n * 1000 if n else MiB)
            seen += 1
        return seen

    _, *counts = await asyncio.gather(rewrite(), read(), read())
    assert sum(counts) > 0 and reader.corrupt_dropped == 0
    await reader.close()
    await writer.close()


async def test_gets_racing_puts_see_the_whole_entry_or_a_miss(disk: DiskStore) -> None:
    entries = {f"/k{i}": response(bytes([i]) * (i * 300)) for i in range(60)}

    async def put_all() -> None:
        for key, entry in entries.items():
            disk.put(key, entry)
            await asyncio.sleep(0)

    async def get_all() -> None:
        for _ in range(3):
            for key, entry in entries.items():
                got = await disk.get(key)
                assert got is None or (got.body, got.headers) == (entry.body, entry.headers)

    await asyncio.gather(put_all(), get_all(), get_all())
    await disk.flush()
    assert sorted(disk.keys()) == sorted(entries) and disk.corrupt_dropped == 0


async def test_close_writes_everything_queued(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, capacity_bytes=8 * MiB, max_object_bytes=MiB)
    await store.open()
    for i in range(40):
        assert store.put(f"/k{i}", response(bytes([i]) * 50_000))
    await store.close()
    assert not store.put("/late", response())
    again = await reopen(store)
    try:
        assert len(again) == 40 and again.dropped_writes == 0
        got = await again.get("/k39")
        assert got is not None and got.body == bytes([39]) * 50_000
        assert not temp_files(tmp_path)
    finally:
        await again.close()
