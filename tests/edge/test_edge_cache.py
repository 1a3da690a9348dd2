"""The edge's cache through real sockets: what a viewer and the origin see."""

from __future__ import annotations

import asyncio
import gzip
import logging

import httpx

from tests.conftest import until
from tests.edge.conftest import EdgeRig


async def test_miss_then_hit_makes_one_origin_request(rig: EdgeRig) -> None:
    rig.origin.set("/a.txt", b"alpha")
    first = await rig.get("/a.txt")
    second = await rig.get("/a.txt")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content == b"alpha"
    assert first.headers["cache-status"] == "edge-test; fwd=miss; fwd-status=200; stored"
    assert second.headers["cache-status"].startswith("edge-test; hit")
    assert first.headers["age"] == "0" and second.headers["age"] == "0"
    assert rig.origin.hits["/a.txt"] == 1


async def test_age_grows_while_cached(rig: EdgeRig) -> None:
    rig.origin.set("/a", b"x")
    await rig.get("/a")
    rig.clock.advance(30)
    hit = await rig.get("/a")
    assert hit.headers["age"] == "30"
    assert "ttl=30" in hit.headers["cache-status"]


async def test_default_ttl_when_origin_says_nothing(rig: EdgeRig) -> None:
    rig.origin.set("/a", b"x")  # the rig's default behavior: default_ttl 60
    await rig.get("/a")
    rig.clock.advance(59)
    assert "hit" in (await rig.get("/a")).headers["cache-status"]
    rig.clock.advance(2)
    assert (await rig.get("/a")).headers["cache-status"].startswith("edge-test; fwd=stale")
    assert rig.origin.hits["/a"] == 2


async def test_origin_lifetime_is_clamped_to_the_behavior(rig_factory) -> None:
    rig: EdgeRig = await rig_factory([{"path": "/clamped/*", "min_ttl": 100, "default_ttl": 150, "max_ttl": 200}])
    rig.origin.set("/clamped/short", headers={"cache-control": "max-age=10"})
    rig.origin.set("/clamped/long", headers={"cache-control": "max-age=100000"})
    await rig.get("/clamped/short")
    await rig.get("/clamped/long")
    rig.clock.advance(99)
    assert "hit" in (await rig.get("/clamped/short")).headers["cache-status"]  # min_ttl wins over 10
    rig.clock.advance(102)  # 201 s: past max_ttl
    assert "fwd=stale" in (await rig.get("/clamped/long")).headers["cache-status"]
    assert rig.origin.hits["/clamped/long"] == 2


async def test_s_maxage_over_max_age_over_expires(rig: EdgeRig) -> None:
    rig.origin.set(
        "/s", headers={"cache-control": "max-age=5, s-maxage=100", "expires": "Thu, 01 Jan 1970 00:00:00 GMT"}
    )
    rig.origin.set("/m", headers={"cache-control": "max-age=5", "expires": "Fri, 01 Jan 2100 00:00:00 GMT"})
    rig.origin.set("/bad-expires", headers={"expires": "not a date"})
    for path in ("/s", "/m", "/bad-expires"):
        await rig.get(path)
    rig.clock.advance(10)
    assert "hit" in (await rig.get("/s")).headers["cache-status"]
    assert "fwd=stale" in (await rig.get("/m")).headers["cache-status"]
    assert "fwd=stale" in (await rig.get("/bad-expires")).headers["cache-status"]  # invalid Expires: stale


async def test_no_store_and_private_are_not_stored(rig: EdgeRig) -> None:
    rig.origin.set("/ns", headers={"cache-control": "no-store"})
    rig.origin.set("/p", headers={"cache-control": "private, max-age=600"})
    for path in ("/ns", "/p"):
        first, second = await rig.get(path), await rig.get(path)
        assert "stored" not in first.headers["cache-status"]
        assert "hit" not in second.headers["cache-status"]
        assert rig.origin.hits[path] == 2


async def test_stale_entry_revalidated_with_304_is_refreshed(rig: EdgeRig) -> None:
    rig.origin.set("/v", b"same body", headers={"etag": '"v1"', "cache-control": "max-age=10"})
    await rig.get("/v")
    rig.clock.advance(11)
    again = await rig.get("/v")
    assert again.status_code == 200 and again.content == b"same body"
    assert again.headers["cache-status"].startswith("edge-test; fwd=stale; fwd-status=304")
    method, _, sent = rig.origin.requests[-1]
    assert sent["if-none-match"] == '"v1"'
    rig.clock.advance(5)
    assert "hit" in (await rig.get("/v")).headers["cache-status"]  # fresh again for 10 s
    assert rig.origin.hits["/v"] == 2


async def test_stale_entry_replaced_when_origin_changed(rig: EdgeRig) -> None:
    rig.origin.set("/v", b"old", headers={"etag": '"v1"', "cache-control": "max-age=10"})
    await rig.get("/v")
    rig.origin.set("/v", b"new", headers={"etag": '"v2"', "cache-control": "max-age=10"})
    rig.clock.advance(11)
    changed = await rig.get("/v")
    assert changed.content == b"new"
    assert "fwd=stale; fwd-status=200; stored" in changed.headers["cache-status"]
    assert (await rig.get("/v")).content == b"new"


async def test_200_concurrent_cold_requests_make_one_origin_request(rig: EdgeRig) -> None:
    body = bytes(range(256)) * 400
    script = rig.origin.set("/cold.bin", body, gate=asyncio.Event())
    requests = [asyncio.create_task(rig.get("/cold.bin")) for _ in range(200)]
    # Hold the origin until every request has joined the one flight.
    await until(lambda: rig.app.flow.flights.collapsed >= 199)
    assert script.gate is not None
    script.gate.set()
    responses = await asyncio.gather(*requests)
    assert [r.status_code for r in responses] == [200] * 200
    assert all(r.content == body for r in responses)
    assert rig.origin.hits["/cold.bin"] == 1
    assert sum("collapsed" in r.headers["cache-status"] for r in responses) == 199


async def test_origin_failure_reaches_every_waiter_and_does_not_poison_the_key(rig_factory) -> None:
    rig: EdgeRig = await rig_factory(read_timeout=0.5)
    script = rig.origin.set("/slow", b"finally", gate=asyncio.Event())
    responses = await asyncio.gather(*(rig.get("/slow") for _ in range(20)))
    assert {r.status_code for r in responses} == {504}
    assert "did not answer in time" in responses[0].text
    assert rig.origin.hits["/slow"] == 1
    assert script.gate is not None
    script.gate.set()
    recovered = await rig.get("/slow")
    assert recovered.status_code == 200 and recovered.content == b"finally"


async def test_dead_origin_gives_502_with_a_message(rig_factory, serve) -> None:
    rig: EdgeRig = await rig_factory()
    # Point a second edge at a port where nothing listens.
    import socket

    from edge.app import build_edge_app
    from tests.edge.conftest import edge_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    edge = await serve(build_edge_app(edge_config(dead), "edge-test"), name="edge-dead")
    response = await rig.client.get(edge.url + "/x")
    assert response.status_code == 502
    assert "could not be reached" in response.text
    assert response.headers["cache-status"].startswith("edge-test;")


async def test_unknown_host_is_refused_and_nothing_is_forwarded(rig: EdgeRig) -> None:
    response = await rig.client.get(rig.url + "/a", headers={"host": "evil.example"})
    assert response.status_code == 421
    assert "no distribution for host 'evil.example'" in response.text
    assert rig.origin.hits == {}


async def test_absolute_form_request_goes_only_to_the_configured_origin(rig: EdgeRig) -> None:
    rig.origin.set("/a", b"mine")
    port = int(rig.url.rsplit(":", 1)[1])
    reply = await _raw(port, b"GET http://evil.example/a HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"mine")
    assert rig.origin.hits["/a"] == 1


async def test_path_traversal_is_refused_at_the_edge(rig: EdgeRig) -> None:
    port = int(rig.url.rsplit(":", 1)[1])
    for target in (b"/../etc/passwd", b"/%2e%2e/etc/passwd", b"/a/%2E%2E/%2e%2e/x", b"/a%00b", b"/a%5c..%5cb"):
        reply = await _raw(port, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400"), (target, reply[:80])
    assert rig.origin.hits == {}


async def test_method_not_allowed_by_behavior(rig: EdgeRig) -> None:
    response = await rig.client.put(rig.url + "/a", content=b"x")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert rig.origin.hits == {}


async def test_successful_put_through_the_edge_invalidates_the_cached_object(rig_factory) -> None:
    token = "upload-token-for-tests-0123"
    rig: EdgeRig = await rig_factory([{"path": "/up/*", "methods": ["GET", "HEAD", "PUT"]}], upload_token=token)
    rig.origin.set("/up/f", b"v1")
    await rig.get("/up/f")
    rig.origin.set("/up/f", b"ok", status=201)
    put = await rig.client.put(
        rig.url + "/up/f", content=b"v2", headers={"content-md5": "abc", "authorization": f"Bearer {token}"}
    )
    assert put.status_code == 201 and "fwd=method" in put.headers["cache-status"]
    method, _, sent = rig.origin.requests[-1]
    assert method == "PUT" and sent["content-md5"] == "abc"
    rig.origin.set("/up/f", b"v2")
    assert (await rig.get("/up/f")).content == b"v2"


async def test_large_response_streams_before_the_origin_finishes(rig_factory) -> None:
    rig: EdgeRig = await rig_factory(edge={"cache_bytes": 1_000_000, "max_object_bytes": 10_000})
    body = b"z" * 400_000
    script = rig.origin.set("/big", body, chunk_gate=asyncio.Event())
    async with rig.client.stream("GET", rig.url + "/big") as response:
        chunks = response.aiter_raw()
        first = await asyncio.wait_for(chunks.__anext__(), 5)  # arrives while the origin holds the rest
        assert first and set(first) == {ord("z")}
        assert script.chunk_gate is not None
        script.chunk_gate.set()
        rest = b"".join([c async for c in chunks])
    assert len(first) + len(rest) == len(body)
    assert "stored" not in response.headers["cache-status"]
    assert (await rig.get("/big")).content == body
    assert rig.origin.hits["/big"] == 2  # over max_object_bytes: not kept


async def test_head_conditional_and_range_answered_from_cache(rig: EdgeRig) -> None:
    rig.origin.set("/r", b"0123456789", headers={"etag": '"r1"', "last-modified": "Tue, 01 Jan 2030 00:00:00 GMT"})
    await rig.get("/r")
    head = await rig.client.head(rig.url + "/r")
    assert head.status_code == 200 and head.headers["content-length"] == "10" and head.content == b""
    nm = await rig.get("/r", headers={"if-none-match": '"r1"'})
    assert nm.status_code == 304 and nm.headers["etag"] == '"r1"'
    ims = await rig.get("/r", headers={"if-modified-since": "Tue, 01 Jan 2030 00:00:00 GMT"})
    assert ims.status_code == 304
    part = await rig.get("/r", headers={"range": "bytes=2-4"})
    assert part.status_code == 206 and part.content == b"234"
    assert part.headers["content-range"] == "bytes 2-4/10"
    suffix = await rig.get("/r", headers={"range": "bytes=-3"})
    assert suffix.content == b"789"
    bad = await rig.get("/r", headers={"range": "bytes=50-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == "bytes */10"
    stale_validator = await rig.get("/r", headers={"range": "bytes=0-1", "if-range": '"old"'})
    assert stale_validator.status_code == 200 and stale_validator.content == b"0123456789"
    assert rig.origin.hits["/r"] == 1


async def test_range_request_on_a_miss_fetches_the_object_once(rig: EdgeRig) -> None:
    rig.origin.set("/m.bin", bytes(range(100)))
    part = await rig.get("/m.bin", headers={"range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == bytes(range(10, 20))
    assert "range" not in rig.origin.requests[-1][2]
    assert (await rig.get("/m.bin")).headers["cache-status"].startswith("edge-test; hit")


async def test_query_strings_join_the_key_only_when_configured(rig_factory) -> None:
    rig: EdgeRig = await rig_factory([{"path": "/q/*", "query_keys": ["v"]}])
    rig.origin.set("/plain", b"p")
    rig.origin.set("/q/x", b"q")
    await rig.get("/plain?a=1")
    await rig.get("/plain?a=2")
    assert rig.origin.hits["/plain"] == 1  # query not in the key, nor forwarded
    await rig.get("/q/x?v=1&junk=1")
    await rig.get("/q/x?junk=2&v=1")
    await rig.get("/q/x?v=2")
    assert [p for _, p, _ in rig.origin.requests if p.startswith("/q")] == ["/q/x?v=1", "/q/x?v=2"]


async def test_gzip_at_the_edge_when_enabled_and_accepted(rig_factory) -> None:
    rig: EdgeRig = await rig_factory(default_behavior={"compress": True, "default_ttl": 60})
    page = b"<html>" + b"hello world " * 500 + b"</html>"
    rig.origin.set("/page.html", page, headers={"content-type": "text/html", "etag": '"p1"'})
    for _ in range(2):  # the miss and the hit are compressed alike
        raw = await rig.client.get(rig.url + "/page.html", headers={"accept-encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip"
        assert raw.headers["vary"] == "Accept-Encoding"
        assert raw.content == page  # httpx decodes it
    plain = await rig.client.get(rig.url + "/page.html", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == page
    assert rig.origin.hits["/page.html"] == 1
    assert "accept-encoding" not in rig.origin.requests[0][2]
    assert gzip.decompress(gzip.compress(page)) == page


async def test_uncacheable_answer_is_not_shared_with_collapsed_waiters(rig: EdgeRig) -> None:
    script = rig.origin.set("/me", b"private data", headers={"cache-control": "private"}, gate=asyncio.Event())
    requests = [asyncio.create_task(rig.get("/me")) for _ in range(5)]
    await until(lambda: rig.app.flow.flights.collapsed >= 4)
    assert script.gate is not None
    script.gate.set()
    responses = await asyncio.gather(*requests)
    assert all(r.status_code == 200 for r in responses)
    assert rig.origin.hits["/me"] == 5  # each waiter asked the origin itself
    later = await rig.get("/me")
    assert "fwd=bypass" in later.headers["cache-status"]


async def test_one_access_log_line_per_request(rig: EdgeRig, caplog) -> None:
    rig.origin.set("/log", b"12345")
    with caplog.at_level(logging.INFO, logger="cdn.access"):
        await rig.get("/log")
        await rig.get("/log?x=1")
        rig.app.flow.access.flush()  # lines are written in batches
    lines = [line for r in caplog.records if r.name == "cdn.access" for line in r.getMessage().splitlines()]
    assert len(lines) == 2
    assert "dist=site" in lines[0] and "key=site:/log" in lines[0] and "cache=miss" in lines[0]
    assert "GET /log?x=1" in lines[1] and "status=200" in lines[1] and "bytes=5" in lines[1]
    assert "cache=hit" in lines[1] and "time=" in lines[1] and "client=127.0.0.1" in lines[1]
    assert lines[0][:4].isdigit() and lines[0][23] == "Z"  # each line has its own UTC timestamp


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


_ = httpx
