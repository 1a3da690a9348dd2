"""The player origin on its own socket: what it answers an edge (no browser needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from streaming.player_app import build_player_app
from web_dist.cli import main as cdn
from web_dist.config.player import DEFAULT_HLS_JS, PlayerSettings


async def get(server: Any, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.get(path, headers=headers)


async def test_pages_scripts_and_hls_js_carry_validators_and_lifetimes(serve: Callable[..., Any]) -> None:
    server = await serve(build_player_app(), name="player")
    page = await get(server, "/watch/cam-1")
    assert page.status_code == 200 and "<title>cam-1 · live</title>" in page.text
    assert page.headers["cache-control"] == "public, max-age=60"
    again = await get(server, "/watch/cam-1", **{"if-none-match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert (await get(server, "/watch/cam-2")).headers["etag"] != page.headers["etag"]
    script = await get(server, "/player/watch.js")
    assert script.headers["content-type"].startswith("text/javascript") and "playerStats" in script.text
    listing = await get(server, "/")
    assert "/player/streams.js" in listing.text
    if DEFAULT_HLS_JS.is_dir():
        library = await get(server, "/player/hls.js")
        assert library.status_code == 200 and library.headers["cache-control"] == "public, max-age=86400"


@pytest.mark.parametrize(
    "path",
    [
        "/watch/a%20b",
        "/watch/..%2F..%2Fetc",
        "/watch/" + "x" * 65,
        "/player/../player_app.py",
        "/player/nope.js",
        "/player/watch.html",
    ],
)
async def test_what_is_not_a_page_is_a_404_with_a_reason(serve: Callable[..., Any], path: str) -> None:
    server = await serve(build_player_app(), name="player")
    response = await get(server, path)
    assert response.status_code == 404 and response.text.strip(), path


async def test_missing_hls_js_says_how_to_install_it(serve: Callable[..., Any], tmp_path: Path) -> None:
    server = await serve(build_player_app(PlayerSettings(hls_js=tmp_path)), name="player")
    response = await get(server, "/player/hls.js")
    assert response.status_code == 503 and "make deps" in response.text
    assert (await get(server, "/player/watch.js")).status_code == 200  # the rest still works


def test_a_player_origin_with_an_unknown_option_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cdn.toml"
    config.write_text(
        '[origins.p]\nkind = "player"\nlisten = "127.0.0.1:0"\noptions = { hls = "x" }\n'
        '[edges.e]\nlisten = "127.0.0.1:0"\n'
        '[distributions.d]\nkind = "streaming"\ndomains = ["live.localhost"]\norigin = "p"\n'
    )
    assert cdn(["origin", "--config", str(config), "--name", "p"]) == 2
    assert (
        "origins.p.options.hls: unknown option; did you mean 'hls_js'? (known: hls_js, dash_js)"
        in capsys.readouterr().err
    )
