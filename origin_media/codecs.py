"""RFC 6381 `codecs` strings of our tracks, for HLS CODECS and DASH @codecs. Pure."""

from __future__ import annotations

from .media import Track


def codec_string(track: Track) -> str:
    """One track's codec ("" for a codec we do not package)."""
    if track.codec == "h264":
        return "avc1." + track.extradata[1:4].hex()
    if track.codec == "aac":
        object_type = track.extradata[0] >> 3 if track.extradata else 2
        return f"mp4a.40.{object_type}"
    return ""
