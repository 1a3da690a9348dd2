"""Name resolution for the load tester: `*.localhost` is loopback, as browsers make it.

RFC 6761 (6.3) reserves `localhost` and every name under it for the loopback address, and
browsers resolve them so without asking DNS; glibc resolves only `localhost` itself. The demo's
names (`live.localhost`, and `edge-lon.live.localhost` that its router sends viewers to) then
work for virtual viewers as they do for a browser. Every other name goes to aiohttp's resolver.
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


def is_localhost_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


class LocalhostResolver(AbstractResolver):
    def __init__(self, fallback: AbstractResolver | None = None) -> None:
        self._fallback = fallback or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not is_localhost_name(host):
            return await self._fallback.resolve(host, port, family)
        address, loopback_family = (
            ("::1", socket.AF_INET6) if family == socket.AF_INET6 else ("127.0.0.1", socket.AF_INET)
        )
        return [
            ResolveResult(
                hostname=host, host=address, port=port, family=loopback_family, proto=0, flags=socket.AI_NUMERICHOST
            )
        ]

    async def close(self) -> None:
        await self._fallback.close()
