"""An origin's lock: only requests carrying its access secret (which edges send) are served.

CloudFront's custom origin header, MediaMTX's `hlsCDNSecret`: the origin is reachable on the
network, but answers 403 to whoever does not present the secret the edges were given, so
viewers cannot go around the CDN (its signed URLs, geo restriction, upload tokens). The
comparison is constant-time. Paths in `open_prefixes` (a publisher's WHIP ingest, which has its
own bearer token) are served without it.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from web_dist.config import ORIGIN_SECRET_HEADER

_HEADER = ORIGIN_SECRET_HEADER.encode("latin-1")


def has_secret(headers: list[tuple[bytes, bytes]], secret: bytes) -> bool:
    """Whether the ASGI request headers carry `secret` in ORIGIN_SECRET_HEADER."""
    given = next((value for name, value in headers if name.lower() == _HEADER), b"")
    return hmac.compare_digest(given, secret)


class OriginSecretGuard:
    """ASGI middleware: 403 for an HTTP request without the secret (None: every request passes)."""

    def __init__(self, app: ASGIApp, secret: str | None, open_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.secret = secret.encode("latin-1") if secret is not None else None
        self.open_prefixes = open_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.secret is None
            or scope["type"] != "http"
            or scope["path"].startswith(self.open_prefixes)
            or has_secret(scope["headers"], self.secret)
        ):
            await self.app(scope, receive, send)
            return
        body = b"Forbidden: this origin answers its CDN's edges only\n"
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
