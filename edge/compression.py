"""Edge compression (gzip) for text-like bodies the client accepts. Pure except the zlib calls."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

MIN_SIZE = 1024
COMPRESSIBLE_PREFIXES = ("text/",)
COMPRESSIBLE_TYPES = frozenset(
    {"application/javascript", "application/json", "application/xml", "application/xhtml+xml",
     "image/svg+xml", "application/wasm", "application/vnd.apple.mpegurl", "application/rss+xml",
     "application/ld+json", "application/manifest+json", "font/ttf", "font/otf"}
)


def accepts_gzip(accept_encoding: str | None) -> bool:
    if not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if params else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


def compressible(content_type: str | None, content_encoding: str | None, size: int | None) -> bool:
    if content_encoding not in (None, "", "identity") or content_type is None:
        return False
    if size is not None and size < MIN_SIZE:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime.startswith(COMPRESSIBLE_PREFIXES) or mime in COMPRESSIBLE_TYPES


def gzip_bytes(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=6, mtime=0)


async def gzip_stream(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    async for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def weak_etag(etag: str | None) -> str | None:
    """A compressed variant is not byte-identical: its validator becomes weak (as nginx does)."""
    if etag is None or etag.startswith("W/"):
        return etag
    return "W/" + etag
