"""DASH through an edge: the MPD lives about a part (like a playlist), its segments are the
immutable objects the HLS viewers share."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

from tests.conftest import until

from .conftest import LiveRig

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
MPD = "/live/demo/manifest.mpd"


async def test_an_mpd_through_an_edge_is_cached_about_a_part_and_names_what_it_serves(make_live) -> None:  # type: ignore[no-untyped-def]
    rig: LiveRig = await make_live()
    http = rig.viewer_client(1)

    async def ready() -> bool:
        return (await http.get(rig.url("edge-a") + MPD)).status_code == 200

    await until(ready, 15.0)
    before = rig.origin.hits[MPD]
    answers = await asyncio.gather(*(rig.viewer_client(n).get(rig.url("edge-a") + MPD) for n in range(2, 12)))
    assert {a.status_code for a in answers} == {200}
    assert rig.origin.hits[MPD] - before <= 1, "ten viewers within a part cost one MPD request at most"

    async def refreshed() -> bool:  # past the 0.25 s TTL the edge asks again: the MPD moves on
        await http.get(rig.url("edge-a") + MPD)
        return rig.origin.hits[MPD] > before + 1

    await until(refreshed, limit=5)
    root = ET.fromstring(answers[0].text)
    template = root.find(".//d:SegmentTemplate", NS)
    assert template is not None
    number = int(template.get("startNumber", "0"))
    media = template.get("media", "").replace("$Number$", str(number))
    init = template.get("initialization", "")
    assert "/video/" in media and "/video/" in init  # one-track views (dash.js plays no muxed ones)
    for uri in (init, media):
        response = await http.get(f"{rig.url('edge-a')}/live/demo/{uri}")
        assert response.status_code == 200, uri
        again = await rig.viewer_client(20).get(f"{rig.url('edge-a')}/live/demo/{uri}")
        assert again.content == response.content and "hit" in again.headers["cache-status"], uri
        assert rig.origin.hits[f"/live/demo/{uri}"] == 1, "the edge caches a view like any segment"
