"""An LL-HLS viewer for the tests: blocking playlist reloads, every new part fetched, the
preload hint requested before the part exists, and retries as a player makes them."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.origin_media import hls

PLAYLIST = "/live/demo/source/index.m3u8"


class Viewer:
    def __init__(self, http: httpx.AsyncClient, base: str, playlist: str = PLAYLIST, *, hints: bool = True) -> None:
        self.http = http
        self.base = base
        self.folder = base + playlist.rsplit("/", 1)[0] + "/"
        self.playlist_url = base + playlist
        self.hints = hints
        self.parts: list[tuple[int, int]] = []  # (msn, part index) fetched, in order
        self.bodies: dict[str, bytes] = {}
        self.ended = False
        self.failures = 0  # requests that got no answer (a player retries them)
        self._last: tuple[int, int] | None = None
        self._hinted: dict[str, asyncio.Task[bytes | None]] = {}

    async def follow(self, seconds: float) -> None:
        """Play for `seconds` or until the stream ends."""
        until = time.monotonic() + seconds
        want: tuple[int, int] | None = None
        try:
            while time.monotonic() < until and not self.ended:
                query = "" if want is None else f"?_HLS_msn={want[0]}&_HLS_part={want[1]}"
                text = await self._get_text(self.playlist_url + query)
                if text is None:
                    want = None if self._last is None else want
                    continue
                playlist = hls.parse(text)
                await self._on_playlist(playlist)
                self.ended = playlist.ended
                if self._last is not None:
                    want = (self._last[0], self._last[1] + 1)
        finally:
            for task in self._hinted.values():
                task.cancel()

    async def _on_playlist(self, playlist: hls.Playlist) -> None:
        if self._last is None:  # join at the live edge: the newest part first
            msn, index = playlist.last_part()
            self._last = (msn, index - 1)
            first = next((s for s in playlist.segments if s.msn == msn), None)
            if first is not None and first.map_uri:
                self.bodies[first.map_uri] = await self._fetch(first.map_uri)
        for segment in playlist.segments:
            for index, part in enumerate(segment.parts):
                if (segment.msn, index) > self._last:
                    self.bodies[part.uri] = await self._part(part.uri)
                    self.parts.append((segment.msn, index))
                    self._last = (segment.msn, index)
        hint = playlist.preload_hint
        if self.hints and hint and hint not in self._hinted and hint not in self.bodies:
            self._hinted[hint] = asyncio.create_task(self._try(hint))

    async def _part(self, uri: str) -> bytes:
        task = self._hinted.pop(uri, None)
        body = await task if task is not None else None
        return body if body is not None else await self._fetch(uri)

    async def _fetch(self, uri: str) -> bytes:
        for _ in range(100):
            body = await self._try(uri)
            if body is not None:
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"{uri}: no answer after 100 tries")

    async def _try(self, uri: str) -> bytes | None:
        try:
            response = await self.http.get(self.folder + uri)
        except httpx.HTTPError:
            self.failures += 1
            return None
        return response.content if response.status_code == 200 else None

    async def _get_text(self, url: str) -> str | None:
        try:
            response = await self.http.get(url)
        except httpx.HTTPError:
            self.failures += 1
            await asyncio.sleep(0.05)
            return None
        if response.status_code != 200:
            await asyncio.sleep(0.1)
            return None
        return response.text


def contiguous(parts: list[tuple[int, int]]) -> bool:
    """Every part from the first to the last, none skipped: each is the next index of its
    segment or the first of the next segment."""
    return all(b in ((a[0], a[1] + 1), (a[0] + 1, 0)) for a, b in zip(parts, parts[1:], strict=False))
