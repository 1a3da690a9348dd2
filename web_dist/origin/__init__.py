"""The web origin: a folder served like a storage bucket (GET, HEAD, PUT, DELETE of objects).

Objects are files under `root`. A folder answers with its `index.html` and is never listed; a
folder named without its trailing slash is redirected to it, as S3 website hosting does.
Uploads are atomic: the body goes to a `.upload-*` file beside the target, is checked, then
renamed over it, so a reader sees the old object or the new one, whole. File-system work runs in
worker threads; the event loop only moves bytes. No Cache-Control is sent: the CDN's cache
behaviors decide freshness.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import logging
import mimetypes
import os
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote_to_bytes

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web_dist.config.glob import glob_match
from web_dist.http.access import OriginSecretGuard
from web_dist.http.semantics import (
    UNSATISFIABLE,
    ByteRange,
    content_length,
    format_http_date,
    if_range_allows,
    precondition_status,
    select_range,
)

log = logging.getLogger("cdn.origin")

SERVER = "cdn-web-origin"
ALLOW = "GET, HEAD, PUT, DELETE, OPTIONS"
CHUNK = 64 * 1024
INDEX = "index.html"
UPLOAD_PREFIX = ".upload-"
# CDN staples that Python's built-in table lacks or gets old-fashioned (RFC 9239: text/javascript).
_EXTRA_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".m4s": "video/iso.segment",
    ".webp": "image/webp",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}
# `x.css.gz` is a gzip file to a bucket: never claim text/css with an encoding we do not send.
_COMPRESSED_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}
_MISSING = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG}
# OSError -> reply, translated in one place (`_Origin.handle`); anything else is a 500.
_OS_ERRORS = {
    errno.EACCES: (403, "permission denied by the origin's file system"),
    errno.EPERM: (403, "permission denied by the origin's file system"),
    errno.EROFS: (403, "the origin folder is read-only"),
    errno.ENOSPC: (507, "the origin's disk is full"),
    errno.EDQUOT: (507, "the origin's disk quota is exhausted"),
    **{code: (404, "no such object") for code in _MISSING},
}


class RequestError(Exception):
    """A request the origin refuses; becomes a small text/plain reply."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class ObjectPath:
    """A request path checked and split into decoded segments."""

    segments: tuple[str, ...]
    folder: bool  # ends in "/" (or is the root): names a folder, not an object


def parse_object_path(raw_path: bytes) -> ObjectPath:
    """Split a still-percent-encoded path, refusing anything that could leave the folder.

    Segments are split before decoding, so `%2f` can never join two segments into one name.
    """
    if not raw_path.startswith(b"/"):
        raise RequestError(400, "path must start with /")
    parts = raw_path[1:].split(b"/")
    folder = parts[-1] == b""
    segments = tuple(_decode_segment(part) for part in (parts[:-1] if folder else parts))
    if any(segment.startswith(UPLOAD_PREFIX) for segment in segments):
        # Uploads in flight are invisible, and their names cannot be claimed by a PUT.
        raise RequestError(404, f"no such object (names starting {UPLOAD_PREFIX} are reserved)")
    return ObjectPath(segments, folder)


def _decode_segment(raw: bytes) -> str:
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, "path is not valid UTF-8") from None
    problem = (
        "empty path segment (//)" if text == "" else
        "path escapes the origin folder" if text in (".", "..") else
        "NUL byte in path" if "\x00" in text else
        "encoded slash inside a path segment" if "/" in text else
        "backslash in path" if "\\" in text else
        "control character in path" if any(ord(c) < 0x20 or c == "\x7f" for c in text) else
        "path segment longer than 255 bytes" if len(text.encode()) > 255 else
        None
    )  # fmt: skip
    if problem is not None:
        raise RequestError(400, problem)
    return text


def etag_for(st: os.stat_result) -> str:
    """A strong ETag from the file's identity: a new inode, size or mtime means new bytes."""
    identity = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return '"' + hashlib.blake2b(identity, digest_size=12).hexdigest() + '"'


# --- blocking file-system steps, always run in a worker thread ------------------------------


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _open_file(path: str) -> tuple[int, os.stat_result] | None:
    """A regular file or folder opened read-only with its stat; None when there is none."""
    try:
        # O_NONBLOCK: a FIFO planted in the folder must not hang a worker thread.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in _MISSING:
            return None
        raise
    st = os.fstat(fd)  # the opened file's stat: it describes the bytes we will send
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return fd, st
    os.close(fd)
    return None


@dataclass(frozen=True)
class _Opened:
    fd: int
    st: os.stat_result
    path: str


class _FolderRedirect:
    """A folder was named without its trailing slash."""


def _open_object(root: str, obj: ObjectPath) -> _Opened | _FolderRedirect | None:
    """The file a GET/HEAD serves; symlinks are followed only while they stay inside root."""
    path = os.path.realpath(os.path.join(root, *obj.segments))
    found = _open_file(path) if _inside(root, path) else None
    if found is None:
        return None
    fd, st = found
    if stat.S_ISREG(st.st_mode):
        if obj.folder:  # "file.txt/" names a folder that does not exist
            os.close(fd)
            return None
        return _Opened(fd, st, path)
    os.close(fd)
    if not obj.folder:
        return _FolderRedirect()
    index = os.path.realpath(os.path.join(path, INDEX))
    found = _open_file(index) if _inside(root, index) else None
    if found is not None and stat.S_ISREG(found[1].st_mode):
        return _Opened(found[0], found[1], index)
    if found is not None:
        os.close(found[0])
    return None


def _read_at(fd: int, size: int, offset: int) -> bytes:
    chunk = os.pread(fd, size, offset)
    if not chunk:
        raise OSError(errno.EIO, "file shrank while it was being sent")
    return chunk


def _parent_folder(root: str, segments: tuple[str, ...], *, create: bool) -> str:
    """The real folder that holds the object, checked inside root one step at a time.

    Each step is resolved before it is created, so a symlink pointing out of root can never
    make us create folders, or write, outside it.
    """
    current = root
    for segment in segments[:-1]:
        step = os.path.realpath(os.path.join(current, segment))
        if not _inside(root, step):
            raise RequestError(403, "path leads outside the origin folder")
        if create and not os.path.lexists(step):
            os.makedirs(step, exist_ok=True)
        if not os.path.isdir(step):
            if not create:
                raise RequestError(404, "no such object")
            raise RequestError(400, f"{segment!r} is a file, so it cannot hold objects")
        current = step
    return current


def _current_version(root: str, target: str) -> tuple[str | None, int | None]:
    """ETag and mtime of the object at `target` for preconditions; (None, None) if absent."""
    try:
        st = os.lstat(target)
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(target)
            st = os.stat(real) if _inside(root, real) else st
    except FileNotFoundError:
        return None, None
    if stat.S_ISDIR(st.st_mode):
        raise RequestError(400, "that path is a folder, not an object")
    return etag_for(st), int(st.st_mtime)


def _check_write(root: str, obj: ObjectPath, headers: Mapping[str, str], *, create: bool) -> str:
    """The target path of a PUT or DELETE, after its path and preconditions pass."""
    if obj.folder:
        raise RequestError(400, "a folder path (ending in /) cannot be written or deleted")
    target = os.path.join(_parent_folder(root, obj.segments, create=create), obj.segments[-1])
    etag, mtime = _current_version(root, target)
    if precondition_status("PUT" if create else "DELETE", headers, etag, mtime) is not None:
        raise RequestError(412, "precondition failed: the object is not the version named")
    return target


def _fsync_folder(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)  # makes the rename or unlink itself durable
    finally:
        os.close(fd)


def _delete_object(target: str) -> None:
    if not os.path.lexists(target):
        raise RequestError(404, "no such object")
    os.unlink(target)  # a symlink is removed, never what it points to
    _fsync_folder(os.path.dirname(target))


# --- uploads ----------------------------------------------------------------------------------


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


_CHECKSUM_HEADERS = {"content-md5": ("md5", 16), "x-amz-checksum-sha256": ("sha256", 32)}


def _expected_digests(headers: Mapping[str, str]) -> dict[str, bytes]:
    """header name -> digest the client promised; malformed values are refused up front."""
    expected: dict[str, bytes] = {}
    for header, (_, size) in _CHECKSUM_HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        try:
            digest = base64.b64decode(value.strip(), validate=True)
        except binascii.Error:
            raise RequestError(400, f"{header} is not valid base64") from None
        if len(digest) != size:
            raise RequestError(400, f"{header} must be {size} bytes, base64-encoded")
        expected[header] = digest
    return expected


def _declared_length(headers: Mapping[str, str]) -> int | None:
    try:
        return content_length(headers.get("content-length"))
    except ValueError:
        raise RequestError(400, "Content-Length is not a number") from None


class _Upload:
    """A `.upload-*` file beside the target, hashed as it is written, renamed over it at the end."""

    def __init__(self, target: str, expected: dict[str, bytes]) -> None:
        self.target = target
        self.expected = expected
        self.hashers: dict[str, _Hasher] = {h: hashlib.new(_CHECKSUM_HEADERS[h][0]) for h in expected}
        self.received = 0
        self.done = False
        self.fd, self.path = tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=os.path.dirname(target))
        try:
            os.fchmod(self.fd, 0o644)  # mkstemp's 0600 would hide objects from other readers
        except OSError:
            self.discard()
            raise
        self._buffer = bytearray()

    async def write(self, data: bytes) -> None:
        self.received += len(data)
        self._buffer += data
        if len(self._buffer) >= CHUNK:  # batch small reads into fewer thread hops
            await self._flush()

    async def _flush(self) -> None:
        data, self._buffer = bytes(self._buffer), bytearray()
        await anyio.to_thread.run_sync(self._write_blocking, data)

    def _write_blocking(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        for hasher in self.hashers.values():
            hasher.update(data)  # hashlib drops the GIL on large buffers

    async def commit(self) -> tuple[os.stat_result, bool]:
        """Verify, make durable and publish; returns the new stat and whether it is new."""
        await self._flush()
        for header, hasher in self.hashers.items():
            if hasher.digest() != self.expected[header]:
                raise RequestError(400, f"{header} does not match the body received; nothing stored")
        return await anyio.to_thread.run_sync(self._commit_blocking)

    def _commit_blocking(self) -> tuple[os.stat_result, bool]:
        # A fine-grained mtime keeps ETags distinct even when a freed inode number is reused
        # within one coarse file-system timestamp tick.
        now = time.time_ns()
        os.utime(self.fd, ns=(now, now))
        os.fsync(self.fd)
        st = os.fstat(self.fd)
        created = not os.path.lexists(self.target)
        try:
            os.replace(self.path, self.target)
        except IsADirectoryError:
            raise RequestError(400, "that path is a folder, not an object") from None
        self.done = True
        _fsync_folder(os.path.dirname(self.target))
        return st, created

    def discard(self) -> None:
        """Close and remove the temporary file, unless it was published."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.done:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


# --- responses --------------------------------------------------------------------------------


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return PlainTextResponse(f"{status} {HTTPStatus(status).phrase}: {message}\n", status, headers)


async def _file_chunks(fd: int, part: ByteRange) -> AsyncIterator[bytes]:
    offset, end = part.first, part.last + 1
    while offset < end:
        chunk = await anyio.to_thread.run_sync(_read_at, fd, min(CHUNK, end - offset), offset)
        offset += len(chunk)
        yield chunk


class _FileResponse(StreamingResponse):
    """Streams bytes of an open file and closes it however the response ends."""

    def __init__(self, fd: int, part: ByteRange, status_code: int, headers: dict[str, str]) -> None:
        self.fd = fd
        super().__init__(_file_chunks(fd, part), status_code, headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Safe even when cancelled mid-read: a to_thread call waits for its thread to end.
            os.close(self.fd)


CacheTagRules = Sequence[tuple[str, Sequence[str]]]


def cache_tags_for(rules: CacheTagRules, path: str) -> list[str]:
    """The tags of every rule whose path pattern matches `path`, in rule order, once each."""
    return list(dict.fromkeys(t for pattern, tags in rules if glob_match(pattern, path) for t in tags))


class _Origin:
    def __init__(self, root: Path, max_upload_bytes: int, cache_tags: CacheTagRules = ()) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise ValueError(f"web origin root {str(root)!r} is not a folder")
        self.max_upload_bytes = max_upload_bytes
        self.cache_tags = cache_tags
        self.types = mimetypes.MimeTypes()  # built-in table only: the same answer on every host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A raw ASGI endpoint: Starlette routes every method to it, so 405s are ours.
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        """Route by method; RequestError and known OSErrors become short text replies here."""
        method = request.method
        if method == "OPTIONS":
            return Response(status_code=204, headers={"allow": ALLOW})
        if method not in ("GET", "HEAD", "PUT", "DELETE"):
            return _error(405, f"{method} is not supported here", {"allow": ALLOW})
        try:
            obj = parse_object_path(_raw_path(request.scope))
            if method == "PUT":
                return await self.put(request, obj)
            if method == "DELETE":
                return await self.delete(request, obj)
            return await self.get(request, obj)
        except RequestError as exc:
            return _error(exc.status, exc.message, exc.headers)
        except OSError as exc:
            if exc.errno not in _OS_ERRORS:
                raise
            log.warning("%s %s failed: %s", method, request.url.path, exc)
            return _error(*_OS_ERRORS[exc.errno])

    async def get(self, request: Request, obj: ObjectPath) -> Response:
        opened = await anyio.to_thread.run_sync(_open_object, self.root, obj)
        if opened is None:
            return _error(404, "no such object")
        if isinstance(opened, _FolderRedirect):
            return _folder_redirect(request.scope)
        reply: Response | None = None
        try:
            reply = self.reply(request, opened)
            return reply
        finally:
            if not isinstance(reply, _FileResponse):  # otherwise the response owns the file
                os.close(opened.fd)

    def reply(self, request: Request, opened: _Opened) -> Response:
        """Preconditions, then range, then headers and body for an opened file."""
        size, etag, mtime = opened.st.st_size, etag_for(opened.st), int(opened.st.st_mtime)
        headers = {"etag": etag, "last-modified": format_http_date(mtime)}
        tags = cache_tags_for(self.cache_tags, request.url.path) if self.cache_tags else []
        if tags:  # for the CDN's purge by tag; edges keep it from viewers
            headers["surrogate-key"] = " ".join(tags)
        status = precondition_status(request.method, request.headers, etag, mtime)
        if status == 304:
            return Response(status_code=304, headers=headers)
        if status == 412:
            return _error(412, "precondition failed", headers)
        headers |= {"accept-ranges": "bytes", "content-type": self.content_type(opened.path)}
        chosen = None
        if request.method == "GET" and if_range_allows(request.headers.get("if-range"), etag, mtime):
            chosen = select_range(request.headers.get("range"), size)  # Range means nothing on HEAD
        if chosen is UNSATISFIABLE:
            return _error(416, "range not satisfiable", headers | {"content-range": f"bytes */{size}"})
        part, status = ByteRange(0, size - 1), 200
        if isinstance(chosen, ByteRange):
            part, status = chosen, 206
            headers["content-range"] = chosen.content_range(size)
        headers["content-length"] = str(part.length)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        return _FileResponse(opened.fd, part, status, headers)

    def content_type(self, path: str) -> str:
        media_type, encoding = self.types.guess_type(path, strict=False)
        media_type = _EXTRA_TYPES.get(os.path.splitext(path)[1].lower(), media_type)
        if encoding is not None:
            media_type = _COMPRESSED_TYPES.get(encoding, "application/octet-stream")
        media_type = media_type or "application/octet-stream"
        return media_type + "; charset=utf-8" if media_type.startswith("text/") else media_type

    async def put(self, request: Request, obj: ObjectPath) -> Response:
        expected = _expected_digests(request.headers)
        declared = _declared_length(request.headers)
        if declared is not None and declared > self.max_upload_bytes:
            raise RequestError(413, f"body of {declared} bytes exceeds the {self.max_upload_bytes}-byte limit")
        check = partial(_check_write, self.root, obj, request.headers, create=True)
        target = await anyio.to_thread.run_sync(check)
        upload = await anyio.to_thread.run_sync(_Upload, target, expected)
        try:
            await self.receive_body(request, upload, declared)
            st, created = await upload.commit()
        finally:
            with anyio.CancelScope(shield=True):  # never leave a temp file, even when cancelled
                await anyio.to_thread.run_sync(upload.discard)
        headers = {"etag": etag_for(st), "last-modified": format_http_date(int(st.st_mtime))}
        return Response(status_code=201 if created else 200, headers=headers)

    async def receive_body(self, request: Request, upload: _Upload, declared: int | None) -> None:
        try:
            async for chunk in request.stream():
                await upload.write(chunk)
                if upload.received > self.max_upload_bytes:
                    raise RequestError(413, f"body exceeds the {self.max_upload_bytes}-byte limit")
        except ClientDisconnect:
            log.warning(
                "PUT %s abandoned: client left after %d of %s bytes; nothing stored",
                request.url.path,
                upload.received,
                declared if declared is not None else "?",
            )
            raise RequestError(400, "client disconnected before the whole body arrived") from None
        if declared is not None and upload.received != declared:
            raise RequestError(400, f"received {upload.received} of {declared} bytes; nothing stored")

    async def delete(self, request: Request, obj: ObjectPath) -> Response:
        check = partial(_check_write, self.root, obj, request.headers, create=False)
        target = await anyio.to_thread.run_sync(check)
        await anyio.to_thread.run_sync(_delete_object, target)
        return Response(status_code=204)


def _raw_path(scope: Scope) -> bytes:
    """The path as the client sent it, still percent-encoded, without root_path or query."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:  # servers may omit raw_path; re-encode so decoding happens once, here
        raw = quote(scope["path"], safe="/").encode("ascii")
    root_path = scope.get("root_path", "").encode("utf-8")
    if root_path and raw.startswith(root_path):
        raw = raw[len(root_path) :]
    return raw.partition(b"?")[0]


def _folder_redirect(scope: Scope) -> Response:
    location = _raw_path(scope).decode("latin-1") + "/"
    if scope.get("query_string"):
        location += "?" + scope["query_string"].decode("latin-1")
    return _error(301, f"this is a folder, see {location}", {"location": location})


class _AccessLog:
    """Stamps Server and Date, and logs one line per request: method, path, status, bytes.

    The server runs with its own Server and Date headers off (an edge passes an origin's
    through), so every reply gets them here, including Starlette's own errors.
    """

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, sent = 500, 0  # what the log says if the app raises before replying

        async def stamped(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                stamp = [(b"server", SERVER.encode()), (b"date", format_http_date(time.time()).encode())]
                message = {**message, "headers": [*message.get("headers", []), *stamp]}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        finally:
            path = _raw_path(scope).decode("latin-1")
            log.info("%s %s %s %d %d bytes", self.name, scope["method"], path, status, sent)


def build_origin_app(
    root: Path,
    *,
    name: str = "origin",
    max_upload_bytes: int = 5 * 1024**3,
    access_secret: str | None = None,
    cache_tags: CacheTagRules = (),
) -> Starlette:
    """A web origin serving the folder `root` like a storage bucket.

    GET/HEAD with strong ETags, Last-Modified, RFC 9110 preconditions and single byte ranges;
    atomic PUT (optionally checked by Content-MD5 / x-amz-checksum-sha256) and DELETE. Paths
    that would leave `root`, by `..`, encoding tricks or symlinks, are refused. `name` tags
    the log lines. With `access_secret`, requests without it (in the header edges send) get 403.
    `cache_tags` (path pattern, tags) rules tag what they match in Surrogate-Key.
    Raises ValueError when `root` is not a folder.
    """
    origin = _Origin(root, max_upload_bytes, cache_tags)
    return Starlette(
        routes=[Route("/{path:path}", origin)],
        middleware=[Middleware(_AccessLog, name=name), Middleware(OriginSecretGuard, secret=access_secret)],
    )
