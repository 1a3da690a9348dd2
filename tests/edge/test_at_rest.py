"""What an edge costs before anyone watches: no WebRTC stack (aiortc, PyAV) until a WHEP viewer
comes and no cryptography until a key is used, about 38 MiB per edge process together
(docs/MEASUREMENTS.md, RSS at rest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, sys
from web_dist.config import load_config
from edge.app import build_edge_app
import web_dist.cli
app = build_edge_app(load_config(sys.argv[1]), "edge-test")
print(" ".join(m for m in ("av", "aiortc", "aioice", "cryptography") if m in sys.modules))
"""


def test_an_edge_without_webrtc_viewers_or_keys_loads_neither_stack(tmp_path: Path) -> None:
    config = tmp_path / "cdn.toml"
    config.write_text(edge_config_toml())
    loaded = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert loaded == "", f"an idle edge imported {loaded}"


def edge_config_toml() -> str:
    return """
[origins.media]
kind = "media"
url = "http://127.0.0.1:9"

[edges.edge-test]
listen = "127.0.0.1:0"

[distributions.live]
kind = "streaming"
domains = ["live.test"]
origin = "media"
"""
