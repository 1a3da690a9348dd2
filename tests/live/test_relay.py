"""The live relay with real servers: a test-pattern media origin that counts its requests, a
streaming distribution's edges before it, and LL-HLS viewers following the stream."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.conftest import until
from tests.origin_media import hls

from .conftest import ADMIN_TOKEN, PLAYLIST, LiveRig
from .viewer import Viewer, contiguous

FOLDER = PLAYLIST.rsplit("/", 1)[0] + "/"


async def _live(rig: LiveRig, edge: str = "edge-a", segments: int = 2) -> hls.Playlist:
    http = rig.viewer_client(200)

    async def ready() -> bool:
        response = await http.get(rig.url(edge) + PLAYLIST)
        return response.status_code == 200 and len(hls.parse(response.text).full_segments) >= segments

    await until(ready, 15.0)
    return hls.parse((await http.get(rig.url(edge) + PLAYLIST)).text)


async def test_many_viewers_cost_the_origin_one_request_per_object(make_live) -> None:  # type: ignore[no-untyped-def]
    rig: LiveRig = await make_live()
    await _live(rig)
    viewers = [Viewer(rig.viewer_client(n), rig.url("edge-a")) for n in range(12)]
    await asyncio.gather(*(v.follow(2.5) for v in viewers))

    for viewer in viewers:
        assert len(viewer.parts) >= 5 and contiguous(viewer.parts), viewer.parts
    media = rig.origin.media_hits()
    assert media and set(media.values()) == {1}, {p: n for p, n in media.items() if n > 1}
    # one upstream request per held reload: never two at once for one (msn, part); a key asked
    # again after its playlist's TTL (about a part) is a newer playlist, fetched again
    reloads = {p: n for p, n in rig.origin.peak.items() if "_HLS_msn" in p}
    assert reloads and set(reloads.values()) == {1}, reloads
    asked = sum(len(v.parts) for v in viewers)
    assert sum(rig.origin.playlist_hits().values()) < asked / 4, "the viewers' reloads were shared"
    # every viewer got the same bytes for the same part
    shared = set.intersection(*(set(v.bodies) for v in viewers)) - {""}
    assert shared and all(len({v.bodies[uri] for v in viewers}) == 1 for uri in shared)

    admin = await rig.admin("edge-a")
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        live = (await http.get(admin.url + "/metrics.json")).json()["live"]["/live/demo"]
        prometheus = (await http.get(admin.url + "/metrics")).text
    assert live["viewers"] == 13  # the twelve, and the client that waited for the stream
    assert live["origin_requests_per_object"]["part"] == 1.0
    assert live["egress_bytes"] >= sum(len(b) for v in viewers for b in v.bodies.values())
    assert 'cdn_edge_live_viewers{stream="/live/demo"} 13.0' in prometheus
    assert re.search(r'cdn_edge_live_origin_requests_total\{kind="part",stream="/live/demo"\} [1-9]', prometheus)


async def test_held_blocking_reloads_are_answered_together_from_one_origin_request(make_live) -> None:  # type: ignore[no-untyped-def]
    rig: LiveRig = await make_live()
    await _live(rig)
    now = hls.parse((await rig.viewer_client(99).get(rig.origin_server.url + PLAYLIST)).text)
    msn, _ = now.last_part()
    ahead = f"{PLAYLIST}?_HLS_msn={msn + 1}&_HLS_part=2"  # about a second from now: held
    clients = [rig.viewer_client(n) for n in range(10)]
    answers = await asyncio.gather(*(c.get(rig.url("edge-a") + ahead) for c in clients))

    assert [a.status_code for a in answers] == [200] * 10
    assert len({a.text for a in answers}) == 1, "one upstream answer for all"
    # held until the part existed: the answer lists a part the origin had not made when asked
    assert hls.parse(answers[0].text).last_part() >= (msn + 1, 2) > now.last_part()
    assert rig.origin.hits[ahead] == 1
    collapsed = [a for a in answers if "collapsed" in a.headers["cache-status"]]
    assert len(collapsed) == 9, [a.headers["cache-status"] for a in answers]


async def test_preload_hint_part_streams_to_viewers_while_the_origin_makes_it(make_live) -> None:  # type: ignore[no-untyped-def]
    # one-second parts, so "before the part is complete" is a wide, unmistakable window
    rig: LiveRig = await make_live(segment_seconds=2.0, part_seconds=1.0, window_seconds=8.0)
    playlist = await _live(rig, segments=1)
    hint = playlist.preload_hint
    assert hint
    url = rig.url("edge-a") + FOLDER + hint
    origin = httpx.AsyncClient(base_url=rig.origin_server.url, timeout=30)
    rig.clients.append(origin)
    first_bytes_before_listed: list[bool] = []

    async def watch(client: httpx.AsyncClient) -> bytes:
        body = b""
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                if not body:  # the first bytes: is the part still being made at the origin?
                    listed = hls.parse((await origin.get(PLAYLIST)).text)
                    done = {p.uri for s in listed.segments for p in s.parts}
                    first_bytes_before_listed.append(hint not in done)
                body += chunk
        return body

    bodies = await asyncio.gather(*(watch(rig.viewer_client(n)) for n in range(5)))

    assert any(first_bytes_before_listed), "viewers got the part's first bytes before it was complete"
    complete = (await origin.get(FOLDER + hint)).content
    assert all(body == complete for body in bodies) and len(complete) > 1000
    assert rig.origin.hits[FOLDER + hint] == 2  # the edge's one request, and ours just now


async def test_edges_behind_a_parent_cost_the_origin_one_request_per_object(make_live) -> None:  # type: ignore[no-untyped-def]
    rig: LiveRig = await make_live({"edge-p": {}, "edge-a": {"parent": "edge-p"}, "edge-b": {"parent": "edge-p"}})
    await _live(rig)
    viewers = [Viewer(rig.viewer_client(n), rig.url("edge-a" if n % 2 else "edge-b")) for n in range(8)]
    await asyncio.gather(*(v.follow(2.5) for v in viewers))

    assert all(len(v.parts) >= 5 and contiguous(v.parts) for v in viewers)
    media = rig.origin.media_hits()
    assert media and set(media.values()) == {1}, {p: n for p, n in media.items() if n > 1}
    reloads = {p: n for p, n in rig.origin.peak.items() if "_HLS_msn" in p}
    assert reloads and set(reloads.values()) == {1}, reloads
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        parent = (await http.get((await rig.admin("edge-p")).url + "/metrics.json")).json()["live"]["/live/demo"]
        child = (await http.get((await rig.admin("edge-a")).url + "/metrics.json")).json()["live"]["/live/demo"]
    assert parent["viewers"] == 0 and parent["egress_bytes"] > 0, "child edges are not viewers"
    assert child["viewers"] == 5  # its four, and the client that waited for the stream


async def test_edge_restart_mid_stream_keeps_playback_going(make_live) -> None:  # type: ignore[no-untyped-def]
    rig: LiveRig = await make_live()
    await _live(rig)
    viewer = Viewer(rig.viewer_client(1), rig.url("edge-a"))
    playing = asyncio.create_task(viewer.follow(6.0))
    await until(lambda: _at_least(viewer, 4), 15.0)
    await rig.stop_edge("edge-a")
    at_restart = len(viewer.parts)
    await rig.start_edge("edge-a")  # a new process would start empty; so does this edge
    await playing

    assert len(viewer.parts) >= at_restart + 4, "playback went on after the restart"
    assert contiguous(viewer.parts), f"no part skipped: {viewer.parts}"


async def _at_least(viewer: Viewer, parts: int) -> bool:
    return len(viewer.parts) >= parts


async def test_the_end_of_the_stream_reaches_viewers_through_the_edge(make_live) -> None:  # type: ignore[no-untyped-def]
    from tests.origin_media.conftest import finish, start_publisher

    rig: LiveRig = await make_live(streams={"cam": {"source": "rtmp", "key": "k3y"}})
    port = rig.app.state.rtmp.port
    publisher = await start_publisher(f"rtmp://127.0.0.1:{port}/live/k3y", 3.0)
    playlist = "/live/cam/source/index.m3u8"
    http = rig.viewer_client(1)

    async def started() -> bool:
        response = await http.get(rig.url("edge-a") + playlist)
        return response.status_code == 200 and bool(hls.parse(response.text).segments)

    await until(started, limit=20)
    viewer = Viewer(rig.viewer_client(2), rig.url("edge-a"), playlist)
    await viewer.follow(30.0)
    assert await finish(publisher) == 0
    assert viewer.ended, "EXT-X-ENDLIST came through the edge to the viewer"
    assert contiguous(viewer.parts) and viewer.parts

    async def plain_reload_ended() -> bool:  # a cached live playlist gives way within its TTL
        response = await http.get(rig.url("edge-a") + playlist)
        return "#EXT-X-ENDLIST" in response.text

    await until(plain_reload_ended, limit=3)
