"""The edge's HTTP client to its origins: pooled connections, timeouts, one error type.

Every failure to get an answer from an origin becomes `UpstreamError` here, at the boundary,
so the request flow deals with one exception and `errors.py` maps it to 502 or 504.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
from yarl import URL

from edge.store import Headers
from web_dist.config import ORIGIN_SECRET_HEADER, Origin
from web_dist.http.semantics import response_length

log = logging.getLogger("cdn.edge")
CHUNK = 64 * 1024
# Hop-by-hop headers (RFC 9110 7.6.1) are never forwarded, in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def end_to_end(raw: Sequence[tuple[bytes, bytes]]) -> Headers:
    """The response's headers, names lower-cased, less hop-by-hop ones and those its
    Connection header names (RFC 9110 7.6.1): never stored, never forwarded."""
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]
    drop = HOP_BY_HOP.union(*(connection_names(value) for name, value in headers if name == "connection"))
    return [(k, v) for k, v in headers if k not in drop]


def connection_names(value: str | None) -> set[str]:
    """The header names a Connection field lists (its options close/keep-alive are not names)."""
    if not value or value in ("keep-alive", "close"):  # the common fields, without a parse
        return set()
    tokens = {t.strip().lower() for t in (value or "").split(",")}
    return tokens - {"", "close", "keep-alive"}


class UpstreamError(Exception):
    """No usable answer from the origin. `kind`: connect, timeout or protocol."""

    def __init__(self, kind: str, origin: str, detail: str) -> None:
        super().__init__(f"origin {origin}: {kind}: {detail}")
        self.kind = kind
        self.origin = origin
        self.detail = detail


@contextmanager
def _mapped(origin: str) -> Iterator[None]:
    """The one table from client exceptions to UpstreamError."""
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamError("timeout", origin, str(exc) or "no answer in time") from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamError("connect", origin, str(exc.os_error) or "connection refused") from exc
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise UpstreamError("protocol", origin, str(exc) or type(exc).__name__) from exc


@dataclass
class UpstreamResponse:
    status: int
    headers: Headers  # names lower-cased, hop-by-hop removed
    _response: aiohttp.ClientResponse
    origin: str

    @property
    def content_length(self) -> int | None:
        return response_length(self.headers)

    async def chunks(self) -> AsyncIterator[bytes]:
        with _mapped(self.origin):
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk

    def close(self) -> None:
        self._response.release() if self._response.content.at_eof() else self._response.close()


class OriginClient:
    """One pooled aiohttp session for every origin (and parent edge) of an edge."""

    def __init__(self, *, user_agent: str = "cdn-edge") -> None:
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._tls: dict[str, ssl.SSLContext] = {}  # CA file -> context verifying against it

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # bodies pass through as the origin encoded them
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        origins: Sequence[Origin],
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: AsyncIterator[bytes] | None = None,
        *,
        failover_statuses: frozenset[int] = frozenset(),
    ) -> UpstreamResponse:
        """Ask the first origin; on failure (or a failover status) the next, for bodiless requests.

        CloudFront origin failover: a connection failure, a timeout or one of the group's
        statuses from the primary retries the secondary. A request with a body is sent once.
        """
        last = len(origins) - 1 if body is None else 0
        for i, origin in enumerate(origins[: last + 1]):
            try:
                response = await self._send(origin, method, target, headers, body)
            except UpstreamError:
                if i == last:
                    raise
                log.warning("origin %s failed; failing over to %s", origin.id, origins[i + 1].id)
                continue
            if i < last and response.status in failover_statuses:
                log.warning("origin %s answered %d; failing over to %s", origin.id, response.status, origins[i + 1].id)
                response.close()
                continue
            return response
        raise AssertionError("unreachable: the last origin returns or raises")

    def _tls_for(self, origin: Origin) -> ssl.SSLContext | bool:
        """How an https:// origin's certificate is checked: against its `ca_file`, else the
        system's trust store (aiohttp's default). Always checked, host name included."""
        if origin.ca_file is None:
            return True
        key = str(origin.ca_file)
        if key not in self._tls:
            self._tls[key] = ssl.create_default_context(cafile=key)
        return self._tls[key]

    async def _send(
        self, origin: Origin, method: str, target: str, headers: Mapping[str, str], body: AsyncIterator[bytes] | None
    ) -> UpstreamResponse:
        if self._session is None:
            raise RuntimeError("OriginClient.start() was not awaited")
        timeout = aiohttp.ClientTimeout(total=None, connect=origin.connect_timeout, sock_read=origin.read_timeout)
        out = {"user-agent": self._user_agent, **headers}
        if origin.access_secret is not None:  # the origin answers its edges only
            out[ORIGIN_SECRET_HEADER] = origin.access_secret
        with _mapped(origin.id):
            response = await self._session.request(
                method,
                URL(origin.url + target, encoded=True),
                ssl=self._tls_for(origin),
                headers=out,
                data=body,
                timeout=timeout,
                allow_redirects=False,
                compress=None,
                chunked=None,
            )
        return UpstreamResponse(response.status, end_to_end(response.raw_headers), response, origin.id)
