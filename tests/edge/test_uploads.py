"""Uploads through the edge (transfer acceleration), against the real web origin.

What a user notices: the bytes arrive intact and are streamed (the origin is writing before
the client has finished sending), checksums are the origin's to judge, its answer comes back
as it gave it, an upload cut short leaves nothing, a body over the limit gets 413, a method
the behavior does not allow gets 405, and a PUT replaces what the edge had cached.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.app import build_edge_app
from tests.conftest import until
from tests.edge.conftest import ScriptedOrigin, edge_config
from web_dist.origin import UPLOAD_PREFIX, build_origin_app

MiB = 1024 * 1024
UPLOAD_TOKEN = "upload-token-for-tests-0123"
AUTH = {"authorization": f"Bearer {UPLOAD_TOKEN}"}
AUTH_LINE = f"authorization: Bearer {UPLOAD_TOKEN}\r\n".encode()
UPLOADS = {"path": "/uploads/*", "methods": ["GET", "HEAD", "PUT", "POST", "DELETE"], "max_upload_bytes": 128 * MiB}
SMALL = {"path": "/small/*", "methods": ["GET", "HEAD", "PUT", "POST"], "max_upload_bytes": MiB}


@dataclass
class UploadRig:
    root: Path  # the web origin's folder
    url: str  # the edge
    port: int
    client: httpx.AsyncClient

    def temp_files(self) -> list[str]:
        return [name for _, _, names in os.walk(self.root) for name in names if name.startswith(UPLOAD_PREFIX)]

    async def until(self, condition: Callable[[], bool]) -> None:
        await until(condition, 30.0)


@pytest.fixture
async def rig(serve: Callable[..., Any], tmp_path: Path) -> AsyncIterator[UploadRig]:
    root = tmp_path / "bucket"
    (root / "uploads").mkdir(parents=True)
    (root / "small").mkdir()
    origin = await serve(build_origin_app(root), name="origin")
    config = edge_config(origin.url, [UPLOADS, SMALL], read_timeout=30.0, upload_token=UPLOAD_TOKEN)
    edge = await serve(build_edge_app(config, "edge-test"), name="edge")
    async with httpx.AsyncClient(timeout=60, headers=AUTH) as client:
        yield UploadRig(root, edge.url, edge.port, client)


async def raw_exchange(port: int, head: bytes, body: bytes) -> bytes:
    """Send a request head and (part of) a body on a bare socket; the answer, unless reset."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    answer = b""
    try:
        answer = await asyncio.wait_for(reader.read(65536), 30)
    except ConnectionResetError:
        pass
    writer.close()
    return answer


async def test_a_large_put_is_streamed_to_the_origin_intact(rig: UploadRig) -> None:
    size = 64 * MiB
    block = os.urandom(MiB)
    digest = hashlib.sha256(block * 64).digest()

    async def body() -> AsyncIterator[bytes]:
        yield block
        # The origin is writing before the client has finished: the edge does not hold the body.
        await rig.until(lambda: any((rig.root / "uploads" / n).stat().st_size > 0 for n in rig.temp_files()))
        for _ in range(size // MiB - 1):
            yield block

    headers = {
        "content-length": str(size),
        "x-amz-checksum-sha256": base64.b64encode(digest).decode(),
        "content-type": "application/octet-stream",
    }
    resp = await rig.client.put(f"{rig.url}/uploads/big.bin", content=body(), headers=headers)
    assert resp.status_code == 201, resp.text
    stored = (rig.root / "uploads" / "big.bin").read_bytes()
    assert len(stored) == size and hashlib.sha256(stored).digest() == digest
    assert rig.temp_files() == []


async def test_the_origins_answer_comes_back_unchanged(rig: UploadRig) -> None:
    created = await rig.client.put(f"{rig.url}/uploads/a.txt", content=b"one")
    replaced = await rig.client.put(f"{rig.url}/uploads/a.txt", content=b"two")
    assert (created.status_code, replaced.status_code) == (201, 200)
    got = await rig.client.get(f"{rig.url}/uploads/a.txt")
    assert got.content == b"two" and got.headers["etag"] == replaced.headers["etag"]
    assert "fwd=method; fwd-status=200" in replaced.headers["cache-status"]
    stale = await rig.client.put(
        f"{rig.url}/uploads/a.txt", content=b"three", headers={"if-match": created.headers["etag"]}
    )
    assert stale.status_code == 412  # the origin's precondition, passed through
    assert (rig.root / "uploads" / "a.txt").read_bytes() == b"two"


async def test_the_clients_checksum_reaches_the_origin(rig: UploadRig) -> None:
    good = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    refused = await rig.client.put(f"{rig.url}/uploads/c.bin", content=b"payload", headers={"content-md5": bad})
    assert refused.status_code == 400 and "content-md5 does not match" in refused.text
    assert not (rig.root / "uploads" / "c.bin").exists()
    sha = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    refused = await rig.client.put(
        f"{rig.url}/uploads/c.bin", content=b"payload", headers={"x-amz-checksum-sha256": sha}
    )
    assert refused.status_code == 400 and "x-amz-checksum-sha256 does not match" in refused.text
    accepted = await rig.client.put(f"{rig.url}/uploads/c.bin", content=b"payload", headers={"content-md5": good})
    assert accepted.status_code == 201
    assert (rig.root / "uploads" / "c.bin").read_bytes() == b"payload"


async def test_a_put_replaces_what_the_edge_cached(rig: UploadRig) -> None:
    (rig.root / "uploads" / "page.html").write_bytes(b"old")
    assert (await rig.client.get(f"{rig.url}/uploads/page.html")).content == b"old"
    assert "hit" in (await rig.client.get(f"{rig.url}/uploads/page.html")).headers["cache-status"]
    assert (await rig.client.put(f"{rig.url}/uploads/page.html", content=b"new")).status_code == 200
    after = await rig.client.get(f"{rig.url}/uploads/page.html")
    assert after.content == b"new" and "fwd=miss" in after.headers["cache-status"]
    assert (await rig.client.delete(f"{rig.url}/uploads/page.html")).status_code == 204
    assert (await rig.client.get(f"{rig.url}/uploads/page.html")).status_code == 404


async def test_a_client_that_hangs_up_mid_upload_leaves_nothing(rig: UploadRig) -> None:
    heads = [
        b"PUT /uploads/cut.bin HTTP/1.1\r\nhost: site.test\r\n" + AUTH_LINE + b"content-length: 10000000\r\n\r\n",
        b"PUT /uploads/cut2.bin HTTP/1.1\r\nhost: site.test\r\n" + AUTH_LINE + b"transfer-encoding: chunked\r\n\r\n",
    ]
    bodies = [os.urandom(3 * MiB), b"100000\r\n" + os.urandom(0x100000) + b"\r\n"]
    for head, body in zip(heads, bodies, strict=True):
        _, writer = await asyncio.open_connection("127.0.0.1", rig.port)
        writer.write(head + body)
        await writer.drain()
        # The partial body has reached the origin's temporary file; now the client gives up.
        await rig.until(lambda: len(rig.temp_files()) == 1)
        writer.close()
        # The edge drops its origin connection mid-body; the origin removes the temporary file.
        await rig.until(lambda: rig.temp_files() == [])
    await asyncio.sleep(0.2)  # and nothing is published afterwards either
    assert sorted(p.name for p in (rig.root / "uploads").iterdir()) == []
    ok = await rig.client.put(f"{rig.url}/uploads/after.bin", content=b"fine")  # the edge still works
    assert ok.status_code == 201


async def test_a_client_that_stalls_mid_upload_gets_408_and_leaves_nothing(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / "uploads").mkdir()
    origin = await serve(build_origin_app(tmp_path), name="origin")
    app = build_edge_app(edge_config(origin.url, [UPLOADS], upload_token=UPLOAD_TOKEN), "edge-test")
    app.flow.upload_idle_timeout = 0.5
    edge = await serve(app, name="edge")
    head = b"PUT /uploads/slow.bin HTTP/1.1\r\nhost: site.test\r\n" + AUTH_LINE + b"content-length: 1000000\r\n\r\n"
    answer = await raw_exchange(edge.port, head, b"x" * 1000)  # then silence, the socket left open
    assert answer.startswith(b"HTTP/1.1 408 ") and b"the upload was abandoned" in answer
    await until(lambda: list((tmp_path / "uploads").iterdir()) == [])  # the origin dropped its temporary file


async def test_a_declared_body_over_the_limit_gets_413_before_the_origin_is_asked(serve: Callable[..., Any]) -> None:
    origin = ScriptedOrigin()
    origin_srv = await serve(origin, name="origin")
    config = edge_config(origin_srv.url, [SMALL], edge={"max_upload_bytes": 4 * MiB}, upload_token=UPLOAD_TOKEN)
    edge = await serve(build_edge_app(config, "edge-test"), name="edge")
    # Only the head is sent: the answer does not wait for a body nobody should send.
    head = b"PUT /small/x HTTP/1.1\r\nhost: site.test\r\n" + AUTH_LINE + f"content-length: {2 * MiB}\r\n\r\n".encode()
    answer = await raw_exchange(edge.port, head, b"")
    assert answer.startswith(b"HTTP/1.1 413 ") and b"exceeds this path's 1048576-byte upload limit" in answer
    head = (
        b"POST /elsewhere HTTP/1.1\r\nhost: site.test\r\n" + AUTH_LINE + f"content-length: {5 * MiB}\r\n\r\n".encode()
    )
    assert (await raw_exchange(edge.port, head, b"")).startswith(b"HTTP/1.1 405 ")
    assert not origin.requests


async def test_a_chunked_body_over_the_limit_is_cut_off(rig: UploadRig) -> None:
    head = b"PUT /small/big HTTP/1.1\r\nhost: site.test\r\n" + AUTH_LINE + b"transfer-encoding: chunked\r\n\r\n"
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"  # 64 KiB
    answer = await raw_exchange(rig.port, head, chunk * 20)  # 1.25 MiB, limit 1 MiB
    assert answer.startswith(b"HTTP/1.1 413 ")
    await rig.until(lambda: rig.temp_files() == [])
    assert not (rig.root / "small" / "big").exists()


async def test_anonymous_writes_get_403_and_store_nothing(rig: UploadRig) -> None:
    anonymous = {"authorization": ""}
    put = await rig.client.put(f"{rig.url}/uploads/anon.txt", content=b"x", headers={"authorization": ""})
    assert put.status_code == 403 and "Bearer <upload token> or a signed URL" in put.text
    wrong = await rig.client.put(
        f"{rig.url}/uploads/anon.txt", content=b"x", headers={"authorization": "Bearer not-the-upload-token"}
    )
    assert wrong.status_code == 403 and "wrong upload token" in wrong.text
    (rig.root / "uploads" / "kept.txt").write_bytes(b"kept")
    delete = await rig.client.delete(f"{rig.url}/uploads/kept.txt", headers=anonymous)
    assert delete.status_code == 403
    assert not (rig.root / "uploads" / "anon.txt").exists() and (rig.root / "uploads" / "kept.txt").exists()
    assert (await rig.client.put(f"{rig.url}/uploads/anon.txt", content=b"x")).status_code in (200, 201)


async def test_a_distribution_without_upload_token_or_keys_takes_no_writes(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / "uploads").mkdir()
    origin = await serve(build_origin_app(tmp_path), name="origin")
    edge = await serve(build_edge_app(edge_config(origin.url, [UPLOADS]), "edge-test"), name="edge")
    async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
        resp = await client.put(f"{edge.url}/uploads/x.txt", content=b"x")
    assert resp.status_code == 403 and "neither upload_token nor trusted_keys" in resp.text
    assert not (tmp_path / "uploads" / "x.txt").exists()


async def test_methods_the_behavior_does_not_allow_get_405_with_allow(rig: UploadRig) -> None:
    resp = await rig.client.put(f"{rig.url}/elsewhere.txt", content=b"x")
    assert resp.status_code == 405 and resp.headers["allow"] == "GET, HEAD"
    delete = await rig.client.delete(f"{rig.url}/small/x")
    assert delete.status_code == 405 and delete.headers["allow"] == "GET, HEAD, POST, PUT"
    assert not (rig.root / "elsewhere.txt").exists()


async def test_a_post_body_reaches_the_origin_and_its_answer_returns(serve: Callable[..., Any]) -> None:
    origin = ScriptedOrigin()
    origin.set("/small/form", b"accepted", status=202, headers={"location": "/small/form/1", "x-origin": "yes"})
    origin_srv = await serve(origin, name="origin")
    edge = await serve(
        build_edge_app(edge_config(origin_srv.url, [SMALL], upload_token=UPLOAD_TOKEN), "edge-test"), name="edge"
    )
    async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
        resp = await client.post(
            f"{edge.url}/small/form", content=b"a=1&b=2", headers={"content-type": "application/x-www-form-urlencoded"}
        )
    assert resp.status_code == 202 and resp.content == b"accepted"
    assert resp.headers["location"] == "/small/form/1" and resp.headers["x-origin"] == "yes"
    method, _, headers = origin.requests[0]
    assert method == "POST" and headers["content-type"] == "application/x-www-form-urlencoded"
