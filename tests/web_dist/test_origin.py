"""The web origin over real sockets: what a client sees, byte for byte."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import until
from tests.web_dist.conftest import DATA, SECRET, OriginFactory, OriginSite
from web_dist.http.semantics import (
    UNSATISFIABLE,
    ByteRange,
    format_http_date,
    parse_http_date,
    precondition_status,
    select_range,
)
from web_dist.origin import RequestError, parse_object_path


@pytest.fixture
async def client(origin: OriginSite) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=origin.url, timeout=10) as http:
        yield http


async def raw_request(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes exactly as given (clients would normalise the path) and read to EOF."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (ln.partition(":") for ln in lines)}
    return int(status_line.split()[1]), headers, body


def get_request(target: str, method: str = "GET") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n".encode()


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


# --- pure helpers, table-driven ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, ByteRange(0, 4)),
        ("bytes=5-", 10, ByteRange(5, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-30", 10, ByteRange(0, 9)),
        ("bytes=8-100", 10, ByteRange(8, 9)),
        ("BYTES = 1-2", 10, ByteRange(1, 2)),
        ("bytes=10-", 10, UNSATISFIABLE),
        ("bytes=-0", 10, UNSATISFIABLE),
        ("bytes=0-0", 0, UNSATISFIABLE),
        ("bytes=-1", 0, UNSATISFIABLE),
        ("bytes=5-1", 10, None),
        ("bytes=-", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=1-2-3", 10, None),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes 0-1", 10, None),
        ("bytes=٣-4", 10, None),  # a non-ASCII digit is not a digit in HTTP
    ],
)
def test_select_range(header: str | None, size: int, expected: object) -> None:
    assert select_range(header, size) == expected


LM = 1_700_000_000
ETAG = '"abc"'


@pytest.mark.parametrize(
    ("method", "headers", "etag", "expected"),
    [
        ("GET", {}, ETAG, None),
        ("GET", {"if-match": '"abc"'}, ETAG, None),
        ("GET", {"if-match": 'W/"abc"'}, ETAG, 412),  # If-Match compares strongly
        ("GET", {"if-match": '"x", "abc"'}, ETAG, None),
        ("GET", {"if-match": "*"}, ETAG, None),
        ("PUT", {"if-match": "*"}, None, 412),
        ("GET", {"if-unmodified-since": format_http_date(LM - 1)}, ETAG, 412),
        ("GET", {"if-unmodified-since": format_http_date(LM)}, ETAG, None),
        ("GET", {"if-match": '"abc"', "if-unmodified-since": format_http_date(LM - 1)}, ETAG, None),
        ("GET", {"if-none-match": 'W/"abc"'}, ETAG, 304),  # If-None-Match compares weakly
        ("HEAD", {"if-none-match": "*"}, ETAG, 304),
        ("PUT", {"if-none-match": "*"}, ETAG, 412),
        ("PUT", {"if-none-match": "*"}, None, None),
        ("GET", {"if-none-match": '"x"', "if-modified-since": format_http_date(LM)}, ETAG, None),
        ("GET", {"if-modified-since": format_http_date(LM)}, ETAG, 304),
        ("GET", {"if-modified-since": format_http_date(LM - 1)}, ETAG, None),
        ("GET", {"if-modified-since": "not a date"}, ETAG, None),
        ("DELETE", {"if-modified-since": format_http_date(LM)}, ETAG, None),
        ("GET", {"if-none-match": '"abc" garbage'}, ETAG, None),
    ],
)
def test_precondition_status(method: str, headers: dict[str, str], etag: str | None, expected: int | None) -> None:
    last_modified = LM if etag is not None else None
    assert precondition_status(method, headers, etag, last_modified) == expected


def test_http_dates_round_trip() -> None:
    assert format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    for form in ("Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"):
        assert parse_http_date(form) == 784111777


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"/../x", 400), (b"/%2e%2e/x", 400), (b"/a/%2E%2E/%2e%2e/x", 400), (b"/./x", 400),
        (b"/%00", 400), (b"/..%2fx", 400), (b"/a%5c..%5cx", 400), (b"//etc/passwd", 400),
        (b"/%ff", 400), (b"/a%0a", 400), (b"x", 400), (b"/.upload-1/x", 404),
    ],
)  # fmt: skip
def test_parse_object_path_refuses(raw: bytes, status: int) -> None:
    with pytest.raises(RequestError) as caught:
        parse_object_path(raw)
    assert caught.value.status == status


def test_parse_object_path_decodes_once() -> None:
    assert parse_object_path(b"/a%20b/%252e%252e").segments == ("a b", "%2e%2e")
    assert parse_object_path(b"/docs/").folder
    assert parse_object_path(b"/").segments == ()


# --- GET and HEAD ---------------------------------------------------------------------------


async def test_get_sends_object_with_validators(client: httpx.AsyncClient) -> None:
    response = await client.get("/hello.txt")
    assert response.status_code == 200
    assert response.content == b"hello, world\n"
    headers = response.headers
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == "13"
    assert headers["accept-ranges"] == "bytes"
    assert headers["etag"].startswith('"') and headers["etag"].endswith('"')
    assert parse_http_date(headers["last-modified"]) is not None
    assert headers["last-modified"].endswith(" GMT")
    assert "cdn-web-origin" in headers["server"]
    assert "date" in headers
    assert "cache-control" not in headers


async def test_head_matches_get_without_body(client: httpx.AsyncClient) -> None:
    got, head = await client.get("/data.bin"), await client.head("/data.bin")
    assert head.status_code == 200 and head.content == b""
    for name in ("etag", "last-modified", "content-length", "content-type", "accept-ranges"):
        assert head.headers[name] == got.headers[name]
    assert got.headers["content-type"] == "application/octet-stream"
    assert int(head.headers["content-length"]) == len(DATA) == len(got.content)


CONTENT_TYPES = {
    "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
    "live.m3u8": "application/vnd.apple.mpegurl", "part.m4s": "video/iso.segment",
    "pic.png": "image/png", "site.css.gz": "application/gzip", "noext": "application/octet-stream",
}  # fmt: skip


async def test_content_type_from_extension(origin: OriginSite, client: httpx.AsyncClient) -> None:
    for name, content_type in CONTENT_TYPES.items():
        (origin.root / name).write_bytes(b"x")
        response = await client.get(f"/{name}")
        assert response.headers["content-type"] == content_type, name
        assert "content-encoding" not in response.headers, name


async def test_empty_file(client: httpx.AsyncClient) -> None:
    response = await client.get("/empty.txt")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == "0"
    assert (await client.get("/empty.txt", headers={"range": "bytes=0-"})).status_code == 416


async def test_etag_changes_when_content_changes(origin: OriginSite, client: httpx.AsyncClient) -> None:
    first = (await client.get("/hello.txt")).headers["etag"]
    assert (await client.get("/hello.txt")).headers["etag"] == first  # stable while unchanged
    assert (await client.put("/hello.txt", content=b"hello, there\n")).status_code == 200
    second = await client.get("/hello.txt")
    assert second.content == b"hello, there\n" and second.headers["etag"] != first
    (origin.root / "hello.txt").write_bytes(b"written in place, longer\n")  # not via the origin
    third = await client.get("/hello.txt")
    assert third.content == b"written in place, longer\n"
    assert third.headers["etag"] not in (first, second.headers["etag"])


# --- conditional requests -------------------------------------------------------------------


async def test_if_none_match_gives_304_with_validators(client: httpx.AsyncClient) -> None:
    etag = (await client.get("/hello.txt")).headers["etag"]
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = await client.get("/hello.txt", headers={"if-none-match": value})
        assert response.status_code == 304, value
        assert response.content == b""
        assert response.headers["etag"] == etag and "last-modified" in response.headers
        assert "content-length" not in response.headers
    head = await client.head("/hello.txt", headers={"if-none-match": etag})
    assert head.status_code == 304
    assert (await client.get("/hello.txt", headers={"if-none-match": '"other"'})).status_code == 200


async def test_if_modified_since(client: httpx.AsyncClient) -> None:
    last_modified = (await client.get("/hello.txt")).headers["last-modified"]
    response = await client.get("/hello.txt", headers={"if-modified-since": last_modified})
    assert response.status_code == 304 and response.content == b""
    older = format_http_date(parse_http_date(last_modified) - 10)  # type: ignore[operator]
    assert (await client.get("/hello.txt", headers={"if-modified-since": older})).status_code == 200
    # If-None-Match takes precedence: a non-matching tag means 200 whatever the date says.
    both = {"if-modified-since": last_modified, "if-none-match": '"other"'}
    assert (await client.get("/hello.txt", headers=both)).status_code == 200


async def test_if_match_and_if_unmodified_since_give_412(client: httpx.AsyncClient) -> None:
    got = await client.get("/hello.txt")
    etag, last_modified = got.headers["etag"], got.headers["last-modified"]
    assert (await client.get("/hello.txt", headers={"if-match": '"stale"'})).status_code == 412
    assert (await client.get("/hello.txt", headers={"if-match": etag})).status_code == 200
    older = format_http_date(parse_http_date(last_modified) - 10)  # type: ignore[operator]
    assert (await client.get("/hello.txt", headers={"if-unmodified-since": older})).status_code == 412
    fresh = {"if-unmodified-since": last_modified}
    assert (await client.get("/hello.txt", headers=fresh)).status_code == 200


# --- ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_header", "status", "expected"),
    [
        ("bytes=0-99", 206, DATA[:100]),
        ("bytes=1000-1999", 206, DATA[1000:2000]),
        ("bytes=199000-", 206, DATA[199000:]),
        ("bytes=-500", 206, DATA[-500:]),
        ("bytes=199990-300000", 206, DATA[199990:]),
        ("bytes=nonsense", 200, DATA),
        ("bytes=9-3", 200, DATA),
        ("bytes=0-1,5-6", 200, DATA),  # several ranges: the whole body is a valid answer
    ],
)
async def test_ranges(client: httpx.AsyncClient, range_header: str, status: int, expected: bytes) -> None:
    response = await client.get("/data.bin", headers={"range": range_header})
    assert response.status_code == status
    assert response.content == expected
    assert response.headers["content-length"] == str(len(expected))
    if status == 206:
        first = len(DATA) - len(expected) if range_header.startswith("bytes=-") else int(range_header[6:].split("-")[0])
        last = first + len(expected) - 1
        assert response.headers["content-range"] == f"bytes {first}-{last}/{len(DATA)}"
    else:
        assert "content-range" not in response.headers


async def test_unsatisfiable_range_gives_416(client: httpx.AsyncClient) -> None:
    for value in ("bytes=200000-", "bytes=500000-600000", "bytes=-0"):
        response = await client.get("/data.bin", headers={"range": value})
        assert response.status_code == 416, value
        assert response.headers["content-range"] == f"bytes */{len(DATA)}"


async def test_if_range(client: httpx.AsyncClient) -> None:
    got = await client.head("/data.bin")
    etag, last_modified = got.headers["etag"], got.headers["last-modified"]
    cases = [(etag, 206), (last_modified, 206), ('"stale"', 200), (f"W/{etag}", 200),
             ("Sun, 06 Nov 1994 08:49:37 GMT", 200)]  # fmt: skip
    for validator, status in cases:
        response = await client.get("/data.bin", headers={"range": "bytes=0-9", "if-range": validator})
        assert response.status_code == status, validator
        assert response.content == (DATA[:10] if status == 206 else DATA)


async def test_range_ignored_on_head(client: httpx.AsyncClient) -> None:
    response = await client.head("/data.bin", headers={"range": "bytes=0-9"})
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(DATA))


# --- folders ----------------------------------------------------------------------------------


async def test_folders_serve_index_and_redirect_without_slash(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert root.status_code == 200 and root.content == b"<h1>home</h1>\n"
    assert root.headers["content-type"] == "text/html; charset=utf-8"
    docs = await client.get("/docs/")
    assert docs.status_code == 200 and docs.content == b"<h1>docs</h1>\n"
    moved = await client.get("/docs?lang=en")
    assert moved.status_code == 301 and moved.headers["location"] == "/docs/?lang=en"
    assert (await client.get("/docs/guide/")).status_code == 404  # no index, and no listing
    assert (await client.get("/docs/guide")).status_code == 301
    assert (await client.get("/hello.txt/")).status_code == 404
    assert (await client.get("/missing.txt")).status_code == 404
    assert (await client.get("/missing/deeper.txt")).status_code == 404


async def test_upload_temp_files_are_never_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/.upload-leftover")
    assert response.status_code == 404 and b"half an upload" not in response.content


# --- path safety ----------------------------------------------------------------------------


TRAVERSALS = [
    "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/docs/%2e%2e/%2e%2e/secret.txt",
    "/docs/../../secret.txt", "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt", "/%00", "/hello.txt%00.png",
    "/..%5csecret.txt", "//secret.txt", "/escape.txt", "/outdir/secret.txt",
    "/%252e%252e/secret.txt", "http://origin/../secret.txt",
]  # fmt: skip


async def test_traversal_never_reaches_outside(origin: OriginSite) -> None:
    for target in TRAVERSALS:
        for method in ("GET", "HEAD"):
            status, _, body = await raw_request(origin.url, get_request(target, method))
            assert status in (400, 404), (method, target, status)
            assert SECRET not in body


async def test_traversal_errors_say_why(origin: OriginSite) -> None:
    status, headers, body = await raw_request(origin.url, get_request("/%2e%2e/secret.txt"))
    assert status == 400
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body == b"400 Bad Request: path escapes the origin folder\n"


async def test_symlink_inside_root_is_followed(client: httpx.AsyncClient) -> None:
    assert (await client.get("/inner-link.txt")).content == b"hello, world\n"


WRITES_OUTSIDE = [
    "PUT /../secret.txt", "PUT /%2e%2e/secret.txt", "PUT /docs/..%2f..%2fsecret.txt",
    "PUT /outdir/secret.txt", "PUT /outdir/new/x.txt", "DELETE /../secret.txt",
    "DELETE /%2e%2e/secret.txt", "DELETE /outdir/secret.txt",
]  # fmt: skip


async def test_writes_never_touch_outside(origin: OriginSite) -> None:
    for request_line in WRITES_OUTSIDE:
        head = f"{request_line} HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        status, _, _ = await raw_request(origin.url, head.encode() + b"pwned")
        assert status in (400, 403, 404), (request_line, status)
        assert origin.secret.read_bytes() == SECRET, request_line
        assert not (origin.secret.parent / "new").exists(), request_line


async def test_writes_through_a_symlink_replace_the_link_not_its_target(
    origin: OriginSite, client: httpx.AsyncClient
) -> None:
    assert (await client.put("/escape.txt", content=b"replaced")).status_code == 200
    assert not (origin.root / "escape.txt").is_symlink()
    assert (await client.get("/escape.txt")).content == b"replaced"
    assert (await client.delete("/escape.txt")).status_code == 204
    assert origin.secret.read_bytes() == SECRET


# --- PUT ----------------------------------------------------------------------------------


def temp_files(origin: OriginSite) -> list[str]:
    return [p.name for p in origin.root.rglob(".upload-*") if p.name != ".upload-leftover"]


async def test_put_creates_then_overwrites(origin: OriginSite, client: httpx.AsyncClient) -> None:
    created = await client.put("/new/deep/object.txt", content=b"first")
    assert created.status_code == 201
    got = await client.get("/new/deep/object.txt")
    assert got.content == b"first" and got.headers["etag"] == created.headers["etag"]
    replaced = await client.put("/new/deep/object.txt", content=b"second")
    assert replaced.status_code == 200 and replaced.headers["etag"] != created.headers["etag"]
    assert (origin.root / "new" / "deep" / "object.txt").read_bytes() == b"second"
    assert temp_files(origin) == []


async def test_put_streams_a_chunked_body(client: httpx.AsyncClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"z" * 10_000

    assert (await client.put("/chunked.bin", content=body())).status_code == 201
    assert (await client.get("/chunked.bin")).content == b"z" * 400_000


async def test_put_refuses_folders(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/docs/", "/", "/hello.txt/child.txt"):
        response = await client.put(path, content=b"x")
        assert response.status_code == 400, path
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert (await client.get("/docs/")).content == b"<h1>docs</h1>\n"


async def test_put_preconditions(client: httpx.AsyncClient) -> None:
    create_only = {"if-none-match": "*"}
    assert (await client.put("/once.txt", content=b"1", headers=create_only)).status_code == 201
    assert (await client.put("/once.txt", content=b"2", headers=create_only)).status_code == 412
    etag = (await client.head("/once.txt")).headers["etag"]
    assert (await client.put("/once.txt", content=b"3", headers={"if-match": '"stale"'})).status_code == 412
    assert (await client.put("/once.txt", content=b"4", headers={"if-match": etag})).status_code == 200
    assert (await client.get("/once.txt")).content == b"4"


async def test_checksums(origin: OriginSite, client: httpx.AsyncClient) -> None:
    body = b"checked body"
    good = {
        "content-md5": b64(hashlib.md5(body).digest()),
        "x-amz-checksum-sha256": b64(hashlib.sha256(body).digest()),
    }
    assert (await client.put("/checked.txt", content=body, headers=good)).status_code == 201
    only_sha = {"x-amz-checksum-sha256": good["x-amz-checksum-sha256"]}
    assert (await client.put("/checked.txt", content=body, headers=only_sha)).status_code == 200

    bad_md5 = {"content-md5": b64(hashlib.md5(b"other").digest())}
    response = await client.put("/checked.txt", content=b"tampered", headers=bad_md5)
    assert response.status_code == 400
    assert b"content-md5 does not match" in response.content
    bad_sha = {"x-amz-checksum-sha256": b64(hashlib.sha256(b"other").digest())}
    assert (await client.put("/checked.txt", content=b"tampered", headers=bad_sha)).status_code == 400
    for malformed in ({"content-md5": "not base64!"}, {"content-md5": b64(b"short")}):
        response = await client.put("/checked.txt", content=b"tampered", headers=malformed)
        assert response.status_code == 400 and b"content-md5" in response.content
    assert (origin.root / "checked.txt").read_bytes() == body
    assert (await client.put("/never.txt", content=b"x", headers=bad_md5)).status_code == 400
    assert not (origin.root / "never.txt").exists()
    assert temp_files(origin) == []


async def test_oversize_put_gives_413_and_stores_nothing(start_origin: OriginFactory) -> None:
    origin = await start_origin(max_upload_bytes=1000)

    async def chunked(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 100):
            yield b"y" * 100

    async with httpx.AsyncClient(base_url=origin.url, timeout=10) as client:
        assert (await client.put("/max.bin", content=b"y" * 1000)).status_code == 201
        declared = await client.put("/big.bin", content=b"y" * 1001)
        assert declared.status_code == 413 and b"1000-byte limit" in declared.content
        streamed = await client.put("/big.bin", content=chunked(3000))
        assert streamed.status_code == 413
        # The connection is still usable once the refused body has been drained.
        assert (await client.get("/max.bin")).content == b"y" * 1000
    assert not (origin.root / "big.bin").exists()
    assert temp_files(origin) == []


async def test_truncated_upload_stores_nothing(origin: OriginSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdn.origin")
    parts = urlsplit(origin.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(b"PUT /cut.bin HTTP/1.1\r\nHost: o\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
    await writer.drain()
    await until(lambda: temp_files(origin), 5, what="the upload to start")
    writer.close()
    await writer.wait_closed()

    def logged() -> bool:
        return any("PUT /cut.bin" in r.getMessage() and r.getMessage().endswith("bytes") for r in caplog.records)

    await until(logged, 5, what="the abandoned PUT to be logged")
    assert any("abandoned" in r.getMessage() for r in caplog.records)
    assert not (origin.root / "cut.bin").exists()
    assert temp_files(origin) == []


async def test_put_is_atomic_under_concurrent_gets(client: httpx.AsyncClient) -> None:
    size = 1024 * 1024
    bodies = [b"a" * size, b"b" * size]
    assert (await client.put("/flip.bin", content=bodies[0])).status_code == 201
    seen: set[bytes] = set()
    gets = puts = 0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal puts
        while not stop.is_set():
            assert (await client.put("/flip.bin", content=bodies[puts % 2])).status_code == 200
            puts += 1

    async def reader() -> None:
        nonlocal gets
        while not stop.is_set():
            body = (await client.get("/flip.bin")).content
            assert len(body) == size and body in bodies, "partial or mixed body"
            seen.add(body[:1])
            gets += 1

    async def stopper() -> None:
        # At least 1 s of overlap, and both versions observed, within a hard 5 s bound.
        start = time.monotonic()
        await until(lambda: time.monotonic() - start > 1 and len(seen) == 2, 5, what="both versions")
        stop.set()

    await asyncio.gather(writer(), stopper(), *(reader() for _ in range(20)))
    assert seen == {b"a", b"b"} and puts >= 2 and gets >= 20


# --- DELETE and methods -------------------------------------------------------------------


async def test_delete(origin: OriginSite, client: httpx.AsyncClient) -> None:
    response = await client.delete("/hello.txt")
    assert response.status_code == 204 and response.content == b""
    assert not (origin.root / "hello.txt").exists()
    assert (await client.get("/hello.txt")).status_code == 404
    assert (await client.delete("/hello.txt")).status_code == 404
    assert (await client.delete("/nowhere/x.txt")).status_code == 404
    assert (await client.delete("/docs")).status_code == 400
    assert (await client.delete("/docs/")).status_code == 400
    assert (await client.delete("/data.bin", headers={"if-match": '"stale"'})).status_code == 412
    assert (origin.root / "docs" / "index.html").exists() and (origin.root / "data.bin").exists()


async def test_methods(client: httpx.AsyncClient) -> None:
    for method in ("POST", "PATCH", "PROPFIND"):
        response = await client.request(method, "/hello.txt")
        assert response.status_code == 405, method
        assert response.headers["allow"] == "GET, HEAD, PUT, DELETE, OPTIONS"
    options = await client.options("/hello.txt")
    assert options.status_code == 204 and "PUT" in options.headers["allow"]


async def test_one_log_line_per_request(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdn.origin")
    await client.get("/hello.txt")
    await client.get("/missing.txt")
    lines = [r.getMessage() for r in caplog.records if r.name == "cdn.origin"]
    assert lines == ["test GET /hello.txt 200 13 bytes", "test GET /missing.txt 404 30 bytes"]


async def test_cache_tag_rules_tag_what_they_match_in_surrogate_key(start_origin: OriginFactory) -> None:
    """Every rule whose pattern matches the path adds its tags (once each, in rule order); a
    path no rule matches has no Surrogate-Key. The edge purges by these (`cdn purge --tag`)."""
    rules = [("/docs/*", ["docs"]), ("*.html", ["pages", "docs"]), ("/hello.txt", ["greeting"])]
    site = await start_origin(cache_tags=rules)
    async with httpx.AsyncClient(base_url=site.url, timeout=10) as http:
        page, hello, plain = [await http.get(p) for p in ("/docs/guide/page.html", "/hello.txt", "/data.bin")]
        head = await http.head("/docs/index.html")
    assert page.status_code == 200 and page.headers["surrogate-key"] == "docs pages"
    assert hello.headers["surrogate-key"] == "greeting"
    assert head.headers["surrogate-key"] == "docs pages"
    assert "surrogate-key" not in plain.headers
