"""WHEP playback through the edge, as an aiortc viewer sees it."""

from __future__ import annotations

import asyncio

from tests.conftest import until

from .conftest import Stack, next_frame


async def test_viewer_receives_video_and_audio_through_the_edge(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = await make_stack()
    viewer = await stack.watch()
    assert viewer.location.startswith("/whep/demo/")
    await until(lambda: {"video", "audio"} <= set(viewer.tracks), 20.0)
    frames = await viewer.frames("video", 10)
    assert {(f.width, f.height) for f in frames} == {(320, 180)}
    sound = await viewer.frames("audio", 5)
    assert all(f.sample_rate == 48_000 for f in sound)
    assert stack.feeds.requests == 1


async def test_bad_offers_get_clear_errors(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = await make_stack()
    sdp_header = {"content-type": "application/sdp"}
    garbage = await stack.http.post("/whep/demo", content=b"hello there", headers=sdp_header)
    assert garbage.status_code == 400 and "bad SDP offer" in garbage.text
    wrong_type = await stack.http.post("/whep/demo", content=b"v=0\r\n", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415 and "application/sdp" in wrong_type.text
    pc, sdp = await stack.offer_sdp()
    try:
        unknown = await stack.http.post("/whep/nosuch", content=sdp, headers=sdp_header)
        assert unknown.status_code == 404 and "nosuch" in unknown.text
        sending = sdp.replace("a=recvonly", "a=sendonly")
        refused = await stack.http.post("/whep/demo", content=sending, headers=sdp_header)
        assert refused.status_code == 400 and "receive" in refused.text
    finally:
        await pc.close()


async def test_offer_without_h264_is_refused(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = await make_stack()
    pc, sdp = await stack.offer_sdp(("video",))
    try:
        vp8_only = "\r\n".join(
            line
            for line in sdp.split("\r\n")
            if "H264" not in line and "apt=" not in line and "profile-level-id" not in line
        )
        vp8_only = vp8_only.replace(" 99 100 101 102", "").replace(" 101 102 99 100", "")
        response = await stack.http.post("/whep/demo", content=vp8_only, headers={"content-type": "application/sdp"})
        assert response.status_code == 400, response.text
    finally:
        await pc.close()


async def test_cors_preflight_and_no_trickle(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = await make_stack()
    preflight = await stack.http.options(
        "/whep/demo",
        headers={
            "origin": "http://player.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    assert preflight.headers["accept-post"] == "application/sdp"
    viewer = await stack.watch()
    patch = await stack.http.patch(
        viewer.location, content=b"a=candidate", headers={"content-type": "application/trickle-ice-sdpfrag"}
    )
    assert patch.status_code == 405


async def test_delete_ends_the_session(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = await make_stack()
    viewer = await stack.watch(kinds=("video",))
    await until(lambda: "video" in viewer.tracks, 20.0)
    await viewer.frames("video", 3)
    deleted = await stack.http.delete(viewer.location)
    assert deleted.status_code == 200
    track = viewer.tracks["video"]
    for _ in range(500):  # frames already on the way drain, then the track ends
        if await next_frame(track) is None:
            break
    else:
        raise AssertionError("the track did not end after DELETE")
    again = await stack.http.delete(viewer.location)
    assert again.status_code == 404


async def test_two_viewers_share_one_pull_and_one_leaving_does_not_disturb_the_other(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = await make_stack(grace=60)
    first, second = await asyncio.gather(stack.watch(kinds=("video",)), stack.watch(kinds=("video",)))
    await until(lambda: "video" in first.tracks and "video" in second.tracks, 20.0)
    await asyncio.gather(first.frames("video", 5), second.frames("video", 5))
    assert stack.feeds.requests == 1
    live = stack.edge_app.flow.metrics.live  # the edge's metrics count its WebRTC viewers
    assert live.snapshot()["/live/demo"]["webrtc_viewers"] == 2
    assert (await stack.http.delete(first.location)).status_code == 200
    assert live.snapshot()["/live/demo"]["webrtc_viewers"] == 1
    frames = await second.frames("video", 25)  # a second of video after the other left
    assert len({f.pts for f in frames}) == 25
    third = await stack.watch(kinds=("video",))  # joins the running pull
    await until(lambda: "video" in third.tracks, 20.0)
    await third.frames("video", 3)
    assert stack.feeds.requests == 1


async def test_upstream_closes_after_the_last_viewer_leaves(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = await make_stack(grace=0.3)
    viewer = await stack.watch(kinds=("video",))
    await until(lambda: "video" in viewer.tracks, 20.0)
    await viewer.frames("video", 3)
    assert stack.feeds.open == 1
    await stack.http.delete(viewer.location)
    await until(lambda: stack.feeds.open == 0, 20.0)
    again = await stack.watch(kinds=("video",))  # a new pull for the next viewer
    await until(lambda: "video" in again.tracks, 20.0)
    await again.frames("video", 3)
    assert stack.feeds.requests == 2


async def test_origin_going_away_ends_the_sessions(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = await make_stack()
    viewer = await stack.watch(kinds=("video",))
    await until(lambda: "video" in viewer.tracks, 20.0)
    await viewer.frames("video", 3)
    await stack.origin.stop()
    track = viewer.tracks["video"]
    for _ in range(500):
        if await next_frame(track) is None:
            break
    else:
        raise AssertionError("the track did not end when the origin went away")
    pc, sdp = await stack.offer_sdp(("video",))
    try:
        response = await stack.http.post("/whep/demo", content=sdp, headers={"content-type": "application/sdp"})
        assert response.status_code == 502 and "origin" in response.text
    finally:
        await pc.close()


async def test_an_edge_full_of_viewers_says_so(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = await make_stack(webrtc_max_viewers=1)
    await stack.watch(kinds=("video",))
    pc, sdp = await stack.offer_sdp(("video",))
    try:
        response = await stack.http.post("/whep/demo", content=sdp, headers={"content-type": "application/sdp"})
        assert response.status_code == 503 and response.headers["retry-after"]
    finally:
        await pc.close()
