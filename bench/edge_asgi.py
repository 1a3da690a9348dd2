"""The edge as an ASGI factory for servers that import an app by name (granian, hypercorn).

    CDN_BENCH_CONFIG=edge.toml CDN_BENCH_EDGE=bench-edge granian --interface asgi --factory bench.edge_asgi:build
    CDN_BENCH_CONFIG=edge.toml CDN_BENCH_EDGE=bench-edge hypercorn 'bench.edge_asgi:build()'

The environment is read here, at the rim, and nowhere in the edge. The access log goes to
stderr at INFO as under `cdn edge`, so every server pays for the same per-request log line.
"""

from __future__ import annotations

import logging
import os
import sys

from edge.app import EdgeApp, build_edge_app
from web_dist.config import load_config


def build() -> EdgeApp:
    config = load_config(os.environ["CDN_BENCH_CONFIG"])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logger = logging.getLogger("cdn")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the server's own logging set-up neither doubles nor drops it
    return build_edge_app(config, os.environ["CDN_BENCH_EDGE"])
