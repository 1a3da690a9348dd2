"""Locked origins: the edges send the origin's access secret, and the web, media and player
origins refuse (403) whoever does not, so nobody reaches them around the CDN. A streaming
distribution never hands viewers the media origin's MPEG-TS feed (the edges' WebRTC relay's)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.app import build_edge_app
from origin_media.app import MediaOriginSettings, build_media_origin_app
from tests.edge.conftest import ScriptedOrigin
from web_dist.config import ORIGIN_SECRET_HEADER, ConfigError, parse_config
from web_dist.origin import build_origin_app

SECRET = "origin-secret-for-tests-0123"
TOKEN = "upload-token-for-tests-0123"


def locked_edge_config(origin_url: str, **dist: Any) -> Any:
    raw = {
        "origins": {"o": {"url": origin_url, "access_secret": SECRET}},
        "edges": {"edge-test": {"listen": "127.0.0.1:0"}},
        "distributions": {
            "site": {
                "domains": ["127.0.0.1"],
                "origin": "o",
                "upload_token": TOKEN,
                "behaviors": [{"path": "/up/*", "methods": ["GET", "HEAD", "PUT", "DELETE"]}],
                **dist,
            }
        },
    }
    return parse_config(raw)


async def test_the_web_origin_answers_the_edge_and_refuses_everyone_else(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / "up").mkdir()
    (tmp_path / "page.html").write_bytes(b"<p>hi</p>")
    origin = await serve(build_origin_app(tmp_path, access_secret=SECRET), name="origin")
    edge = await serve(build_edge_app(locked_edge_config(origin.url), "edge-test"), name="edge")
    async with httpx.AsyncClient(timeout=20) as client:
        direct = await client.get(origin.url + "/page.html")
        assert direct.status_code == 403 and "<p>" not in direct.text
        wrong = await client.get(origin.url + "/page.html", headers={ORIGIN_SECRET_HEADER: "x" * len(SECRET)})
        assert wrong.status_code == 403
        put = await client.put(origin.url + "/up/sneaky.txt", content=b"around the CDN")
        assert put.status_code == 403 and not (tmp_path / "up" / "sneaky.txt").exists()
        through = await client.get(edge.url + "/page.html")
        assert through.status_code == 200 and through.content == b"<p>hi</p>"
        upload = await client.put(
            edge.url + "/up/ok.txt", content=b"via the edge", headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert upload.status_code in (200, 201) and (tmp_path / "up" / "ok.txt").read_bytes() == b"via the edge"
        assert ORIGIN_SECRET_HEADER not in through.headers


async def test_the_media_origin_refuses_viewers_but_not_whip_publishers(serve: Callable[..., Any]) -> None:
    origin = await serve(build_media_origin_app(MediaOriginSettings(), access_secret=SECRET), name="media")
    async with httpx.AsyncClient(timeout=20) as client:
        assert (await client.get(origin.url + "/streams")).status_code == 403
        assert (await client.get(origin.url + "/live/cam/stream.ts")).status_code == 403
        allowed = await client.get(origin.url + "/streams", headers={ORIGIN_SECRET_HEADER: SECRET})
        assert allowed.status_code == 200
        whip = await client.post(origin.url + "/whip/cam", content=b"v=0", headers={"content-type": "application/sdp"})
        assert whip.status_code != 403  # the publisher's own bearer key is the WHIP door's lock


async def test_the_edge_never_proxies_the_mpeg_ts_feed_to_viewers(serve: Callable[..., Any]) -> None:
    origin = ScriptedOrigin()
    origin.set("/live/cam/stream.ts", b"\x47" * 188)
    origin.set("/live/cam/master.m3u8", b"#EXTM3U\n")
    origin_srv = await serve(origin, name="origin")
    raw = {
        "origins": {"m": {"kind": "media", "url": origin_srv.url, "access_secret": SECRET}},
        "edges": {"edge-test": {"listen": "127.0.0.1:0"}},
        "distributions": {"live": {"kind": "streaming", "domains": ["127.0.0.1"], "origin": "m"}},
    }
    edge = await serve(build_edge_app(parse_config(raw), "edge-test"), name="edge")
    async with httpx.AsyncClient(timeout=20) as client:
        feed = await client.get(edge.url + "/live/cam/stream.ts")
        assert feed.status_code == 403 and "MPEG-TS feed" in feed.text
        encoded = await client.get(edge.url + "/live/cam/stream%2Ets")
        assert encoded.status_code in (403, 404) and encoded.content != b"\x47" * 188
        assert (await client.get(edge.url + "/live/cam/master.m3u8")).status_code == 200
    assert "/live/cam/stream.ts" not in origin.hits
    assert origin.requests[0][2][ORIGIN_SECRET_HEADER] == SECRET  # every origin request carries it


def test_secrets_come_from_the_file_or_the_environment_and_must_be_long(tmp_path: Path) -> None:
    def load(origin: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
        raw = {
            "origins": {"o": {"url": "http://127.0.0.1:9", **origin}},
            "edges": {"e": {"listen": "127.0.0.1:0"}},
            "distributions": {"d": {"domains": ["localhost"], "origin": "o"}},
        }
        return parse_config(raw, tmp_path / "cdn.toml", environ or {})

    assert load({"access_secret_env": "S"}, {"S": SECRET}).origins["o"].access_secret == SECRET
    assert SECRET not in repr(load({"access_secret": SECRET}).origins["o"])
    with pytest.raises(ConfigError, match=r"origins\.o\.access_secret: must be at least 16 characters"):
        load({"access_secret": "short"})
    with pytest.raises(ConfigError, match=r"origins\.o\.access_secret_env: the environment variable S is not set"):
        load({"access_secret_env": "S"})
