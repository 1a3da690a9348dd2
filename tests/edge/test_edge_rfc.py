"""Issue 3's semantics through real sockets: Vary, RFC 5861, error pages, brotli, failover,
tiered caching. What a viewer and the origin see."""

from __future__ import annotations

import asyncio
import gzip
import socket
from typing import Any

import brotli
import httpx

from edge.app import build_edge_app
from edge.store import MemoryStore
from tests.conftest import until
from tests.edge.conftest import Clock, EdgeRig, ScriptedOrigin, edge_config
from web_dist.config import parse_config


async def test_vary_stores_one_variant_per_header_value(rig_factory) -> None:
    # the origin varies on a header it is sent: listed in the behavior's origin_headers
    rig: EdgeRig = await rig_factory(default_behavior={"default_ttl": 60, "origin_headers": ["accept-language"]})
    rig.origin.set("/v", b"page", vary_on="Accept-Language")
    fr = await rig.get("/v", headers={"accept-language": "fr"})
    de = await rig.get("/v", headers={"accept-language": "de"})
    fr2 = await rig.get("/v", headers={"accept-language": "fr"})
    de2 = await rig.get("/v", headers={"accept-language": "de"})
    assert (fr.content, de.content, fr2.content, de2.content) == (b"page:fr", b"page:de", b"page:fr", b"page:de")
    assert "hit" in fr2.headers["cache-status"] and "hit" in de2.headers["cache-status"]
    assert rig.origin.hits["/v"] == 2


async def test_collapsed_viewer_wanting_another_variant_gets_its_own(rig_factory) -> None:
    # the origin varies on a header it is sent: listed in the behavior's origin_headers
    rig: EdgeRig = await rig_factory(default_behavior={"default_ttl": 60, "origin_headers": ["accept-language"]})
    script = rig.origin.set("/v", b"page", vary_on="Accept-Language", gate=asyncio.Event())
    fr = asyncio.create_task(rig.get("/v", headers={"accept-language": "fr"}))
    await until(lambda: rig.origin.hits["/v"] == 1)
    de = asyncio.create_task(rig.get("/v", headers={"accept-language": "de"}))
    await until(lambda: rig.app.flow.flights.collapsed == 1)
    assert script.gate is not None
    script.gate.set()
    assert (await fr).content == b"page:fr"
    assert (await de).content == b"page:de"


async def test_vary_star_is_never_served_from_cache(rig: EdgeRig) -> None:
    rig.origin.set("/star", headers={"vary": "*"})
    await rig.get("/star")
    await rig.get("/star")
    assert rig.origin.hits["/star"] == 2


async def test_authorization_is_not_shared_unless_the_response_allows(rig_factory) -> None:
    rig: EdgeRig = await rig_factory(default_behavior={"default_ttl": 60, "header_keys": ["Authorization"]})
    rig.origin.set("/mine", b"secret")
    rig.origin.set("/pub", b"shared", headers={"cache-control": "public, max-age=60"})
    for path in ("/mine", "/pub"):
        for _ in range(2):
            await rig.get(path, headers={"authorization": "Bearer a"})
    assert rig.origin.hits["/mine"] == 2 and rig.origin.hits["/pub"] == 1
    assert rig.origin.requests[0][2]["authorization"] == "Bearer a"


async def test_stale_while_revalidate_serves_stale_and_refreshes_once(rig: EdgeRig) -> None:
    rig.origin.set("/swr", b"v1", headers={"cache-control": "max-age=10, stale-while-revalidate=60"})
    await rig.get("/swr")
    script = rig.origin.set(
        "/swr", b"v2", headers={"cache-control": "max-age=10, stale-while-revalidate=60"}, gate=asyncio.Event()
    )
    rig.clock.advance(15)
    responses = await asyncio.gather(*(rig.get("/swr") for _ in range(30)))
    # Every viewer got the stale copy at once, while the origin still held the refresh.
    assert {r.content for r in responses} == {b"v1"}
    assert all("detail=stale-while-revalidate" in r.headers["cache-status"] for r in responses)
    assert rig.origin.hits["/swr"] == 2  # one background fetch for 30 viewers
    assert script.gate is not None
    script.gate.set()
    await until(lambda: rig.app.flow.store.get("site:/swr").body == b"v2")
    fresh = await rig.get("/swr")
    assert fresh.content == b"v2" and fresh.headers["cache-status"].startswith("edge-test; hit;")
    rig.clock.advance(100)  # past the window: a plain revalidation again
    assert "fwd=stale" in (await rig.get("/swr")).headers["cache-status"]


async def test_stale_if_error_when_the_origin_is_down_or_failing(rig_factory, serve) -> None:
    origin = ScriptedOrigin()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    origin_srv = await serve(origin, name="origin", listen=f"127.0.0.1:{port}")
    clock = Clock()
    edge = await serve(build_edge_app(_config(f"http://127.0.0.1:{port}"), "edge-test", clock=clock), name="edge")
    origin.set("/sie", b"kept", headers={"cache-control": "max-age=10, stale-if-error=600"})
    origin.set("/strict", b"strict", headers={"cache-control": "max-age=10, must-revalidate"})
    async with httpx.AsyncClient(timeout=20) as client:
        await client.get(edge.url + "/sie")
        await client.get(edge.url + "/strict")
        clock.advance(20)
        origin.set("/sie", b"broken", status=503)
        failing = await client.get(edge.url + "/sie")
        assert failing.status_code == 200 and failing.content == b"kept"
        assert failing.headers["cache-status"] == "edge-test; fwd=stale; fwd-status=503; detail=stale-if-error; ttl=-10"
        await origin_srv.stop()  # the origin goes away entirely
        down = await client.get(edge.url + "/sie")
        assert down.status_code == 200 and down.content == b"kept"
        assert "detail=stale-if-error" in down.headers["cache-status"]
        strict = await client.get(edge.url + "/strict")
        assert strict.status_code == 502  # must-revalidate: never served stale
        clock.advance(1000)  # past the stale-if-error window
        assert (await client.get(edge.url + "/sie")).status_code == 502


async def test_custom_error_page_and_error_caching(rig_factory) -> None:
    rig: EdgeRig = await rig_factory(error_pages={"404": "/errors/404.html"}, error_ttl=10)
    rig.origin.set("/errors/404.html", b"<h1>Not here</h1>", headers={"content-type": "text/html"})
    missing = await rig.get("/nothing")
    assert missing.status_code == 404
    assert missing.content == b"<h1>Not here</h1>" and missing.headers["content-type"] == "text/html"
    again = await rig.get("/nothing")
    assert again.status_code == 404 and again.content == b"<h1>Not here</h1>"
    assert rig.origin.hits["/nothing"] == 1  # the error is cached for error_ttl
    rig.clock.advance(11)
    await rig.get("/nothing")
    assert rig.origin.hits["/nothing"] == 2


async def test_an_error_page_is_fetched_once_however_many_errors_want_it(rig_factory) -> None:
    rig: EdgeRig = await rig_factory(error_pages={"404": "/errors/404.html"}, error_ttl=10)
    gate = asyncio.Event()
    rig.origin.set("/errors/404.html", b"<h1>Not here</h1>", headers={"content-type": "text/html"}, gate=gate)
    missing = [asyncio.create_task(rig.get(f"/gone-{n}")) for n in range(20)]  # 20 keys, 20 errors at once
    await until(lambda: sum(rig.origin.hits[f"/gone-{n}"] for n in range(20)) == 20)
    await asyncio.sleep(0.2)
    gate.set()
    answers = await asyncio.gather(*missing)
    assert {(r.status_code, r.content) for r in answers} == {(404, b"<h1>Not here</h1>")}
    assert rig.origin.hits["/errors/404.html"] == 1


async def test_brotli_and_gzip_by_accept_encoding_and_origin_coding_passes(rig_factory) -> None:
    rig: EdgeRig = await rig_factory(default_behavior={"compress": True, "default_ttl": 60})
    css = b"body { color: red; }\n" * 300
    rig.origin.set("/s.css", css, headers={"content-type": "text/css"})
    pre = gzip.compress(b"already compressed " * 100)
    rig.origin.set("/pre.js", pre, headers={"content-type": "application/javascript", "content-encoding": "gzip"})
    raw_client = httpx.AsyncClient(timeout=10, headers={"accept-encoding": "br, gzip"})
    async with raw_client:
        for _ in range(2):
            async with raw_client.stream("GET", rig.url + "/s.css") as r:
                body = b"".join([c async for c in r.aiter_raw()])
            assert r.headers["content-encoding"] == "br" and brotli.decompress(body) == css
        async with raw_client.stream("GET", rig.url + "/s.css", headers={"accept-encoding": "gzip"}) as r:
            body = b"".join([c async for c in r.aiter_raw()])
        assert r.headers["content-encoding"] == "gzip" and gzip.decompress(body) == css
        async with raw_client.stream("GET", rig.url + "/pre.js") as r:
            body = b"".join([c async for c in r.aiter_raw()])
        assert r.headers["content-encoding"] == "gzip" and body == pre  # untouched
    assert rig.origin.hits["/s.css"] == 1


async def test_origin_group_fails_over_to_the_secondary(serve) -> None:
    primary, secondary = ScriptedOrigin(), ScriptedOrigin()
    p_srv = await serve(primary, name="primary")
    s_srv = await serve(secondary, name="secondary")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    raw = {
        "origins": {"p": {"url": p_srv.url}, "s": {"url": s_srv.url}, "dead": {"url": dead}},
        "origin_groups": {
            "g": {"primary": "p", "secondary": "s", "failover_statuses": [503]},
            "gd": {"primary": "dead", "secondary": "s"},
        },
        "edges": {"edge-test": {"listen": "127.0.0.1:0"}},
        "distributions": {
            "a": {"domains": ["a.test"], "origin": "g"},
            "b": {"domains": ["b.test"], "origin": "gd"},
        },
    }
    edge = await serve(build_edge_app(parse_config(raw), "edge-test"), name="edge")
    primary.set("/x", b"from primary", status=503)
    secondary.set("/x", b"from secondary")
    async with httpx.AsyncClient(timeout=20) as client:
        a = await client.get(edge.url + "/x", headers={"host": "a.test"})
        b = await client.get(edge.url + "/x", headers={"host": "b.test"})
    assert a.status_code == 200 and a.content == b"from secondary"
    assert b.status_code == 200 and b.content == b"from secondary"
    assert primary.hits["/x"] == 1 and secondary.hits["/x"] == 2


async def test_two_edges_behind_a_parent_cost_the_origin_one_request(serve) -> None:
    origin = ScriptedOrigin()
    origin_srv = await serve(origin, name="origin")
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    raw = {
        "origins": {"o": {"url": origin_srv.url}},
        "edges": {
            "shield": {"listen": f"127.0.0.1:{ports[0]}"},
            "edge-a": {"listen": f"127.0.0.1:{ports[1]}", "parent": "shield"},
            "edge-b": {"listen": f"127.0.0.1:{ports[2]}", "parent": "shield"},
        },
        "distributions": {"site": {"domains": ["site.test"], "origin": "o"}},
    }
    config = parse_config(raw)
    for name, port in (("shield", ports[0]), ("edge-a", ports[1]), ("edge-b", ports[2])):
        await serve(build_edge_app(config, name), name=name, listen=f"127.0.0.1:{port}")
    origin.set("/obj", b"x" * 5000, headers={"cache-control": "max-age=60"})
    async with httpx.AsyncClient(timeout=20, headers={"host": "site.test"}) as client:
        a = await client.get(f"http://127.0.0.1:{ports[1]}/obj")
        b = await client.get(f"http://127.0.0.1:{ports[2]}/obj")
        a2 = await client.get(f"http://127.0.0.1:{ports[1]}/obj")
    assert a.content == b.content == b"x" * 5000
    assert origin.hits["/obj"] == 1
    assert (
        a.headers["cache-status"]
        == "shield; fwd=miss; fwd-status=200; stored, edge-a; fwd=miss; fwd-status=200; stored"
    )
    assert b.headers["cache-status"].startswith("shield; hit;") and b.headers["cache-status"].endswith(
        "edge-b; fwd=miss; fwd-status=200; stored"
    )
    assert a2.headers["cache-status"].startswith("edge-a; hit")
    assert "via" in origin.requests[0][2] and "shield" in origin.requests[0][2]["via"]


async def test_a_request_that_loops_back_is_refused(rig: EdgeRig) -> None:
    looped = await rig.get("/a", headers={"via": "1.1 other (cdn), 1.1 edge-test (cdn)"})
    assert looped.status_code == 508 and "Loop Detected" in looped.text
    assert rig.origin.hits == {}


async def test_range_of_an_object_too_large_to_keep_is_asked_of_the_origin(rig_factory) -> None:
    rig: EdgeRig = await rig_factory(edge={"cache_bytes": 100_000, "max_object_bytes": 1000})
    body = bytes(range(256)) * 100
    rig.origin.set("/huge.bin", body, ranges=True)
    part = await rig.get("/huge.bin", headers={"range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == body[10:20]
    assert part.headers["content-range"] == "bytes 10-19/25600"
    assert rig.origin.requests[-1][2]["range"] == "bytes=10-19"  # the origin sent 10 bytes, not 25600
    whole = await rig.get("/huge.bin")
    assert whole.content == body and "stored" not in whole.headers["cache-status"]


def _config(origin_url: str) -> Any:
    return parse_config(
        {
            "origins": {"o": {"url": origin_url, "connect_timeout": 1, "read_timeout": 2}},
            "edges": {"edge-test": {"listen": "127.0.0.1:0"}},
            "distributions": {"site": {"domains": ["127.0.0.1"], "origin": "o"}},
        }
    )


async def test_a_restarted_edge_keeps_serving_its_disk_cache(serve, tmp_path) -> None:
    origin = ScriptedOrigin()
    origin_srv = await serve(origin, name="origin")
    raw = {
        "origins": {"o": {"url": origin_srv.url}},
        "edges": {
            "edge-test": {
                "listen": "127.0.0.1:0",
                "disk_path": str(tmp_path / "cache"),
                "cache_bytes": 100_000,
                "max_object_bytes": 10_000,
            }
        },
        "distributions": {"site": {"domains": ["127.0.0.1"], "origin": "o"}},
    }
    config = parse_config(raw)
    small, large = b"s" * 500, bytes(range(256)) * 200  # large: over the memory tier's limit
    origin.set("/small", small, headers={"cache-control": "max-age=600"})
    origin.set("/large", large, headers={"cache-control": "max-age=600"})
    first = await serve(build_edge_app(config, "edge-test"), name="edge-1")
    async with httpx.AsyncClient(timeout=20) as client:
        for path in ("/small", "/large"):
            assert "stored" in (await client.get(first.url + path)).headers["cache-status"]
        large_hit = await client.get(first.url + "/large")
        assert large_hit.content == large and "hit" in large_hit.headers["cache-status"]
        await first.stop()  # flushes the disk tier
        second = await serve(build_edge_app(config, "edge-test"), name="edge-2")
        for path, body in (("/small", small), ("/large", large)):
            again = await client.get(second.url + path)
            assert again.content == body and again.headers["cache-status"].startswith("edge-test; hit")
        assert origin.hits["/small"] == origin.hits["/large"] == 1
        await second.stop()
        for f in (tmp_path / "cache").rglob("*"):  # damage every cached file
            if f.is_file():
                f.write_bytes(f.read_bytes()[:-10] + b"corrupted!")
        third = await serve(build_edge_app(config, "edge-test"), name="edge-3")
        for path, body in (("/small", small), ("/large", large)):
            fetched = await client.get(third.url + path)
            assert fetched.content == body and "fwd=miss" in fetched.headers["cache-status"]
        assert origin.hits["/small"] == origin.hits["/large"] == 2


async def test_a_fault_of_the_edge_is_a_500_with_a_message_not_a_dropped_connection(serve: Any) -> None:
    class BrokenStore(MemoryStore):
        def get(self, key: str) -> Any:
            raise RuntimeError("a bug in the store")

    origin = ScriptedOrigin()
    origin.set("/x", b"x")
    served = await serve(origin, name="origin")
    edge = await serve(
        build_edge_app(edge_config(served.url), "edge-test", store=BrokenStore(1 << 20, 1 << 16)), name="edge"
    )
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(edge.url + "/x")
    assert answer.status_code == 500 and "the edge failed" in answer.text
