"""Private content through a real edge: signed URLs, signed cookies and geo restriction.

A refused request gets 403 with the reason and never reaches the cache: the store is not even
asked, so neither the answer nor its timing says whether the object is cached.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edge.access import viewer_address
from edge.app import build_edge_app
from edge.store import CachedResponse, MemoryStore
from tests.edge.conftest import Clock, ScriptedOrigin, edge_config
from web_dist.config import ConfigError
from web_dist.config.signing import (
    Policy,
    canned_policy,
    cf_b64encode,
    sign,
    signed_cookies,
    signed_url,
)

HOST = "site.test"
PRIVATE = {"path": "/private/*", "signed": True, "query_keys": "all"}


class CountingStore(MemoryStore):
    """The real memory store, counting how often the flow looks something up."""

    def __init__(self) -> None:
        super().__init__(64 * 1024 * 1024, 8 * 1024 * 1024)
        self.lookups = 0

    def get(self, key: str) -> CachedResponse | None:
        self.lookups += 1
        return super().get(key)


@dataclass
class PrivateRig:
    origin: ScriptedOrigin
    clock: Clock
    store: CountingStore
    client: httpx.AsyncClient
    url: str
    key: rsa.RSAPrivateKey

    def public_url(self, path: str) -> str:
        return f"http://{HOST}{path}"

    def signed(self, path: str, expires_in: float = 60, **policy: Any) -> str:
        """The edge URL of `path`, signed (canned unless `policy` adds a start or an IP)."""
        url = self.public_url(path)
        signed = signed_url(
            self.key, "K1", url, Policy(policy.pop("resource", url), int(self.clock.now + expires_in), **policy)
        )
        return self.url + signed.removeprefix(f"http://{HOST}")

    async def get(self, target: str, **kw: Any) -> httpx.Response:
        if not target.startswith("http"):
            target = self.url + target
        return await self.client.get(target, headers={"host": HOST, **kw.pop("headers", {})}, **kw)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path_factory.mktemp("keys") / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, public


@pytest.fixture
async def make_rig(serve: Callable[..., Any], keys: tuple[rsa.RSAPrivateKey, Path]) -> Any:
    clients: list[httpx.AsyncClient] = []

    async def make(behaviors: list[dict[str, Any]] | None = None, **dist: Any) -> PrivateRig:
        origin = ScriptedOrigin()
        origin_srv = await serve(origin, name="origin")
        clock, store = Clock(), CountingStore()
        config = edge_config(
            origin_srv.url, [PRIVATE] if behaviors is None else behaviors, trusted_keys={"K1": str(keys[1])}, **dist
        )
        edge_srv = await serve(build_edge_app(config, "edge-test", clock=clock, store=store), name="edge")
        client = httpx.AsyncClient(timeout=20)
        clients.append(client)
        return PrivateRig(origin, clock, store, client, edge_srv.url, keys[0])

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def rig(make_rig: Any) -> PrivateRig:
    rig: PrivateRig = await make_rig()
    rig.origin.set("/private/a.txt", b"secret a")
    rig.origin.set("/private/b.txt", b"secret b")
    rig.origin.set("/public.txt", b"for everyone")
    return rig


async def assert_refused(rig: PrivateRig, target: str, reason: str, **kw: Any) -> None:
    before = (rig.store.lookups, sum(rig.origin.hits.values()))
    resp = await rig.get(target, **kw)
    assert resp.status_code == 403, resp.text
    assert reason in resp.text
    assert "secret" not in resp.text and "hit" not in resp.headers["cache-status"]
    assert resp.headers["cache-control"] == "no-store"
    assert (rig.store.lookups, sum(rig.origin.hits.values())) == before  # no lookup, no fetch


async def test_a_signed_url_is_served_and_its_signature_stays_at_the_edge(rig: PrivateRig) -> None:
    first = await rig.get(rig.signed("/private/a.txt"))
    rig.clock.advance(1)
    second = await rig.get(rig.signed("/private/a.txt"))  # another signature, the same object
    assert first.status_code == second.status_code == 200
    assert first.content == second.content == b"secret a"
    assert "hit" in second.headers["cache-status"]  # signing parameters are not in the cache key
    assert [r[1] for r in rig.origin.requests] == ["/private/a.txt"]  # ... nor sent to the origin


async def test_a_query_that_joins_the_key_is_signed_and_forwarded(rig: PrivateRig) -> None:
    rig.origin.set("/private/a.txt?v=2", b"secret a v2")
    resp = await rig.get(rig.signed("/private/a.txt?v=2"))
    assert resp.status_code == 200 and resp.content == b"secret a v2"
    assert rig.origin.requests[-1][1] == "/private/a.txt?v=2"
    forged = rig.signed("/private/a.txt?v=2").replace("v=2", "v=3")  # signed for v=2 only
    await assert_refused(rig, forged, "the signature does not match")


async def test_the_unsigned_behaviors_stay_public(rig: PrivateRig) -> None:
    assert (await rig.get("/public.txt")).content == b"for everyone"


async def test_refusals_reveal_nothing_about_the_cache(rig: PrivateRig) -> None:
    assert (await rig.get(rig.signed("/private/a.txt"))).status_code == 200  # now cached
    cached = await rig.get("/private/a.txt")
    uncached = await rig.get("/private/b.txt")
    assert cached.status_code == uncached.status_code == 403
    assert cached.headers.keys() == uncached.headers.keys()
    await assert_refused(rig, "/private/a.txt", "needs a signed URL or signed cookies")


async def test_an_expired_url_is_refused(rig: PrivateRig) -> None:
    url = rig.signed("/private/a.txt", expires_in=60)
    assert (await rig.get(url)).status_code == 200
    rig.clock.advance(61)
    await assert_refused(rig, url, "the signature expired at")


async def test_a_url_is_not_valid_before_its_start_time(rig: PrivateRig) -> None:
    url = rig.signed("/private/a.txt", expires_in=600, starts=int(rig.clock.now + 100))
    await assert_refused(rig, url, "not valid before")
    rig.clock.advance(101)
    assert (await rig.get(url)).status_code == 200


async def test_tampering_is_refused(rig: PrivateRig) -> None:
    url = rig.signed("/private/a.txt")
    expires = url.split("Expires=")[1].split("&")[0]
    await assert_refused(rig, url.replace(f"Expires={expires}", f"Expires={int(expires) + 3600}"), "does not match")
    signature = url.split("Signature=")[1].split("&")[0]
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    await assert_refused(rig, url.replace(signature, flipped), "does not match")
    await assert_refused(rig, url.replace(signature, "not*base64"), "malformed")
    await assert_refused(rig, url.replace("Key-Pair-Id=K1", "Key-Pair-Id=K2"), "'K2' is not a trusted key")
    await assert_refused(rig, url + "&Hash-Algorithm=SHA1", "only Hash-Algorithm=SHA256")


async def test_a_signature_for_one_object_does_not_open_another(rig: PrivateRig) -> None:
    url = rig.signed("/private/a.txt")
    await assert_refused(rig, url.replace("/private/a.txt", "/private/b.txt"), "does not match")
    custom = rig.signed("/private/a.txt", starts=0)  # a custom policy naming a.txt
    await assert_refused(rig, custom.replace("/private/a.txt", "/private/b.txt"), "does not cover")


async def test_a_wildcard_policy_opens_what_it_names_and_no_more(rig: PrivateRig) -> None:
    pattern = rig.public_url("/private/a*")
    assert (await rig.get(rig.signed("/private/a.txt", resource=pattern))).status_code == 200
    await assert_refused(rig, rig.signed("/private/b.txt", resource=pattern), "does not cover")
    other_host = "http://other.test/private/*"  # a policy for another distribution's host
    await assert_refused(rig, rig.signed("/private/a.txt", resource=other_host), "does not cover")
    # A wildcard does not reach outside the path rules: dot segments are refused before signing is checked.
    escaped = rig.signed("/private/a.txt", resource=rig.public_url("/private/*")).replace(
        "/private/a.txt", "/private/%2e%2e/x"
    )
    assert (await rig.get(escaped)).status_code == 400


async def test_a_policy_can_name_the_client_network(rig: PrivateRig) -> None:
    assert (await rig.get(rig.signed("/private/a.txt", ip=ipaddress.ip_network("127.0.0.0/8")))).status_code == 200
    await assert_refused(
        rig,
        rig.signed("/private/a.txt", ip=ipaddress.ip_network("10.0.0.0/8")),
        "does not allow requests from 127.0.0.1 (only 10.0.0.0/8)",
    )
    # An X-Forwarded-For from an untrusted peer changes nothing.
    await assert_refused(
        rig,
        rig.signed("/private/a.txt", ip=ipaddress.ip_network("10.0.0.0/8")),
        "does not allow",
        headers={"x-forwarded-for": "10.1.2.3"},
    )


async def test_a_key_the_distribution_does_not_trust_is_refused(rig: PrivateRig) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    url = signed_url(
        stranger,
        "K1",
        rig.public_url("/private/a.txt"),
        Policy(rig.public_url("/private/a.txt"), int(rig.clock.now + 60)),
    )
    await assert_refused(rig, rig.url + url.removeprefix(f"http://{HOST}"), "does not match")


async def test_signed_cookies_open_every_url_their_policy_names(rig: PrivateRig) -> None:
    cookies = signed_cookies(rig.key, "K1", Policy(rig.public_url("/private/*"), int(rig.clock.now + 60)))
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    for path, body in (("/private/a.txt", b"secret a"), ("/private/b.txt", b"secret b")):
        resp = await rig.get(path, headers={"cookie": header})
        assert resp.status_code == 200 and resp.content == body
    assert all("cookie" not in headers for _, _, headers in rig.origin.requests)  # cookies stay at the edge
    rig.clock.advance(61)
    await assert_refused(rig, "/private/a.txt", "expired", headers={"cookie": header})
    forged = header.replace("CloudFront-Key-Pair-Id=K1", "CloudFront-Key-Pair-Id=nope")
    await assert_refused(rig, "/private/a.txt", "not a trusted key", headers={"cookie": forged})


async def test_canned_signed_cookies_name_one_url(rig: PrivateRig) -> None:
    expires = int(rig.clock.now + 60)
    signature = sign(rig.key, canned_policy(rig.public_url("/private/a.txt"), expires))
    header = f"CloudFront-Expires={expires}; CloudFront-Signature={signature}; CloudFront-Key-Pair-Id=K1"
    assert (await rig.get("/private/a.txt", headers={"cookie": header})).status_code == 200
    await assert_refused(rig, "/private/b.txt", "does not match", headers={"cookie": header})


async def test_a_malformed_policy_is_refused_with_a_reason(rig: PrivateRig) -> None:
    raw = b'{"Statement":[{"Resource":"*"}]}'
    query = f"Policy={cf_b64encode(raw)}&Signature={quote(sign(rig.key, raw))}&Key-Pair-Id=K1"
    await assert_refused(rig, f"/private/a.txt?{query}", "malformed")


# -- geo restriction -----------------------------------------------------------------------------
async def test_geo_deny_list_refuses_the_listed_region(make_rig: Any) -> None:
    geo = {"mode": "deny", "regions": ["blocked"], "networks": {"127.0.0.0/8": "blocked"}}
    rig: PrivateRig = await make_rig([], geo_restriction=geo)
    rig.origin.set("/a", b"x")
    resp = await rig.get("/a")
    assert resp.status_code == 403 and "not available to clients in region 'blocked'" in resp.text
    assert rig.store.lookups == 0 and not rig.origin.hits


async def test_geo_allow_list_serves_only_the_listed_regions(make_rig: Any) -> None:
    geo = {"mode": "allow", "regions": ["home"], "networks": {"127.0.0.1/32": "home", "10.0.0.0/8": "away"}}
    rig: PrivateRig = await make_rig([], geo_restriction=geo)
    rig.origin.set("/a", b"x")
    assert (await rig.get("/a")).content == b"x"
    # Not a trusted proxy: its X-Forwarded-For is not believed either way.
    assert (await rig.get("/a", headers={"x-forwarded-for": "10.1.1.1"})).status_code == 200


async def test_geo_believes_x_forwarded_for_only_from_trusted_proxies(make_rig: Any) -> None:
    geo = {"mode": "allow", "regions": ["eu"], "networks": {"10.1.0.0/16": "eu", "10.2.0.0/16": "us"}}
    rig: PrivateRig = await make_rig([], geo_restriction=geo, edge={"trusted_proxies": ["127.0.0.1"]})
    rig.origin.set("/a", b"x")
    assert (await rig.get("/a", headers={"x-forwarded-for": "10.1.2.3"})).status_code == 200
    refused = await rig.get("/a", headers={"x-forwarded-for": "10.2.0.5"})
    assert refused.status_code == 403 and "region 'us'" in refused.text
    # The client wrote the left-most entry itself; the proxy appended the real address.
    assert (await rig.get("/a", headers={"x-forwarded-for": "10.1.2.3, 10.2.0.5"})).status_code == 403
    unknown = await rig.get("/a")  # the proxy's own address is in no region
    assert unknown.status_code == 403 and "an unknown region" in unknown.text


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("1.2.3.4", "9.9.9.9", [], "1.2.3.4"),
        ("10.0.0.1", None, ["10.0.0.0/8"], "10.0.0.1"),
        ("10.0.0.1", "9.9.9.9", ["10.0.0.0/8"], "9.9.9.9"),
        ("10.0.0.1", "6.6.6.6, 9.9.9.9, 10.0.0.7", ["10.0.0.0/8"], "9.9.9.9"),
        ("10.0.0.1", "10.0.0.9, 10.0.0.7", ["10.0.0.0/8"], "10.0.0.9"),
        ("1.2.3.4", "9.9.9.9", ["10.0.0.0/8"], "1.2.3.4"),
    ],
)
def test_viewer_address(peer: str, forwarded: str | None, trusted: list[str], client: str) -> None:
    assert viewer_address(peer, forwarded, [ipaddress.ip_network(n) for n in trusted]) == client


async def test_an_upload_to_a_signed_path_needs_a_signature_too(make_rig: Any) -> None:
    rig: PrivateRig = await make_rig([{**PRIVATE, "methods": ["GET", "HEAD", "PUT"]}])
    rig.origin.set("/private/up.txt", b"stored", status=201)
    refused = await rig.client.put(rig.url + "/private/up.txt", content=b"data", headers={"host": HOST})
    assert refused.status_code == 403 and not rig.origin.requests
    accepted = await rig.client.put(rig.signed("/private/up.txt"), content=b"data", headers={"host": HOST})
    assert accepted.status_code == 201
    assert rig.origin.requests[0][:2] == ("PUT", "/private/up.txt")  # the signature stayed at the edge


async def test_a_signed_url_is_an_upload_credential_on_an_unsigned_path(make_rig: Any) -> None:
    rig: PrivateRig = await make_rig([{"path": "/up/*", "methods": ["GET", "HEAD", "PUT"]}])
    rig.origin.set("/up/f.txt", b"stored", status=201)
    refused = await rig.client.put(rig.url + "/up/f.txt", content=b"data", headers={"host": HOST})
    assert refused.status_code == 403 and "Bearer <upload token> or a signed URL" in refused.text
    assert not rig.origin.requests
    accepted = await rig.client.put(rig.signed("/up/f.txt"), content=b"data", headers={"host": HOST})
    assert accepted.status_code == 201 and rig.origin.requests[0][:2] == ("PUT", "/up/f.txt")
    other = rig.signed("/up/f.txt").replace("/up/f.txt", "/up/g.txt")  # a signature for another path
    assert (await rig.client.put(other, content=b"data", headers={"host": HOST})).status_code == 403


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"trusted_keys": {}}, "a behavior has signed = true, so the distribution needs a public key"),
        ({"trusted_keys": {"K1": "/nonexistent/public.pem"}}, "cannot read"),
        ({"trusted_keys": {"bad id!": "x.pem"}}, "key pair ids use letters"),
        ({"geo_restriction": {"mode": "maybe", "regions": []}}, "geo_restriction.mode"),
        (
            {"geo_restriction": {"mode": "deny", "regions": ["x"], "networks": {"10.0.0.0/33": "x"}}},
            "not a network in CIDR form",
        ),
        ({"geo_restriction": {"mode": "deny", "regions": ["x"]}}, "no CIDR -> region map"),
        ({"edge": {"trusted_proxies": ["proxy.example"]}}, "edges.edge-test.trusted_proxies[0]: not a network"),
        ({"edge": {"max_upload_bytes": 0}}, "edges.edge-test.max_upload_bytes"),
    ],
)
def test_bad_access_config_is_refused_with_file_and_key(
    keys: tuple[rsa.RSAPrivateKey, Path], change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        edge_config("http://127.0.0.1:1", [PRIVATE], **{"trusted_keys": {"K1": str(keys[1])}, **change})
    with pytest.raises(ConfigError, match="is not a PEM public key"):
        edge_config("http://127.0.0.1:1", [PRIVATE], trusted_keys={"K1": __file__})


@pytest.mark.parametrize(
    ("host", "router_port", "expected"),
    [
        ("edge-test.site.test:8091", 8090, ("site.test", "site.test:8090", "site.test:8091")),  # the router's 302
        ("EDGE-TEST.site.test.", None, ("site.test",)),
        ("site.test:8091", 8090, ()),  # the domain itself: the Host is what was signed
        ("edge-other.site.test:8091", 8090, ()),  # another edge's name is not this edge's alias
        ("edge-test.nope.test:8091", 8090, ()),  # not a domain of the distribution
        ("edge-test.:8091", 8090, ()),
    ],
)
def test_signer_hosts_are_the_domain_behind_this_edge_s_own_name(
    host: str, router_port: int | None, expected: tuple[str, ...]
) -> None:
    from edge.access import signer_hosts

    dist = edge_config("http://127.0.0.1:9").distributions[0]
    assert signer_hosts(host, dist, "edge-test", router_port) == expected
