"""HTTP side of recordings: `/recordings/STREAM` (JSON list), each recording's playlists and files.

GET /recordings/STREAM                         {"recordings": [{id, start, end, duration, closed,
                                                playlist, renditions}]}
GET /recordings/STREAM/ID/master.m3u8          multivariant: every rendition recorded
GET /recordings/STREAM/ID/RENDITION/index.m3u8 EVENT while recording, VOD (ENDLIST) once closed
GET /recordings/STREAM/ID/RENDITION/seg7.m4s   the files on disk (and init1.mp4)
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .playlist import format_date, render_multivariant
from .recording import Recorder, RecordingView, recording_variants, render_recording
from .routes import IMMUTABLE, M3U8, not_found

CLOSED_PLAYLIST = "public, max-age=86400"  # a VOD playlist never changes
_FILE = re.compile(r"^(init\d+\.mp4|seg\d+\.m4s)$")


class RecordingRoutes:
    def __init__(self, recorders: Mapping[str, Recorder]) -> None:
        self.recorders = recorders

    async def list(self, request: Request) -> Response:
        name = request.path_params["stream"]
        recorder = self.recorders.get(name)
        if recorder is None:
            return not_found("recorded stream")
        body = [
            {
                "id": view.id,
                "start": format_date(view.start),
                "end": format_date(view.end),
                "duration": round(view.duration, 3),
                "closed": view.closed,
                "segments": len(view.segments),
                "playlist": f"/recordings/{name}/{view.id}/master.m3u8",
                "renditions": {r: f"/recordings/{name}/{view.id}/{r}/index.m3u8" for r in view.renditions},
            }
            for view in recorder.recordings()
        ]
        return JSONResponse({"stream": name, "recordings": body}, headers={"Cache-Control": "no-store"})

    def _view(self, request: Request) -> RecordingView | None:
        recorder = self.recorders.get(request.path_params["stream"])
        return recorder.recording(request.path_params["recording"]) if recorder else None

    async def multivariant(self, request: Request) -> Response:
        view = self._view(request)
        if view is None:
            return not_found("recording")
        # BANDWIDTH grows with the recording's peak while it is made
        return Response(render_multivariant(recording_variants(view)), headers=_playlist_headers(view))

    async def playlist(self, request: Request) -> Response:
        view = self._view(request)
        rendition = request.path_params["rendition"]
        if view is None or rendition not in view.renditions:
            return not_found("recording")
        return Response(render_recording(view, rendition), headers=_playlist_headers(view))

    async def file(self, request: Request) -> Response:
        recorder = self.recorders.get(request.path_params["stream"])
        view = self._view(request)
        name, rendition = request.path_params["name"], request.path_params["rendition"]
        # the rendition must be one recorded: a name from the config, never a path of the client's
        if recorder is None or view is None or not _FILE.match(name) or rendition not in view.renditions:
            return not_found("object")
        try:  # file I/O off the event loop
            data = await asyncio.to_thread(recorder.path(view.id, rendition, name).read_bytes)
        except OSError:
            return not_found("object")
        return Response(data, media_type="video/mp4", headers={"Cache-Control": IMMUTABLE})


def _playlist_headers(view: RecordingView) -> dict[str, str]:
    return {"Content-Type": M3U8, "Cache-Control": CLOSED_PLAYLIST if view.closed else "public, max-age=1"}
