"""Edge compression (brotli and gzip) for text-like bodies the client accepts. Pure except the zlib calls."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

import brotli

MIN_SIZE = 1024
COMPRESSIBLE_PREFIXES = ("text/",)
COMPRESSIBLE_TYPES = frozenset(
    {
        "application/javascript",
        "application/json",
        "application/xml",
        "application/xhtml+xml",
        "image/svg+xml",
        "application/wasm",
        "application/vnd.apple.mpegurl",
        "application/rss+xml",
        "application/ld+json",
        "application/manifest+json",
        "font/ttf",
        "font/otf",
    }
)


def negotiate(accept_encoding: str | None) -> str | None:
    """The coding to send: "br" or "gzip" by the client's q-values (br on a tie), or None."""
    if not accept_encoding:
        return None
    q: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        weight = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                weight = float(params[2:])
            except ValueError:
                weight = 0.0
        q[coding.strip().lower()] = weight
    star = q.get("*", 0.0)
    best = max(("br", "gzip"), key=lambda c: (q.get(c, star), c == "br"))
    return best if q.get(best, star) > 0 else None


def accepts_gzip(accept_encoding: str | None) -> bool:
    return negotiate(accept_encoding) is not None


def compressible(content_type: str | None, content_encoding: str | None, size: int | None) -> bool:
    if content_encoding not in (None, "", "identity") or content_type is None:
        return False
    if size is not None and size < MIN_SIZE:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime.startswith(COMPRESSIBLE_PREFIXES) or mime in COMPRESSIBLE_TYPES


def gzip_bytes(body: bytes | memoryview) -> bytes:
    return gzip.compress(body, compresslevel=6, mtime=0)


def encode(coding: str, body: bytes | memoryview) -> bytes:
    if coding == "br":
        return bytes(brotli.compress(body, quality=5))
    return gzip_bytes(body)


async def encode_stream(coding: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Compress a body as it arrives (a miss is compressed like a hit)."""
    if coding == "br":
        br = brotli.Compressor(quality=5)
        async for chunk in chunks:
            out = br.process(chunk)
            if out:
                yield out
        yield br.finish()
        return
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


def vary_on_coding(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers of an identity answer the edge could have compressed: they say
    Vary: Accept-Encoding, as the compressed ones do (RFC 9110 12.5.5)."""
    out: list[tuple[str, str]] = []
    seen = False
    for name, value in headers:
        if name == "vary":
            seen = True
            if "accept-encoding" not in value.lower():
                value += ", Accept-Encoding"
        out.append((name, value))
    return out if seen else [*out, ("vary", "Accept-Encoding")]
