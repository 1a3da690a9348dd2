"""Issue 12: one viewer's request never changes what another gets, through real sockets.

Collapsed misses and hits share only what may be shared (no Set-Cookie, no private answer),
fills carry only keyed or allowed headers, keys are unambiguous, Connection-named headers go,
Host is checked strictly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import until
from tests.edge.conftest import EdgeRig


async def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


# -- Set-Cookie and private answers --------------------------------------------------------------
async def test_collapsed_viewers_never_get_the_leaders_cookie(rig: EdgeRig) -> None:
    script = rig.origin.set("/login", b"page", headers={"set-cookie": "session=leader-secret"}, gate=asyncio.Event())
    first = asyncio.create_task(rig.get("/login"))
    await until(lambda: rig.origin.hits["/login"] == 1)
    others = [asyncio.create_task(rig.get("/login")) for _ in range(4)]
    await until(lambda: rig.app.flow.flights.collapsed == 4)
    assert script.gate is not None
    script.gate.set()
    answers = [await first, *[await t for t in others]]
    later = await rig.get("/login")
    assert all(r.content == b"page" for r in [*answers, later])
    assert all("set-cookie" not in r.headers for r in [*answers, later])
    assert rig.origin.hits["/login"] == 1


async def test_a_behavior_that_forwards_cookies_passes_each_viewer_to_the_origin(rig_factory: Any) -> None:
    rig: EdgeRig = await rig_factory(default_behavior={"default_ttl": 60, "cookie_keys": ["session"]})
    rig.origin.set("/me", b"mine", headers={"set-cookie": "session=fresh"})
    a = await rig.get("/me", headers={"cookie": "session=a; tracking=x"})
    b = await rig.get("/me", headers={"cookie": "session=b"})
    assert a.headers["set-cookie"] == "session=fresh" and b.headers["set-cookie"] == "session=fresh"
    assert rig.origin.hits["/me"] == 2
    assert [r[2].get("cookie") for r in rig.origin.requests] == ["session=a", "session=b"]


async def test_private_answer_is_not_handed_to_collapsed_viewers(rig: EdgeRig) -> None:
    script = rig.origin.set("/acct", b"private-page", headers={"cache-control": "private"}, gate=asyncio.Event())
    first = asyncio.create_task(rig.get("/acct"))
    await until(lambda: rig.origin.hits["/acct"] == 1)
    second = asyncio.create_task(rig.get("/acct"))
    await until(lambda: rig.app.flow.flights.collapsed == 1)
    assert script.gate is not None
    script.gate.set()
    await first
    await second
    assert rig.origin.hits["/acct"] == 2


async def test_no_cache_set_cookie_field_is_never_stored(rig: EdgeRig) -> None:
    rig.origin.set("/f", b"x", headers={"cache-control": 'max-age=60, no-cache="set-cookie"', "set-cookie": "a=1"})
    await rig.get("/f")
    hit = await rig.get("/f")
    assert "hit" in hit.headers["cache-status"] and "set-cookie" not in hit.headers


# -- what reaches the origin on a fill --------------------------------------------------------------
async def test_a_fill_sends_only_keyed_or_allowed_headers(rig_factory: Any) -> None:
    rig: EdgeRig = await rig_factory(
        default_behavior={"default_ttl": 60, "header_keys": ["x-device"], "origin_headers": ["x-trace"]}
    )
    rig.origin.set("/p", b"x")
    await rig.get(
        "/p",
        headers={
            "x-device": "tv",
            "x-trace": "t1",
            "x-forwarded-host": "evil.example",
            "x-original-url": "/admin",
            "user-agent": "attacker/1.0",
            "cookie": "a=b",
            "x-forwarded-for": "6.6.6.6",
        },
    )
    sent = rig.origin.requests[0][2]
    assert sent["x-device"] == "tv" and sent["x-trace"] == "t1"
    for name in ("x-forwarded-host", "x-original-url", "cookie"):
        assert name not in sent
    assert "attacker" not in sent.get("user-agent", "")
    assert sent["x-forwarded-for"] == "127.0.0.1"  # the edge's own view, not the viewer's claim
    assert "edge-test" in sent["via"]


async def test_authorization_sent_to_the_origin_unkeyed_is_reused_only_when_allowed(rig_factory: Any) -> None:
    rig: EdgeRig = await rig_factory(default_behavior={"default_ttl": 60, "origin_headers": ["authorization"]})
    rig.origin.set("/mine", b"secret", headers={"cache-control": "max-age=60"})
    rig.origin.set("/shared", b"ok", headers={"cache-control": "s-maxage=60"})
    for path in ("/mine", "/shared"):
        await rig.get(path, headers={"authorization": "Bearer alice"})
        await rig.get(path, headers={"authorization": "Bearer bob"})
    assert rig.origin.hits["/mine"] == 2 and rig.origin.hits["/shared"] == 1


# -- unambiguous keys -------------------------------------------------------------------------------
async def test_a_pipe_in_the_path_cannot_write_another_urls_variant(rig_factory: Any) -> None:
    rig: EdgeRig = await rig_factory(default_behavior={"default_ttl": 60, "origin_headers": ["x-foo"]})
    rig.origin.set("/vary", b"page", vary_on="X-Foo")
    rig.origin.set("/vary|vary|x-foo=three", b"attacker")
    await rig.get("/vary", headers={"x-foo": "one"})  # /vary now varies on X-Foo
    await _raw(rig.url, b"GET /vary|vary|x-foo=three HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
    victim = await rig.get("/vary", headers={"x-foo": "three"})
    assert victim.content == b"page:three"


async def test_invalidating_a_path_with_a_pipe_removes_it(rig: EdgeRig) -> None:
    rig.origin.set("/pipe|x.txt", b"old")
    await _raw(rig.url, b"GET /pipe|x.txt HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
    assert await rig.app.flow.invalidate("site", ["/pipe|x.txt"]) == 1
    answer = await _raw(rig.url, b"GET /pipe|x.txt HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
    assert b"fwd=miss" in answer
    assert rig.origin.hits["/pipe|x.txt"] + rig.origin.hits["/pipe%7Cx.txt"] == 2


# -- Connection and Host ----------------------------------------------------------------------------
async def test_headers_named_in_connection_are_dropped_both_ways(rig_factory: Any) -> None:
    rig: EdgeRig = await rig_factory(default_behavior={"default_ttl": 60, "origin_headers": ["x-secret"]})
    rig.origin.set("/c", b"x", headers={"connection": "x-internal", "x-internal": "origin-only"})
    answer = await _raw(
        rig.url, b"GET /c HTTP/1.1\r\nHost: site.test\r\nConnection: close, x-secret\r\nX-Secret: hop\r\n\r\n"
    )
    assert b"x-internal" not in answer.lower()
    assert "x-secret" not in rig.origin.requests[0][2]
    hit = await rig.get("/c")
    assert "x-internal" not in hit.headers


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: site.test\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: site.test:abc\r\nConnection: close\r\n\r\n",
    ],
    ids=["duplicate-host", "non-numeric-port"],
)
async def test_bad_host_gets_400_with_nosniff(rig: EdgeRig, request_bytes: bytes) -> None:
    rig.origin.set("/", b"home")
    answer = await _raw(rig.url, request_bytes)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"x-content-type-options: nosniff" in answer.lower()
    assert rig.origin.hits["/"] == 0


async def test_several_cookie_lines_are_joined_with_semicolons(rig_factory: Any) -> None:
    rig: EdgeRig = await rig_factory(default_behavior={"default_ttl": 60, "cookie_keys": "all"})
    rig.origin.set("/ck", b"x")
    await _raw(
        rig.url, b"GET /ck HTTP/1.1\r\nHost: site.test\r\nCookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n"
    )
    assert rig.origin.requests[0][2]["cookie"] == "a=1; b=2"


async def test_malformed_chunked_upload_gets_400(rig_factory: Any) -> None:
    token = "t" * 32
    rig: EdgeRig = await rig_factory(
        default_behavior={"default_ttl": 60, "methods": ["GET", "HEAD", "PUT"]}, upload_token=token
    )
    answer = await _raw(
        rig.url,
        b"PUT /up HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


# -- Cache-Status and Vary --------------------------------------------------------------------------
async def test_stored_is_said_only_when_the_object_was_stored(serve: Any) -> None:
    from edge.app import build_edge_app
    from tests.edge.conftest import edge_config

    async def truncating(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000"), (b"cache-control", b"max-age=60")],
            }
        )
        await send({"type": "http.response.body", "body": b"x" * 400, "more_body": True})
        raise RuntimeError("the origin dies mid-body")

    origin = await serve(truncating, name="origin")
    app = build_edge_app(edge_config(origin.url), "edge-test")
    edge = await serve(app, name="edge")
    answer = await _raw(edge.url, b"GET /t HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
    assert b"stored" not in answer.split(b"\r\n\r\n")[0]
    assert app.flow.store.get("site:/t") is None


async def test_identity_answer_of_a_compressible_object_says_vary_accept_encoding(rig_factory: Any) -> None:
    rig: EdgeRig = await rig_factory(default_behavior={"default_ttl": 60, "compress": True})
    rig.origin.set("/page.html", b"<p>" * 2000, headers={"content-type": "text/html"})
    plain = await rig.get("/page.html", headers={"accept-encoding": "identity"})
    again = await rig.get("/page.html", headers={"accept-encoding": "identity"})
    assert "accept-encoding" in plain.headers.get("vary", "").lower()
    assert "accept-encoding" in again.headers.get("vary", "").lower()


async def test_range_miss_fetches_once_for_the_range_and_the_whole(rig: EdgeRig) -> None:
    rig.origin.set("/r.bin", bytes(range(256)) * 100, ranges=True)
    part = await rig.get("/r.bin", headers={"range": "bytes=10-19"})
    whole = await rig.get("/r.bin")
    assert part.status_code == 206 and part.content == (bytes(range(256)) * 100)[10:20]
    assert whole.status_code == 200 and len(whole.content) == 25600
    assert rig.origin.hits["/r.bin"] == 1
    assert "range" not in rig.origin.requests[0][2]


async def test_uncacheable_memory_is_bounded(rig: EdgeRig) -> None:
    from edge import flow as flow_module

    for i in range(flow_module.MAX_UNCACHEABLE + 50):
        rig.app.flow._remember_uncacheable(f"site:/n{i}")
    assert len(rig.app.flow._uncacheable) <= flow_module.MAX_UNCACHEABLE


# -- origins that say odd things ----------------------------------------------------------------------
async def _raw_origin(answer: bytes) -> tuple[asyncio.AbstractServer, str]:
    """An origin on a bare socket that answers every request with `answer` (then closes)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: max-age=60\r\n\r\nhello",
            b"hello",
        ),
    ],
    ids=["early-hints-first"],
)
async def test_informational_answers_are_never_stored(serve: Any, answer: bytes, body: bytes) -> None:
    from edge.app import build_edge_app
    from tests.edge.conftest import edge_config

    server, url = await _raw_origin(answer)
    try:
        app = build_edge_app(edge_config(url), "edge-test")
        edge = await serve(app, name="edge")
        first = await _raw(edge.url, b"GET /o HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
        head, _, got = first.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and got == body, first
        again = await _raw(edge.url, b"GET /o HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
        assert b"hit" in again.partition(b"\r\n\r\n")[0] and again.endswith(body)
        assert b"103" not in again
    finally:
        server.close()


async def test_the_tag_index_forgets_objects_that_left_the_cache(rig_factory: Any) -> None:
    rig: EdgeRig = await rig_factory(edge={"cache_bytes": 64 * 1024})
    for i in range(200):
        rig.origin.set(f"/t{i}", b"x" * 2000, headers={"surrogate-key": f"tag{i} all"})
        await rig.get(f"/t{i}")
    flow = rig.app.flow
    indexed = {k for keys in flow._tags.values() for k in keys}
    assert len(indexed) <= 2 * len(flow.store) + 64
    held = len(flow.store)
    assert held > 0 and await flow.purge_tags(["all"]) == held


async def test_range_miss_of_a_body_without_length_fetches_once(serve: Any) -> None:
    from edge.app import build_edge_app
    from tests.edge.conftest import edge_config

    body = bytes(range(256)) * 100
    seen: list[dict[str, str]] = []

    async def chunked(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"cache-control", b"max-age=60")]})
        for i in range(0, len(body), 4096):
            await send({"type": "http.response.body", "body": body[i : i + 4096], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    origin = await serve(chunked, name="origin")
    edge = await serve(build_edge_app(edge_config(origin.url), "edge-test"), name="edge")
    import httpx

    async with httpx.AsyncClient() as client:
        part = await client.get(edge.url + "/c.bin", headers={"host": "site.test", "range": "bytes=10-19"})
        whole = await client.get(edge.url + "/c.bin", headers={"host": "site.test"})
    assert part.status_code == 206 and part.content == body[10:20]
    assert whole.content == body and "hit" in whole.headers["cache-status"]
    assert len(seen) == 1 and "range" not in seen[0]
