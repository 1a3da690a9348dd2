"""Who may see a distribution's objects: geo restriction and signed URLs or cookies, and who
may write (uploads) or reach an origin's internal feeds. Pure.

`check_access` runs at the end of recv, before any cache lookup, so a refused request learns
nothing about what the cache holds. `check_doors` runs there too: a PUT/POST/PATCH/DELETE needs
the distribution's upload token (`Authorization: Bearer ...`) or a signed URL, and a streaming
distribution never proxies the media origin's MPEG-TS feed (for edges' WebRTC relay only).
Every refusal is a 403 whose message says why.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Protocol
from urllib.parse import parse_qsl, unquote

from edge.errors import EdgeError
from edge.freshness import format_http_date
from web_dist.config import (
    WRITE_METHODS,
    CacheBehavior,
    CdnConfig,
    Distribution,
    GeoRestriction,
    Network,
)
from web_dist.config.behaviors import host_name, region_of
from web_dist.config.signing import (
    COOKIE_PREFIX,
    SIGNING_PARAMS,
    Policy,
    PolicyError,
    canned_policy,
    cf_b64decode,
    load_public_key,
    parse_policy,
    resource_matches,
    verify,
)


class AccessRequest(Protocol):
    path: str  # percent-encoded, as received
    scheme: str  # "http" or "https"
    query: str
    headers: dict[str, str]  # lower-cased names
    client: str  # the peer's address


def needs_check(dist: Distribution, behavior: CacheBehavior) -> bool:
    """Whether requests for this behavior are checked at all (most are not: the hit path)."""
    return behavior.signed or dist.geo_restriction is not None


def check_access(
    config: CdnConfig,
    dist: Distribution,
    behavior: CacheBehavior,
    req: AccessRequest,
    now: float,
    *,
    trusted_proxies: Sequence[Network] = (),
    aliases: tuple[str, ...] = (),
) -> None:
    """Raise EdgeError(403) when the viewer may not have this URL. `aliases`: other hosts a
    signed URL may name for this request (`signer_hosts`)."""
    client = viewer_address(req.client, req.headers.get("x-forwarded-for"), trusted_proxies)
    if dist.geo_restriction is not None:
        networks = dist.geo_restriction.networks or (config.router.regions if config.router else ())
        check_geo(dist.geo_restriction, networks, client)
    if behavior.signed:
        check_signed(dist.trusted_keys, req, now, client, aliases)


def check_doors(
    dist: Distribution,
    behavior: CacheBehavior,
    req: AccessRequest,
    method: str,
    decoded_path: str,
    now: float,
    *,
    trusted_proxies: Sequence[Network] = (),
    https_port: int | None = None,
    aliases: tuple[str, ...] = (),
) -> None:
    """Raise EdgeError(403) for a write without credentials or a viewer asking for an origin's
    internal feed, and apply the behavior's viewer protocol policy (301 or 403 for plain HTTP).
    Cheap for a GET: three comparisons."""
    if behavior.viewer_protocol != "allow-all" and req.scheme != "https":
        check_viewer_protocol(behavior, req, method, https_port)
    if dist.kind == "streaming" and decoded_path.endswith("/stream.ts"):
        raise _forbidden("the MPEG-TS feed is the origin's feed for edges, not served to viewers")
    if method in WRITE_METHODS:
        client = viewer_address(req.client, req.headers.get("x-forwarded-for"), trusted_proxies)
        check_write(dist, behavior, req, now, client, aliases)


def check_viewer_protocol(behavior: CacheBehavior, req: AccessRequest, method: str, https_port: int | None) -> None:
    """Plain HTTP where the behavior wants HTTPS: 301 to the same URL on HTTPS (a GET or HEAD
    of redirect-to-https), else 403."""
    if (
        behavior.viewer_protocol == "redirect-to-https"
        and method in ("GET", "HEAD")
        and https_port is not None
        and req.headers.get("host")
    ):
        host = _host_without_port(req.headers["host"])
        port = "" if https_port == 443 else f":{https_port}"
        location = f"https://{host}{port}{req.path}" + (f"?{req.query}" if req.query else "")
        raise EdgeError(301, f"Moved Permanently: this URL is served over HTTPS: {location}", [("location", location)])
    raise _forbidden("this URL is served over HTTPS only")


def _host_without_port(host: str) -> str:
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def check_write(
    dist: Distribution,
    behavior: CacheBehavior,
    req: AccessRequest,
    now: float,
    client: str,
    aliases: tuple[str, ...] = (),
) -> None:
    """A write needs the upload token (compared in constant time) or a valid signed URL."""
    if behavior.signed:
        return  # check_access verified the signed URL or cookies already
    scheme, _, given = req.headers.get("authorization", "").partition(" ")
    if dist.upload_token is not None and scheme.lower() == "bearer" and given.strip():
        if hmac.compare_digest(given.strip().encode(), dist.upload_token.encode()):
            return
        raise _forbidden("wrong upload token")
    if dist.trusted_keys and "Signature" in credentials(req.query, req.headers.get("cookie", "")):
        check_signed(dist.trusted_keys, req, now, client, aliases)
        return
    if dist.upload_token is None and not dist.trusted_keys:
        raise _forbidden("this distribution takes no uploads: it has neither upload_token nor trusted_keys")
    raise _forbidden("writes need Authorization: Bearer <upload token> or a signed URL")


def viewer_address(peer: str, forwarded_for: str | None, trusted_proxies: Sequence[Network]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy, in which case the
    right-most X-Forwarded-For entry not itself a trusted proxy (entries further left were
    written by whoever the client is, and prove nothing)."""
    if not forwarded_for or not in_any(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not in_any(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def in_any(address: str, networks: Sequence[Network]) -> bool:
    return any(_in_network(address, n) for n in networks)


# -- geo restriction ---------------------------------------------------------------------------
def check_geo(geo: GeoRestriction, networks: Sequence[tuple[Network, str]], client: str) -> None:
    region = region_of(networks, client)
    allowed = region in geo.regions if geo.mode == "allow" else region not in geo.regions
    if not allowed:
        where = f"region {region!r}" if region else "an unknown region"
        raise EdgeError(403, f"Forbidden: this distribution is not available to clients in {where} (geo restriction)")


# -- signed URLs and cookies ---------------------------------------------------------------------
def without_signing_params(query: str) -> str:
    """The query string as received, less the signing parameters (order and encoding kept)."""
    if not query:
        return ""
    kept = [part for part in query.split("&") if part and unquote(part.split("=", 1)[0]) not in SIGNING_PARAMS]
    return "&".join(kept)


def request_url(host: str, path: str, query: str) -> str:
    """The URL a policy's Resource is matched against: http://host/path?query-less-signing."""
    query = without_signing_params(query)
    return f"http://{host}{path}" + (f"?{query}" if query else "")


def credentials(query: str, cookie: str) -> dict[str, str]:
    """The signing values of the URL's query, else of the CloudFront-* cookies."""
    if query:
        found = {k: v for k, v in parse_qsl(query, keep_blank_values=True) if k in SIGNING_PARAMS}
        if "Signature" in found:
            return found
    values: dict[str, str] = {}
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name.startswith(COOKIE_PREFIX) and name[len(COOKIE_PREFIX) :] in SIGNING_PARAMS:
            values[name[len(COOKIE_PREFIX) :]] = value.strip().strip('"')
    return values


def signer_hosts(host: str, dist: Distribution, edge_name: str, router_port: int | None) -> tuple[str, ...]:
    """Other hosts a signed URL may name for a request sent to `host`. The request router's 302
    (`edge_hostnames`) sends a viewer from DOMAIN to EDGE.DOMAIN:EDGE_PORT, and a canned policy
    is rebuilt from the URL asked for: the signer named the distribution's domain, bare or with
    the router's port (or this edge's). None when `host` is not this edge's name for a domain of
    `dist` (the signature binds the path and expiry; which door of one distribution is not a secret)."""
    name = host_name(host)
    prefix = f"{edge_name.lower()}."
    domain = name[len(prefix) :] if name.startswith(prefix) else ""
    if not domain or not any(d == domain or (d.startswith("*.") and domain.endswith(d[1:])) for d in dist.domains):
        return ()
    port = host.rpartition(":")[2] if host.rpartition(":")[2].isdigit() else None
    ports = [router_port, int(port) if port else None]
    return tuple(dict.fromkeys([domain, *(f"{domain}:{p}" for p in ports if p is not None)]))


def check_signed(
    trusted_keys: Mapping[str, bytes], req: AccessRequest, now: float, client: str, aliases: tuple[str, ...] = ()
) -> None:
    host = req.headers.get("host", "").lower()
    verdict = signature_verdict(
        tuple(trusted_keys.items()), (host, *aliases), req.path, req.query, req.headers.get("cookie", "")
    )
    if isinstance(verdict, str):
        raise _forbidden(verdict)
    _check_policy(verdict, client, now)


@lru_cache(maxsize=2048)
def signature_verdict(
    keys: tuple[tuple[str, bytes], ...], hosts: tuple[str, ...], path: str, query: str, cookie: str
) -> Policy | str:
    """The verified policy covering this URL, or why there is none. `hosts`: the Host sent,
    then the others the signer may have named (a canned policy is tried with each).

    Remembered: one signed URL or cookie is presented again and again (every segment of a
    video) and an RSA check costs more than a whole cache hit. What changes with time, the
    policy's dates, and the client's address are checked on every request (`_check_policy`).
    """
    values = credentials(query, cookie)
    if "Signature" not in values:
        return "this URL needs a signed URL or signed cookies"
    key_id = values.get("Key-Pair-Id", "")
    pem = dict(keys).get(key_id)
    if pem is None:
        return f"Key-Pair-Id {key_id!r} is not a trusted key of this distribution"
    if values.get("Hash-Algorithm", "SHA256") != "SHA256":
        return "only Hash-Algorithm=SHA256 is accepted"
    urls = [request_url(host, path, query) for host in hosts]
    try:
        signature = cf_b64decode(values["Signature"])
        tried = [_policy(values, url) for url in (urls if "Policy" not in values else urls[:1])]
    except PolicyError as exc:
        return f"the signing values are malformed: {exc}"
    public = load_public_key(pem)
    policy = next((p for p, signed in tried if verify(public, signed, signature)), None)
    if policy is None:
        return "the signature does not match the policy (altered, or signed with another key)"
    if not any(resource_matches(policy.resource, url) for url in urls):
        return f"the policy's resource {policy.resource!r} does not cover {urls[0]}"
    return policy


def _policy(values: Mapping[str, str], url: str) -> tuple[Policy, bytes]:
    """The policy and the exact bytes that were signed: sent (custom) or rebuilt (canned)."""
    if "Policy" in values:
        raw = cf_b64decode(values["Policy"])
        return parse_policy(raw), raw
    expires = values.get("Expires", "")
    if not expires.isdigit():
        raise PolicyError("needs Expires (a canned policy) or Policy (a custom one)")
    return Policy(url, int(expires)), canned_policy(url, int(expires))


def _check_policy(policy: Policy, client: str, now: float) -> None:
    if now >= policy.expires:
        raise _forbidden(f"the signature expired at {format_http_date(policy.expires)}")
    if policy.starts is not None and now <= policy.starts:
        raise _forbidden(f"the signature is not valid before {format_http_date(policy.starts)}")
    if policy.ip is not None and not _in_network(client, policy.ip):
        raise _forbidden(f"the policy does not allow requests from {client} (only {policy.ip})")


def _in_network(client: str, network: Network) -> bool:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return address.version == network.version and address in network


def _forbidden(why: str) -> EdgeError:
    return EdgeError(403, f"Forbidden: {why}")
