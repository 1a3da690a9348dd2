"""The embedded control plane (no Redis): the API, its token, and three edges following it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import until
from tests.control.conftest import EDGES, UPLOAD_AUTH, WAIT, Cdn

LONG = {"cache-control": "max-age=3600"}


async def warm(cdn: Cdn, *paths: str) -> None:
    """Every edge caches `paths`; the second request is a hit."""
    for edge in EDGES:
        for path in paths:
            await cdn.get(edge, path)
            again = await cdn.get(edge, path)
            assert again.headers["cache-status"].startswith(f"{edge}; hit"), again.headers["cache-status"]


async def test_invalidation_reaches_every_edge_and_after_completed_none_serves_the_old_object(cdn_factory) -> None:
    cdn: Cdn = await cdn_factory()
    cdn.origin.set("/a.html", b"old a", headers=LONG)
    cdn.origin.set("/images/x.png", b"old x", headers=LONG)
    cdn.origin.set("/keep.txt", b"kept", headers=LONG)
    await warm(cdn, "/a.html", "/images/x.png", "/keep.txt")
    cdn.origin.set("/a.html", b"new a", headers=LONG)
    cdn.origin.set("/images/x.png", b"new x", headers=LONG)

    record = await cdn.invalidate(["/a.html", "/images/*"])
    assert record["id"].startswith("I") and record["paths"] == ["/a.html", "/images/*"]
    done = await cdn.completed(record)

    assert set(done["edges"]) == set(EDGES)
    assert all(done["created"] <= e["applied"] <= done["completed"] for e in done["edges"].values())
    for edge in EDGES:
        assert (await cdn.get(edge, "/a.html")).content == b"new a"
        assert (await cdn.get(edge, "/images/x.png")).content == b"new x"
        kept = await cdn.get(edge, "/keep.txt")
        assert kept.headers["cache-status"].startswith(f"{edge}; hit")


async def test_missing_or_wrong_token_is_refused_and_changes_nothing(cdn_factory) -> None:
    cdn: Cdn = await cdn_factory()
    cdn.origin.set("/a.html", b"old", headers=LONG)
    await warm(cdn, "/a.html")
    cdn.origin.set("/a.html", b"new", headers=LONG)

    missing = await cdn.api("POST", "/distributions/site/invalidations", token=None, json={"paths": ["/*"]})
    wrong = await cdn.api("POST", "/distributions/site/invalidations", token="not-the-token", json={"paths": ["/*"]})
    purge = await cdn.api("POST", "/distributions/site/purges", token="x", json={"tags": ["t"]})
    config = await cdn.api("PUT", "/config", token=None, content=b"")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "missing token" in missing.json()["error"]
    assert wrong.status_code == 403 and purge.status_code == 403 and config.status_code == 401

    events = await cdn.api("GET", "/events?edge=probe&after=0&wait=0")
    assert events.json()["events"] == []
    for edge in EDGES:
        hit = await cdn.get(edge, "/a.html")
        assert hit.content == b"old" and hit.headers["cache-status"].startswith(f"{edge}; hit")


async def test_invalid_paths_and_bodies_get_400_with_a_message(cdn_factory) -> None:
    cdn: Cdn = await cdn_factory(start_edges=False)
    cases = {
        "images/x.png": "must start with '/'",
        "/images/*/x.png": "'*' is only allowed as the last character",
        "/a b": "space or a control character",
    }
    for path, message in cases.items():
        resp = await cdn.api("POST", "/distributions/site/invalidations", json={"paths": [path]})
        assert resp.status_code == 400 and message in resp.json()["error"], resp.text
    too_many = await cdn.api("POST", "/distributions/site/invalidations", json={"paths": [f"/{i}" for i in range(6)]})
    assert too_many.status_code == 400 and "too many paths: 6 (at most 5" in too_many.json()["error"]
    empty = await cdn.api("POST", "/distributions/site/invalidations", json={"paths": []})
    assert empty.status_code == 400 and "non-empty list" in empty.json()["error"]
    not_json = await cdn.api("POST", "/distributions/site/invalidations", content=b"{paths")
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    bad_tag = await cdn.api("POST", "/distributions/site/purges", json={"tags": ["two words"]})
    assert bad_tag.status_code == 400 and "no spaces" in bad_tag.json()["error"]
    unknown = await cdn.api("POST", "/distributions/nope/invalidations", json={"paths": ["/a"]})
    assert unknown.status_code == 404 and unknown.json()["error"] == "no distribution named 'nope'"
    missing = await cdn.api("GET", "/distributions/site/invalidations/INOSUCHTHING")
    assert missing.status_code == 404


async def test_tag_purge_removes_tagged_objects_on_every_edge(cdn_factory) -> None:
    cdn: Cdn = await cdn_factory()
    cdn.origin.set("/p/1", b"one v1", headers={**LONG, "surrogate-key": "product-1 catalog"})
    cdn.origin.set("/p/2", b"two v1", headers={**LONG, "cache-tag": "catalog"})
    cdn.origin.set("/about", b"about", headers={**LONG, "surrogate-key": "pages"})
    await warm(cdn, "/p/1", "/p/2", "/about")
    other = {"host": "other.test"}
    for edge in EDGES:
        await cdn.get(edge, "/p/1", headers=other)
    cdn.origin.set("/p/1", b"one v2", headers=LONG)
    cdn.origin.set("/p/2", b"two v2", headers=LONG)

    resp = await cdn.api("POST", "/distributions/site/purges", json={"tags": ["catalog"]})
    assert resp.status_code == 201 and resp.json()["tags"] == ["catalog"]
    await cdn.completed(resp.json(), "purges")

    for edge in EDGES:
        assert (await cdn.get(edge, "/p/1")).content == b"one v2"
        assert (await cdn.get(edge, "/p/2")).content == b"two v2"
        assert (await cdn.get(edge, "/about")).headers["cache-status"].startswith(f"{edge}; hit")
        assert (await cdn.get(edge, "/p/1", headers=other)).content == b"one v1"  # another distribution


async def test_soft_invalidation_keeps_a_stale_copy_for_stale_if_error(cdn_factory) -> None:
    cdn: Cdn = await cdn_factory()
    sie = {"cache-control": "max-age=3600, stale-if-error=600"}
    cdn.origin.set("/soft.txt", b"soft copy", headers=sie)
    cdn.origin.set("/hard.txt", b"hard copy", headers=sie)
    await warm(cdn, "/soft.txt", "/hard.txt")
    cdn.origin.set("/soft.txt", b"broken", status=500)
    cdn.origin.set("/hard.txt", b"broken", status=500)

    await cdn.completed(await cdn.invalidate(["/soft.txt"], soft=True))
    await cdn.completed(await cdn.invalidate(["/hard.txt"]))

    for edge in EDGES:
        soft = await cdn.get(edge, "/soft.txt")
        assert soft.status_code == 200 and soft.content == b"soft copy"
        assert "stale-if-error" in soft.headers["cache-status"]  # it did ask the origin: the copy is stale
        hard = await cdn.get(edge, "/hard.txt")
        assert hard.status_code == 500


async def test_a_put_through_one_edge_invalidates_the_path_on_the_others(cdn_factory) -> None:
    cdn: Cdn = await cdn_factory()
    cdn.origin.set("/doc.txt", b"draft", headers=LONG)
    await warm(cdn, "/doc.txt")
    cdn.origin.set("/doc.txt", b"final", headers=LONG)

    put = await cdn.client.put(cdn.edges["e1"][1].url + "/doc.txt", content=b"final", headers=UPLOAD_AUTH)
    assert put.status_code == 200

    async def everywhere_new() -> bool:
        bodies = [(await cdn.get(edge, "/doc.txt")).content for edge in EDGES]
        return bodies == [b"final"] * 3

    await until(everywhere_new, WAIT, what="the PUT to reach e2 and e3")
    assert cdn.app("e1").sync is not None and cdn.app("e1").sync.applied == []  # it had done it itself


async def test_a_published_config_reaches_running_edges(cdn_factory) -> None:
    cdn: Cdn = await cdn_factory()
    cdn.origin.set("/n.txt", b"new name")
    assert (await cdn.get("e1", "/n.txt", headers={"host": "renamed.test"})).status_code == 421
    text = (
        f'[origins.o]\nurl = "{cdn.config.origins["o"].url}"\n'
        + "".join(f'[edges.{e}]\nlisten = "127.0.0.1:0"\n' for e in EDGES)
        + '[distributions.site]\ndomains = ["renamed.test", "127.0.0.1"]\norigin = "o"\n'
        + "[distributions.site.default_behavior]\ndefault_ttl = 7\n"
    )
    bad = await cdn.api("PUT", "/config", content=text.replace("default_ttl = 7", "default_ttl = -1").encode())
    assert bad.status_code == 400 and "distributions.site.default_behavior.default_ttl" in bad.json()["error"]
    ok = await cdn.api("PUT", "/config", content=text.encode())
    assert ok.status_code == 200

    async def renamed_everywhere() -> bool:
        answers = [await cdn.get(e, "/n.txt", headers={"host": "renamed.test"}) for e in EDGES]
        return all(a.status_code == 200 for a in answers)

    await until(renamed_everywhere, WAIT, what="the new config on every edge")
    hit = await cdn.get("e2", "/n.txt", headers={"host": "renamed.test"})
    assert hit.headers["cache-status"] in ("e2; hit; ttl=7", "e2; hit; ttl=6")
    await asyncio.sleep(0)


async def test_edges_serve_from_cache_while_the_control_process_is_down_and_follow_the_new_one(cdn_factory) -> None:
    cdn: Cdn = await cdn_factory()
    cdn.origin.set("/a.html", b"old", headers=LONG)
    await warm(cdn, "/a.html")

    async def while_down() -> None:
        async def all_noticed() -> bool:
            return all(not cdn.app(e).sync.connected.is_set() for e in EDGES)  # type: ignore[union-attr]

        await until(all_noticed, WAIT, what="every edge to notice the control process is gone")
        for edge in EDGES:
            hit = await cdn.get(edge, "/a.html")
            assert hit.content == b"old" and hit.headers["cache-status"].startswith(f"{edge}; hit")

    await cdn.restart_control(stopped=while_down)
    cdn.origin.set("/a.html", b"new", headers=LONG)
    await cdn.completed(await cdn.invalidate(["/a.html"]))
    for edge in EDGES:
        assert (await cdn.get(edge, "/a.html")).content == b"new"


async def test_an_edge_stopped_during_an_invalidation_applies_it_once_when_it_is_back(cdn_factory) -> None:
    cdn: Cdn = await cdn_factory()
    cdn.origin.set("/a.html", b"old", headers=LONG)
    await warm(cdn, "/a.html")
    await cdn.stop_edge("e3")  # its disk tier keeps /a.html across the restart
    cdn.origin.set("/a.html", b"new", headers=LONG)

    record = await cdn.invalidate(["/a.html"])
    url = f"/distributions/site/invalidations/{record['id']}"

    async def others_applied() -> bool:
        edges = (await cdn.api("GET", url)).json()["edges"]
        return edges["e1"]["applied"] is not None and edges["e2"]["applied"] is not None

    await until(others_applied, WAIT, what="e1 and e2 to apply it")
    assert (await cdn.api("GET", url)).json()["status"] == "InProgress"

    back = await cdn.start_edge("e3")
    await cdn.completed(record)
    assert back.sync is not None and back.sync.applied == [record["id"]]
    assert (await cdn.get("e3", "/a.html")).content == b"new"
    await cdn.stop_edge("e3")
    again = await cdn.start_edge("e3")
    later = await cdn.completed(await cdn.invalidate(["/other.html"]))
    assert again.sync is not None and again.sync.applied == [later["id"]]


async def test_a_journal_keeps_invalidations_and_edge_positions_across_a_control_restart(cdn_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cdn: Cdn = await cdn_factory(control={"journal": "control/journal.jsonl"})
    cdn.origin.set("/a.html", b"old", headers=LONG)
    await warm(cdn, "/a.html")
    before = await cdn.completed(await cdn.invalidate(["/a.html"]))
    await cdn.stop_edge("e3")  # down while the control process restarts and a new one is made
    await cdn.restart_control()
    # the restarted process still knows the finished invalidation, with each edge's time
    after = (await cdn.api("GET", f"/distributions/site/invalidations/{before['id']}")).json()
    assert after["status"] == "Completed" and after == before
    assert (tmp_path / "control" / "journal.jsonl").exists()
    fresh = await cdn.invalidate(["/b.html"])
    restarted = await cdn.start_edge("e3")
    await cdn.completed(fresh)
    # e3 picks up only what it missed: the old invalidation is not applied a second time
    assert restarted.sync is not None and restarted.sync.applied == [fresh["id"]]


def test_a_short_api_token_is_refused(tmp_path: Path) -> None:
    from tests.control.conftest import make_config
    from web_dist.control import build_control_app

    config = make_config("http://127.0.0.1:9", {}, tmp_path)
    with pytest.raises(ValueError, match="at least 16 characters"):
        build_control_app(config, token="short-token")  # as from $CDN_CONTROL_TOKEN, which the file cannot check
