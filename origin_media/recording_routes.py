"""HTTP side of recordings: `/recordings/STREAM` (JSON list), each recording's playlist and files.

    GET /recordings/STREAM                        {"recordings": [{id, start, end, duration, closed, playlist}]}
    GET /recordings/STREAM/ID/index.m3u8          EVENT while recording, VOD (ENDLIST) once closed
    GET /recordings/STREAM/ID/init1.mp4, seg7.m4s the files on disk
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .playlist import format_date
from .recording import Recorder, render_recording
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
        body = [{
            "id": view.id,
            "start": format_date(view.start),
            "end": format_date(view.end),
            "duration": round(view.duration, 3),
            "closed": view.closed,
            "segments": len(view.segments),
            "playlist": f"/recordings/{name}/{view.id}/index.m3u8",
        } for view in recorder.recordings()]
        return JSONResponse({"stream": name, "recordings": body}, headers={"Cache-Control": "no-store"})

    async def playlist(self, request: Request) -> Response:
        recorder = self.recorders.get(request.path_params["stream"])
        view = recorder.recording(request.path_params["recording"]) if recorder else None
        if view is None:
            return not_found("recording")
        cache = CLOSED_PLAYLIST if view.closed else "public, max-age=1"
        return Response(render_recording(view), headers={"Content-Type": M3U8, "Cache-Control": cache})

    async def file(self, request: Request) -> Response:
        recorder = self.recorders.get(request.path_params["stream"])
        name, recording = request.path_params["name"], request.path_params["recording"]
        if recorder is None or not _FILE.match(name) or recorder.recording(recording) is None:
            return not_found("object")
        try:  # file I/O off the event loop
            data = await asyncio.to_thread(recorder.path(recording, name).read_bytes)
        except OSError:
            return not_found("object")
        return Response(data, media_type="video/mp4", headers={"Cache-Control": IMMUTABLE})
