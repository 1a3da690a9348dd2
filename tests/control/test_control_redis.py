"""The control plane over a real redis-server: edges read the stream themselves, catch up after
being down, ride out a Redis restart while serving from cache."""

from __future__ import annotations

import pytest

from tests.conftest import until
from tests.control.conftest import EDGES, UPLOAD_AUTH, WAIT, Cdn, RedisServer

LONG = {"cache-control": "max-age=3600"}


async def warm(cdn: Cdn, path: str, edges: tuple[str, ...] = EDGES) -> None:
    for edge in edges:
        await cdn.get(edge, path)
        assert (await cdn.get(edge, path)).headers["cache-status"].startswith(f"{edge}; hit")


async def redis_cdn(cdn_factory, redis_server: RedisServer) -> Cdn:
    cdn: Cdn = await cdn_factory({"redis_url": redis_server.url, "redis_prefix": "t"})
    return cdn


async def test_invalidation_through_redis_reaches_three_edges(cdn_factory, redis_server) -> None:
    cdn = await redis_cdn(cdn_factory, redis_server)
    cdn.origin.set("/a.html", b"old", headers=LONG)
    await warm(cdn, "/a.html")
    cdn.origin.set("/a.html", b"new", headers=LONG)

    done = await cdn.completed(await cdn.invalidate(["/a.html"]))

    assert all(done["edges"][e]["applied"] is not None for e in EDGES)
    for edge in EDGES:
        assert (await cdn.get(edge, "/a.html")).content == b"new"
    health = await cdn.client.get(cdn.control_url + "/health")
    assert health.json() == {"status": "ok", "store": "redis"}


async def test_an_edge_stopped_during_an_invalidation_catches_up_once_on_restart(cdn_factory, redis_server) -> None:
    cdn = await redis_cdn(cdn_factory, redis_server)
    cdn.origin.set("/a.html", b"old", headers=LONG)
    await warm(cdn, "/a.html")
    await cdn.stop_edge("e3")  # its disk tier keeps /a.html across the restart
    cdn.origin.set("/a.html", b"new", headers=LONG)

    record = await cdn.invalidate(["/a.html"])

    async def others_applied() -> bool:
        body = (await cdn.api("GET", f"/distributions/site/invalidations/{record['id']}")).json()
        return body["edges"]["e1"]["applied"] is not None and body["edges"]["e2"]["applied"] is not None

    await until(others_applied, WAIT, what="e1 and e2 to apply it")
    pending = (await cdn.api("GET", f"/distributions/site/invalidations/{record['id']}")).json()
    assert pending["status"] == "InProgress" and pending["edges"]["e3"]["applied"] is None

    restarted = await cdn.start_edge("e3")
    await cdn.completed(record)
    assert restarted.sync is not None and restarted.sync.applied == [record["id"]]
    assert (await cdn.get("e3", "/a.html")).content == b"new"

    # Once: a second restart does not apply it again (a newer invalidation shows the edge read on).
    await cdn.stop_edge("e3")
    again = await cdn.start_edge("e3")
    later = await cdn.completed(await cdn.invalidate(["/other.html"]))
    assert again.sync is not None and again.sync.applied == [later["id"]]


@pytest.mark.parametrize("redis_server", [True], indirect=True)  # appendonly: the stream survives
async def test_redis_restarted_mid_run_edges_serve_from_cache_and_reconnect(cdn_factory, redis_server) -> None:
    cdn = await redis_cdn(cdn_factory, redis_server)
    cdn.origin.set("/a.html", b"old", headers=LONG)
    await warm(cdn, "/a.html")

    redis_server.stop()

    async def all_noticed() -> bool:
        return all(cdn.app(e).sync is not None and not cdn.app(e).sync.connected.is_set() for e in EDGES)

    await until(all_noticed, WAIT, what="every edge to notice Redis is gone")
    for edge in EDGES:
        hit = await cdn.get(edge, "/a.html")
        assert hit.status_code == 200 and hit.headers["cache-status"].startswith(f"{edge}; hit")
    down = await cdn.api("POST", "/distributions/site/invalidations", json={"paths": ["/a.html"]})
    assert down.status_code == 503 and "unavailable" in down.json()["error"]

    redis_server.start()
    cdn.origin.set("/a.html", b"new", headers=LONG)

    async def all_back() -> bool:
        return all(cdn.app(e).sync is not None and cdn.app(e).sync.connected.is_set() for e in EDGES)

    await until(all_back, WAIT, what="every edge to reconnect")
    await cdn.completed(await cdn.invalidate(["/a.html"]))
    for edge in EDGES:
        assert (await cdn.get(edge, "/a.html")).content == b"new"


async def test_tag_purge_and_config_push_through_redis(cdn_factory, redis_server) -> None:
    cdn = await redis_cdn(cdn_factory, redis_server)
    cdn.origin.set("/p/1", b"v1", headers={**LONG, "surrogate-key": "product-1"})
    await warm(cdn, "/p/1")
    cdn.origin.set("/p/1", b"v2", headers=LONG)
    purge = await cdn.api("POST", "/distributions/site/purges", json={"tags": ["product-1"]})
    assert purge.status_code == 201
    await cdn.completed(purge.json(), "purges")
    for edge in EDGES:
        assert (await cdn.get(edge, "/p/1")).content == b"v2"

    text = (
        f'[origins.o]\nurl = "{cdn.config.origins["o"].url}"\n'
        + "".join(f'[edges.{e}]\nlisten = "127.0.0.1:0"\n' for e in EDGES)
        + '[distributions.site]\ndomains = ["renamed.test"]\norigin = "o"\n'
    )
    assert (await cdn.api("PUT", "/config", content=text.encode())).status_code == 200

    async def renamed_everywhere() -> bool:
        answers = [await cdn.get(e, "/p/1", headers={"host": "renamed.test"}) for e in EDGES]
        return all(a.status_code == 200 for a in answers)

    await until(renamed_everywhere, WAIT, what="the pushed config on every edge")
    # An edge started later with the old file takes the published config from Redis at once.
    await cdn.stop_edge("e2")
    await cdn.start_edge("e2")
    assert (await cdn.get("e2", "/p/1", headers={"host": "site.test"})).status_code == 421


async def test_a_put_through_one_edge_reaches_the_others_through_redis(cdn_factory, redis_server) -> None:
    cdn = await redis_cdn(cdn_factory, redis_server)
    cdn.origin.set("/doc.txt", b"draft", headers=LONG)
    await warm(cdn, "/doc.txt")
    cdn.origin.set("/doc.txt", b"final", headers=LONG)
    assert (
        await cdn.client.put(cdn.edges["e2"][1].url + "/doc.txt", content=b"final", headers=UPLOAD_AUTH)
    ).status_code == 200

    async def everywhere_new() -> bool:
        return [(await cdn.get(e, "/doc.txt")).content for e in EDGES] == [b"final"] * 3

    await until(everywhere_new, WAIT, what="the PUT to reach e1 and e3")
