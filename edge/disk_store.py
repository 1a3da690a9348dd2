"""The disk tier below memory: one file per key, LRU bounded in bytes, kept across restarts.

A file is `<root>/ab/cd/<sha256(key)>`: a 24-byte header (magic `CDNE`, version, flags,
metadata length, body length, crc32 of metadata + body), JSON metadata (the key and every
`CachedResponse` field but the body and the compressed copies, which are recomputed), then
the body. Files are written to a temp file in the same folder and renamed, so a crash leaves
a stray `*.tmp`, never a half-written entry; the checksum and the stored key are checked on
every read, and (unless `verify_at_open=False`) on every file at open.

`put` and `delete` are synchronous and only change the in-memory index; one background writer
does the file work, so a burst of misses never blocks the event loop on disk. `put` and
`delete` must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import mmap
import os
import struct
import tempfile
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, BinaryIO

from edge.store import CachedResponse

log = logging.getLogger("cdn.edge.disk")

MAGIC = b"CDNE"
VERSION = 1
HEADER = struct.Struct(">4sHHIQI")  # magic, version, flags, meta length, body length, crc32
TEMP_SUFFIX = ".tmp"
SCAN_CHUNK = 1024 * 1024
# A body larger than this is served from a read-only mapping of its file, never read whole
# into the process: its pages are the kernel's page cache, shared by every viewer of it.
MAPPED_BODY = 256 * 1024
# Every field but the body (stored raw after the metadata) and the edge's own compressed
# copies, which are cheaper to recompute than to keep twice on disk.
NOT_IN_METADATA = {"body", "encoded", "gzip_body", "wire"}  # made at the edge, not persisted
PERSISTED = tuple(f for f in fields(CachedResponse) if f.name not in NOT_IN_METADATA)
PERSISTED_NAMES = frozenset(f.name for f in PERSISTED)


class CorruptEntry(Exception):
    """A cache file that fails its header, length, checksum or key check."""


def entry_path(root: Path, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return root / digest[:2] / digest[2:4] / digest


def encode_meta(key: str, entry: CachedResponse) -> bytes:
    meta: dict[str, Any] = {f.name: getattr(entry, f.name) for f in PERSISTED}
    meta["key"] = key
    return json.dumps(meta, separators=(",", ":")).encode()


def decode_meta(raw: bytes, body: bytes | memoryview) -> tuple[str, CachedResponse]:
    """Fields missing from an older file take their defaults; unknown ones are ignored."""
    try:
        meta: dict[str, Any] = json.loads(raw)
        known = {k: v for k, v in meta.items() if k in PERSISTED_NAMES}
        known["headers"] = [(str(k), str(v)) for k, v in known["headers"]]
        known["tags"] = tuple(str(t) for t in known.get("tags", ()))
        return str(meta["key"]), CachedResponse(body=body, **known)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptEntry(f"bad metadata: {exc}") from exc


def touch(fd: int) -> None:
    """Set the mtime, which records the last access so a restart rebuilds the LRU order."""
    now = time.time_ns()  # finer than the kernel's coarse file clock, so ties are rare
    os.utime(fd, ns=(now, now))


def write_entry(path: Path, key: str, entry: CachedResponse, fsync: bool) -> int:
    """Write atomically (temp file + rename in the same folder); returns the file's size."""
    meta = encode_meta(key, entry)
    crc = zlib.crc32(entry.body, zlib.crc32(meta))
    header = HEADER.pack(MAGIC, VERSION, 0, len(meta), len(entry.body), crc)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header + meta)
            f.write(entry.body)
            f.flush()
            touch(f.fileno())
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return HEADER.size + len(meta) + len(entry.body)


def read_header(f: BinaryIO) -> tuple[int, int, int]:
    """(metadata length, body length, crc32) once magic, version and file size check out."""
    head = f.read(HEADER.size)
    if len(head) != HEADER.size:
        raise CorruptEntry("short header")
    magic, version, _flags, meta_len, body_len, crc = HEADER.unpack(head)
    if magic != MAGIC or version != VERSION:
        raise CorruptEntry("bad magic or version")
    if os.fstat(f.fileno()).st_size != HEADER.size + meta_len + body_len:
        raise CorruptEntry("truncated or overlong")  # also what most garbage headers give
    return meta_len, body_len, crc


def read_entry(path: Path, key: str) -> CachedResponse:
    """Read a hit, verify its checksum and that it holds `key`, and mark it used. A large
    body is checked in chunks and comes back as a memoryview over a mapping of the file
    (a rename or unlink replacing the file later leaves the mapping intact)."""
    with open(path, "rb") as f:
        meta_len, body_len, crc = read_header(f)
        meta = f.read(meta_len)
        running = zlib.crc32(meta)
        if body_len <= MAPPED_BODY:
            body: bytes | memoryview = f.read(body_len)
            running = zlib.crc32(body, running)
        else:
            while chunk := f.read(SCAN_CHUNK):
                running = zlib.crc32(chunk, running)
            start = HEADER.size + meta_len
            body = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))[start : start + body_len]
        touch(f.fileno())
    if running != crc:
        raise CorruptEntry("checksum mismatch")
    stored_key, entry = decode_meta(meta, body)
    if stored_key != key:  # a sha256 collision, or a file copied by hand
        raise CorruptEntry(f"file holds another key: {stored_key!r}")
    return entry


def check_entry(path: Path, verify: bool) -> tuple[str, int, tuple[str, ...]]:
    """Key, size and cache tags of a file found at open; the body is checked if `verify`."""
    with open(path, "rb") as f:
        meta_len, body_len, crc = read_header(f)
        meta = f.read(meta_len)
        if verify:
            running = zlib.crc32(meta)
            while chunk := f.read(SCAN_CHUNK):
                running = zlib.crc32(chunk, running)
            if running != crc:
                raise CorruptEntry("checksum mismatch")
    key, entry = decode_meta(meta, b"")
    if entry_path(path.parents[2], key) != path:
        raise CorruptEntry("file is not where its key belongs")
    return key, HEADER.size + meta_len + body_len, entry.tags


def scan(root: Path, verify: bool) -> tuple[list[tuple[float, str, int, tuple[str, ...]]], int]:
    """(mtime, key, size, tags) of every good file, oldest first; removes temp and corrupt files."""
    found: list[tuple[float, str, int, tuple[str, ...]]] = []
    corrupt = 0
    for path in root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*"):
        if path.name.endswith(TEMP_SUFFIX):
            discard(path)  # a write that a crash interrupted
            continue
        try:
            key, size, tags = check_entry(path, verify)
            found.append((path.stat().st_mtime, key, size, tags))
        except Exception as exc:  # one bad file must not stop the edge from starting
            log.warning("disk cache: dropping %s at open: %s", path, exc)
            discard(path)
            corrupt += 1
    found.sort()
    return found, corrupt


def discard(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # a folder or an unwritable file: leave it, the index ignores it
            log.warning("disk cache: cannot remove %s: %s", path, exc)


class DiskStore:
    """LRU over file sizes on disk; the index lives in memory and is rebuilt by `open`."""

    def __init__(
        self,
        path: Path,
        capacity_bytes: int,
        max_object_bytes: int,
        *,
        queue_size: int = 64,
        verify_at_open: bool = True,
        fsync: bool = False,
        close_timeout: float = 10.0,
    ) -> None:
        self.root = path
        self.capacity_bytes = capacity_bytes
        self.max_object_bytes = min(max_object_bytes, capacity_bytes)
        self.used_bytes = 0
        self.evictions = 0
        self.dropped_writes = 0
        self.corrupt_dropped = 0
        self.write_errors = 0
        self._verify_at_open = verify_at_open
        self._fsync = fsync
        self._queue_size = queue_size
        self._close_timeout = close_timeout
        self.tags_at_open: dict[str, tuple[str, ...]] = {}  # cache tags of entries found by open()
        self._index: OrderedDict[str, int] = OrderedDict()  # key -> file size, oldest access first
        self._pending: dict[str, CachedResponse] = {}  # put but not yet on disk; served from here
        self._queue: OrderedDict[str, None] = OrderedDict()  # keys to write, oldest first, once
        self._unlinks: list[Path] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._writer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Create the folder, rebuild the index from the files' headers, start the writer."""
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        found, corrupt = await asyncio.to_thread(scan, self.root, self._verify_at_open)
        self.corrupt_dropped += corrupt
        for _, key, size, tags in found:
            self._index[key] = size
            self.used_bytes += size
            if tags:
                self.tags_at_open[key] = tags
        self._evict_to(self.capacity_bytes)
        self._writer = asyncio.create_task(self._run(), name=f"disk-writer {self.root}")
        self._kick()

    async def close(self) -> None:
        """Write what is queued, waiting at most `close_timeout` seconds, then stop the writer."""
        self._closing = True
        self._wake.set()
        if self._writer is None:
            return
        done, _ = await asyncio.wait({self._writer}, timeout=self._close_timeout)
        if not done:
            log.warning("disk cache: %d writes not finished at close", len(self._queue))
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def flush(self) -> None:
        """Wait until every queued write and delete has reached the disk."""
        if self._writer is not None and not self._writer.done():
            await self._idle.wait()

    async def get(self, key: str) -> CachedResponse | None:
        pending = self._pending.get(key)
        if pending is not None:
            return pending
        size = self._index.get(key)
        if size is None:
            return None
        self._index.move_to_end(key)
        path = entry_path(self.root, key)
        try:
            return await asyncio.to_thread(read_entry, path, key)
        except FileNotFoundError:
            self._forget(key, size)  # removed behind our back
        except Exception as exc:  # corrupt, unreadable or undecodable: a miss, never an error
            log.warning("disk cache: dropping %s (%s): %s", key, path, exc)
            self.corrupt_dropped += 1
            if self._forget(key, size):
                self._unlinks.append(path)  # by the writer, so it stays ordered with rewrites
                self._kick()
        return None

    def put(self, key: str, entry: CachedResponse) -> bool:
        """Queue `entry` for the writer; False (and any older copy deleted) if not stored."""
        body = len(entry.body)
        estimate = HEADER.size + body + sum(len(k) + len(v) + 6 for k, v in entry.headers)
        if self._closing or body > self.max_object_bytes or estimate > self.capacity_bytes:
            self.delete(key)
            return False
        if key not in self._queue and len(self._queue) >= self._queue_size:
            self.delete(key)  # never leave an older copy to be served in place of this one
            self.dropped_writes += 1
            return False
        self._pending[key] = entry
        self._queue[key] = None
        self._kick()
        return True

    def delete(self, key: str) -> bool:
        found = self._pending.pop(key, None) is not None
        size = self._index.pop(key, None)
        if size is not None:
            self.used_bytes -= size
            found = True
        if found:
            self._unlinks.append(entry_path(self.root, key))
            self._kick()
        return found

    def keys(self) -> Iterator[str]:
        return iter(list(dict.fromkeys([*self._index, *self._pending])))

    def __contains__(self, key: object) -> bool:
        return key in self._index or key in self._pending

    def __len__(self) -> int:
        return len(self._index) + sum(1 for key in self._pending if key not in self._index)

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    def _forget(self, key: str, size: int) -> bool:
        """Drop an index entry after a failed read, unless a newer write replaced it meanwhile."""
        if self._index.get(key) != size:
            return False
        del self._index[key]
        self.used_bytes -= size
        return True

    def _evict_to(self, limit: int) -> None:
        while self.used_bytes > limit and self._index:
            key, size = self._index.popitem(last=False)
            self.used_bytes -= size
            self.evictions += 1
            self._unlinks.append(entry_path(self.root, key))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._unlinks or self._queue:
                try:
                    await self._step()
                except Exception:  # the writer must outlive any one bad entry
                    log.exception("disk cache: writer step failed")
            self._idle.set()
            if self._closing:
                return

    async def _step(self) -> None:
        # Deletes go first: a delete queued during a write must remove that write's file.
        if self._unlinks:
            paths, self._unlinks = self._unlinks, []
            await asyncio.to_thread(discard, *paths)
            return
        key, _ = self._queue.popitem(last=False)
        entry = self._pending.get(key)
        if entry is None:
            return
        try:
            path = entry_path(self.root, key)
            size = await asyncio.to_thread(write_entry, path, key, entry, self._fsync)
        except OSError as exc:
            log.warning("disk cache: cannot write %s: %s", key, exc)
            self.write_errors += 1
            if self._pending.get(key) is entry:
                self.delete(key)
            return
        if self._pending.get(key) is not entry:
            return  # deleted or replaced while being written; the delete or rewrite is queued
        del self._pending[key]
        self.used_bytes += size - self._index.pop(key, 0)
        self._index[key] = size
        self._evict_to(self.capacity_bytes)
