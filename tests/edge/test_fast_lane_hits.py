"""An edge's fresh hits through the fast lane are the hits uvicorn would send, byte for byte,
and everything the lane must not answer still gets the flow's own answer."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.edge.conftest import EdgeRig
from web_dist.server import SharedApp, start_server


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = b"" if request.startswith(b"HEAD") else await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    return head + body


async def test_a_quick_hit_is_the_hit_uvicorn_sends(rig: EdgeRig) -> None:
    rig.origin.set("/page.bin", b"p" * 3000, headers={"content-type": "application/octet-stream", "etag": '"v1"'})
    assert (await rig.get("/page.bin")).headers["x-cache"].startswith("Miss")
    plain = await start_server(SharedApp(rig.app), name="edge without the lane", engine="uvicorn")
    try:
        lane_port = int(rig.url.rpartition(":")[2])
        for method in (b"GET", b"HEAD"):
            request = method + b" /page.bin HTTP/1.1\r\nhost: site.test\r\n\r\n"
            quick, through_app = await _raw(lane_port, request), await _raw(plain.port, request)
            assert b"x-cache: Hit from edge-test" in quick
            assert quick == through_app
    finally:
        await plain.stop()


async def test_the_access_log_and_metrics_count_quick_hits(rig: EdgeRig) -> None:
    rig.origin.set("/counted.bin", b"c" * 100, headers={"content-type": "application/octet-stream"})
    await rig.get("/counted.bin")
    flow: Any = rig.app.flow
    lines: list[str] = []
    original = flow.access.write
    flow.access.write = lambda line: (lines.append(line), original(line))
    for _ in range(3):
        assert (await rig.get("/counted.bin")).headers["x-cache"].startswith("Hit")
    assert len(lines) == 3 and all("cache=hit status=200 bytes=100" in line for line in lines)


async def test_refusals_misses_and_shaped_hits_still_get_the_flows_answer(rig: EdgeRig) -> None:
    rig.origin.set("/r.bin", bytes(range(100)), headers={"content-type": "application/octet-stream", "etag": '"r1"'})
    await rig.get("/r.bin")
    ranged = await rig.get("/r.bin", headers={"range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == bytes(range(10, 20))
    assert (await rig.get("/r.bin", headers={"host": "nobody.test"})).status_code == 421
    assert (await rig.get("/r.bin", headers={"via": "1.1 edge-test"})).status_code == 508
    assert (await rig.get("/../etc/passwd")).status_code in (400, 404)
    conditional = await rig.get("/r.bin", headers={"if-none-match": '"r1"'})
    assert conditional.status_code == 304
