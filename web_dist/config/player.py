"""The player origin's options (`kind = "player"`): where the pinned player libraries are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web_dist.config import did_you_mean

REPO = Path(__file__).resolve().parents[2]
DEFAULT_HLS_JS = REPO / "node_modules" / "hls.js" / "dist"
DEFAULT_DASH_JS = REPO / "node_modules" / "dashjs" / "dist" / "modern" / "umd"
OPTIONS = ("hls_js", "dash_js")


@dataclass(frozen=True)
class PlayerSettings:
    hls_js: Path = DEFAULT_HLS_JS  # the `dist` folder of the hls.js npm package
    dash_js: Path = DEFAULT_DASH_JS  # the folder of dashjs's dash.all.min.js

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, base: Path, where: str) -> PlayerSettings:
        """`options = { hls_js = "node_modules/hls.js/dist", dash_js = "..." }`, relative to
        the config's folder."""
        for key in options:
            if key not in OPTIONS:
                raise ValueError(
                    f"{where}.{key}: unknown option{did_you_mean(key, OPTIONS)} (known: {', '.join(OPTIONS)})"
                )
        paths = {}
        for key in OPTIONS:
            raw = options.get(key)
            if raw is None:
                continue
            if not isinstance(raw, str) or not raw:
                raise ValueError(f"{where}.{key}: expected the path of a folder, got {raw!r}")
            paths[key] = (base / raw).resolve()
        return cls(**paths)
