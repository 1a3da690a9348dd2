"""The request router: nearest healthy edge by region or measured RTT, over HTTP 302 and DNS.

Clients in different regions are real loopback source addresses (127.0.0.2, 127.0.0.3, ...);
edges are real edge apps on their own loopback addresses in front of a real web origin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from edge.app import build_edge_app
from tests.conftest import until
from web_dist.cli.tls import make_server_cert
from web_dist.config import CdnConfig, parse_config
from web_dist.geo.netns import DelayRelay
from web_dist.router import EdgeState, LatencyTable, Router, build_router_app, rank_edges, region_of
from web_dist.server import RunningServer, SharedApp, start_server

AP, EU = "127.0.0.2", "127.0.0.3"  # client addresses the region map places
UNMAPPED = ("127.0.1.9", "127.0.2.9")  # in no region, and in different /24 networks
EDGE_HOSTS = {"edge-lon": "127.0.0.11", "edge-syd": "127.0.0.12"}
INTERVAL = 0.2
LIVE = "live.test"  # a streaming distribution's domain


# -- the choice, table-driven --------------------------------------------------------------------
def _net(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr)


@pytest.mark.parametrize(
    ("client", "region"),
    [("10.1.2.3", "ap-south"), ("10.9.9.9", "eu-west"), ("192.0.2.1", None), ("2001:db8::1", "v6"), ("nope", None)],
)
def test_region_of_takes_the_most_specific_network(client: str, region: str | None) -> None:
    regions = [(_net("10.0.0.0/8"), "eu-west"), (_net("10.1.0.0/16"), "ap-south"), (_net("2001:db8::/32"), "v6")]
    assert region_of(regions, client) == region


EDGES = [
    EdgeState("lon", "eu-west", "a:1"),
    EdgeState("bom", "ap-south", "b:1"),
    EdgeState("syd", "ap-southeast", "c:1"),
]
NEARBY = {"ap-southeast": ("ap-south", "eu-west"), "eu-west": ("ap-south",)}


@pytest.mark.parametrize(
    ("region", "rtts", "down", "expected"),
    [
        ("ap-southeast", {}, set(), ["syd", "bom", "lon"]),  # own region, then nearby in order
        ("ap-southeast", {}, {"syd"}, ["bom", "lon"]),  # a down edge is never chosen
        ("eu-west", {}, set(), ["lon", "bom", "syd"]),  # unlisted regions come last, config order
        (None, {"lon": 0.2, "bom": 0.05, "syd": 0.1}, set(), ["bom", "syd", "lon"]),  # no region: RTT
        ("ap-southeast", {"lon": 0.001}, set(), ["syd", "bom", "lon"]),  # region beats RTT
        ("mars", {"syd": 0.3, "lon": 0.1}, set(), ["lon", "syd", "bom"]),  # unmeasured edges last
        (None, {}, {"lon", "bom", "syd"}, []),
    ],
)
def test_rank_edges(region: str | None, rtts: dict[str, float], down: set[str], expected: list[str]) -> None:
    edges = [EdgeState(e.name, e.region, e.address, healthy=e.name not in down) for e in EDGES]
    assert [e.name for e in rank_edges(edges, region, NEARBY, rtts)] == expected


def test_latency_table_keeps_reports_per_network_and_forgets_the_oldest() -> None:
    table = LatencyTable(capacity=2)
    table.report("10.0.0.1", {"lon": 0.1})
    table.report("10.0.0.2", {"lon": 0.2})  # same /24: averaged with the first
    assert table.of("10.0.0.99")["lon"] == pytest.approx(0.13)
    table.report("10.0.1.1", {"syd": 0.1})
    table.report("10.0.2.1", {"syd": 0.1})
    assert table.of("10.0.0.1") == {} and table.of("10.0.2.1") == {"syd": 0.1}


# -- a router in front of two real edges ---------------------------------------------------------
@dataclass
class Rig:
    config: CdnConfig  # the router's
    edge_config: CdnConfig
    edges: dict[str, RunningServer]
    router_url: str
    app: Any

    async def restart_edge(self, name: str) -> None:
        """Start edge `name` again on the address it had."""
        port = self.edges[name].port
        app = build_edge_app(self.edge_config, name)
        self.edges[name] = await start_server(app, f"{EDGE_HOSTS[name]}:{port}", name=name)


def _raw(origin_url: str, **router: Any) -> dict[str, Any]:
    return {
        "origins": {"site": {"url": origin_url}},
        "edges": {
            "edge-lon": {"listen": f"{EDGE_HOSTS['edge-lon']}:0", "region": "eu-west"},
            "edge-syd": {"listen": f"{EDGE_HOSTS['edge-syd']}:0", "region": "ap-southeast"},
        },
        "distributions": {
            "site": {"domains": ["site.test", "127.0.0.1", *EDGE_HOSTS.values()], "origin": "site"},
            # a live stream's playlists and watch pages, here from the same test folder
            "live": {"kind": "streaming", "domains": [LIVE], "origin": "site"},
        },
        "router": {"listen": "127.0.0.1:0", **router},
    }


@pytest.fixture
async def rig(origin: Any, serve: Callable[..., Any]) -> AsyncIterator[Rig]:
    edge_config = parse_config(_raw(origin.url))
    edges = {
        name: await serve(build_edge_app(edge_config, name), name=name, listen=edge_config.edges[name].listen)
        for name in EDGE_HOSTS
    }
    config = parse_config(
        _raw(
            origin.url,
            dns_listen="127.0.0.1:0",
            health_interval=INTERVAL,
            health_timeout=0.5,
            regions={f"{AP}/32": "ap-southeast", f"{EU}/32": "eu-west", "127.0.0.1/32": "eu-west"},
            nearby={"ap-southeast": ["eu-west"]},
            addresses={name: f"{EDGE_HOSTS[name]}:{server.port}" for name, server in edges.items()},
        )
    )
    app = build_router_app(Router(config))
    router = await serve(app, name="router")
    rig = Rig(config, edge_config, edges, router.url, app)
    yield rig
    await router.stop()  # first, so the edges have no health checks to wait for
    for server in rig.edges.values():  # restarted edges are not the serve fixture's
        await server.stop()


def client_from(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=5)


async def routed_to(rig: Rig, client: str, path: str = "/hello.txt") -> httpx.Response:
    async with client_from(client) as http:
        return await http.get(rig.router_url + path)


async def test_redirects_each_client_to_the_edge_of_its_region_keeping_path_and_query(rig: Rig) -> None:
    for client, edge in ((AP, "edge-syd"), (EU, "edge-lon")):
        resp = await routed_to(rig, client, "/hello.txt?v=1&x=%20y")
        port = rig.edges[edge].port
        assert resp.status_code == 302
        assert resp.headers["location"] == f"http://{EDGE_HOSTS[edge]}:{port}/hello.txt?v=1&x=%20y"
        assert resp.headers["x-cdn-edge"] == edge and resp.headers["cache-control"] == "no-store"
        assert resp.headers["x-cdn-route"].startswith("region ")
        async with client_from(client) as http:  # a browser follows it to the edge, which serves the object
            followed = await http.get(rig.router_url + "/hello.txt", follow_redirects=True)
        assert followed.status_code == 200 and followed.text == "hello, world\n"
        assert followed.headers["x-cache"].endswith(f"from {edge}")


async def test_players_and_the_load_tester_are_sent_to_the_edge_for_live_and_watch_paths(rig: Rig, origin: Any) -> None:
    playlist = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=250000\nsource/index.m3u8\n"
    (origin.root / "live" / "test").mkdir(parents=True)
    (origin.root / "live" / "test" / "master.m3u8").write_text(playlist)
    port = rig.edges["edge-syd"].port
    for path in (
        "/live/test/master.m3u8",
        "/live/test/source/index.m3u8?_HLS_msn=12&_HLS_part=3",
        "/watch/test?mode=hls",
        "/live/test/source/ep/part12.3.m4s",
    ):
        async with client_from(AP) as http:
            resp = await http.get(rig.router_url + path, headers={"Host": LIVE})
        assert resp.status_code == 302, resp.text
        assert resp.headers["location"] == f"http://{EDGE_HOSTS['edge-syd']}:{port}{path}"
        assert resp.headers["x-cdn-edge"] == "edge-syd" and resp.headers["cache-control"] == "no-store"
    # The load tester (aiohttp, the distribution's Host on every request) follows the 302 and
    # gets the playlist from the streaming distribution on the edge.
    connector = aiohttp.TCPConnector(local_addr=(AP, 0))
    async with aiohttp.ClientSession(connector=connector, headers={"Host": LIVE}) as session:
        async with session.get(rig.router_url + "/live/test/master.m3u8") as followed:
            assert followed.status == 200 and await followed.text() == playlist
            assert str(followed.url).startswith(f"http://{EDGE_HOSTS['edge-syd']}:{port}/")
            assert followed.headers["x-cache"].lower().endswith("from edge-syd")


async def test_unknown_host_is_misdirected(rig: Rig) -> None:
    async with client_from(AP) as http:
        resp = await http.get(rig.router_url + "/", headers={"host": "other.test"})
    assert resp.status_code == 421 and "other.test" in resp.text


async def test_a_stopped_edge_is_avoided_within_the_interval_and_used_again_when_back(rig: Rig) -> None:
    async def sent_to(edge: str) -> bool:
        return (await routed_to(rig, AP)).headers.get("x-cdn-edge") == edge

    await rig.edges["edge-syd"].stop()
    took = await until(lambda: sent_to("edge-lon"), 5)  # the nearby region takes over
    assert took < INTERVAL + 0.5 + 0.5  # one interval, one timeout, slack for a loaded machine
    await rig.restart_edge("edge-syd")
    await until(lambda: sent_to("edge-syd"), 5)


async def test_no_healthy_edge_is_a_clear_503_and_a_dns_servfail(rig: Rig) -> None:
    for server in rig.edges.values():
        await server.stop()

    async def unavailable() -> bool:
        return (await routed_to(rig, AP)).status_code == 503

    await until(unavailable, 5)
    resp = await routed_to(rig, AP)
    assert "no healthy edge for distribution site" in resp.text and "edge-syd" in resp.text
    assert resp.headers["retry-after"] == "1"
    answer = await asyncio.to_thread(_ask, rig, "site.test", "127.0.0.1")
    assert answer.header.rcode == RCODE.SERVFAIL


async def test_client_reported_rtts_pick_the_edge_for_clients_of_no_region(rig: Rig) -> None:
    near_syd, near_lon = UNMAPPED
    async with client_from(near_syd) as http:
        assert (
            await http.post(rig.router_url + "/_router/rtt", json={"edge-syd": 0.02, "edge-lon": 0.3})
        ).status_code == 204
        assert (await http.post(rig.router_url + "/_router/rtt", json={"nope": 1})).status_code == 400
    async with client_from(near_lon) as http:
        await http.post(rig.router_url + "/_router/rtt", json={"edge-syd": 0.3, "edge-lon": 0.02})
    assert (await routed_to(rig, near_syd)).headers["x-cdn-edge"] == "edge-syd"
    lon = await routed_to(rig, near_lon)
    assert lon.headers["x-cdn-edge"] == "edge-lon" and lon.headers["x-cdn-route"] == "rtt 20.0 ms"


async def test_measured_rtt_picks_the_nearer_edge_and_follows_a_change(origin: Any, serve: Callable[..., Any]) -> None:
    """No region map: the router's own health-check round trips, through delay relays, decide."""
    edge_config = parse_config(_raw(origin.url))
    relays: dict[str, DelayRelay] = {}
    try:
        for name, delay in (("edge-lon", 0.030), ("edge-syd", 0.002)):
            edge = await serve(build_edge_app(edge_config, name), name=name, listen=edge_config.edges[name].listen)
            relays[name] = DelayRelay((EDGE_HOSTS[name], 0), (EDGE_HOSTS[name], edge.port), delay)
            await relays[name].start()
        config = parse_config(
            _raw(
                origin.url,
                health_interval=0.05,
                addresses={name: f"{EDGE_HOSTS[name]}:{relay.port}" for name, relay in relays.items()},
            )
        )
        app = build_router_app(Router(config))
        router = await serve(app, name="router")
        rig = Rig(config, edge_config, {}, router.url, app)

        async def sent_to(edge: str) -> bool:
            return (await routed_to(rig, UNMAPPED[0])).headers.get("x-cdn-edge") == edge

        assert await sent_to("edge-syd")
        relays["edge-syd"].delay = 0.06  # the route to Sydney gets slow: London is nearer now
        await until(lambda: sent_to("edge-lon"), 5)
    finally:
        for relay in relays.values():
            await relay.close()


# -- DNS --------------------------------------------------------------------------------------------
def _ask(rig: Rig, name: str, source: str, qtype: str = "A") -> DNSRecord:
    """A UDP query from `source` (dnslib builds and parses; the socket picks the source address)."""
    port = rig.app.state.dns.port
    query = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(2)
        sock.sendto(query.pack(), ("127.0.0.1", port))
        return DNSRecord.parse(sock.recv(4096))


async def test_dns_answers_a_records_with_the_nearest_edge(rig: Rig) -> None:
    port = rig.app.state.dns.port
    plain = DNSRecord.parse(
        await asyncio.to_thread(DNSRecord.question("SITE.test.").send, "127.0.0.1", port, timeout=2)
    )
    assert plain.header.rcode == RCODE.NOERROR and plain.header.aa == 1
    assert [(str(rr.rdata), rr.rtype, rr.ttl) for rr in plain.rr] == [(EDGE_HOSTS["edge-lon"], QTYPE.A, 5)]
    from_ap = await asyncio.to_thread(_ask, rig, "site.test", AP)
    assert [str(rr.rdata) for rr in from_ap.rr] == [EDGE_HOSTS["edge-syd"]]
    aaaa = await asyncio.to_thread(_ask, rig, "site.test", AP, "AAAA")
    assert aaaa.header.rcode == RCODE.NOERROR and aaaa.rr == []  # the name exists, no IPv6 edge
    other = await asyncio.to_thread(_ask, rig, "example.com", AP)
    assert other.header.rcode == RCODE.REFUSED and other.rr == []


async def test_dns_follows_health(rig: Rig) -> None:
    await rig.edges["edge-syd"].stop()

    async def lon() -> bool:
        answer = await asyncio.to_thread(_ask, rig, "site.test", AP)
        return [str(rr.rdata) for rr in answer.rr] == [EDGE_HOSTS["edge-lon"]]

    await until(lon, 5)
    await rig.restart_edge("edge-syd")


# -- config and the `cdn router` command -----------------------------------------------------------
@pytest.mark.parametrize(
    ("router", "message"),
    [
        (
            {"listen": "127.0.0.1:1", "regions": {"10.0.0.1/8": "x"}},
            r"router.regions.10.0.0.1/8: not a network.*host bits",
        ),
        (
            {"listen": "127.0.0.1:1", "addresses": {"edge-nope": "1.2.3.4:80"}},
            r"router.addresses.edge-nope: no edge named",
        ),
        (
            {"listen": "127.0.0.1:1", "addresses": {"edge-lon": "nowhere"}},
            r"router.addresses.edge-lon: 'nowhere' is not HOST:PORT",
        ),
        ({"listen": "127.0.0.1:1", "nearby": {"eu": "ap"}}, r"router.nearby.eu: must be a list"),
        ({"listen": "127.0.0.1:1", "health_interval": 0}, r"router.health_interval: must be greater than 0"),
        ({"dns_listen": "127.0.0.1:53"}, r"router.listen: missing"),
    ],
)
def test_router_config_mistakes_are_named(router: dict[str, Any], message: str) -> None:
    raw = _raw("http://127.0.0.1:1")
    raw["router"] = router
    with pytest.raises(ValueError, match=message):
        parse_config(raw)


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_cdn_router_command_redirects_and_answers_dns(rig: Rig, tmp_path: Any) -> None:
    http_port, dns_port = _free_port(), _free_port(socket.SOCK_DGRAM)
    addresses = "\n".join(f'{name} = "{EDGE_HOSTS[name]}:{server.port}"' for name, server in rig.edges.items())
    config = tmp_path / "cdn.toml"
    config.write_text(f"""
[origins.site]
url = "http://127.0.0.1:9"
[edges.edge-lon]
listen = "{EDGE_HOSTS["edge-lon"]}:0"
region = "eu-west"
[edges.edge-syd]
listen = "{EDGE_HOSTS["edge-syd"]}:0"
region = "ap-southeast"
[distributions.site]
domains = ["site.test", "127.0.0.1"]
origin = "site"
[router]
listen = "127.0.0.1:{http_port}"
dns_listen = "127.0.0.1:{dns_port}"
[router.regions]
"{AP}/32" = "ap-southeast"
"127.0.0.1/32" = "eu-west"
[router.addresses]
{addresses}
""")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "web_dist.cli",
        "router",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"ready router"), line
        async with client_from(AP) as http:
            resp = await http.get(f"http://127.0.0.1:{http_port}/a/b.txt?q=1")
        assert resp.status_code == 302 and resp.headers["x-cdn-edge"] == "edge-syd"
        reply = DNSRecord.parse(
            await asyncio.to_thread(DNSRecord.question("site.test").send, "127.0.0.1", dns_port, timeout=2)
        )
        assert [str(rr.rdata) for rr in reply.rr] == [EDGE_HOSTS["edge-lon"]]
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_edge_hostnames_keep_the_distribution_for_browsers(rig: Rig, origin: Any) -> None:
    """With `edge_hostnames` a browser is sent to "EDGE.DOMAIN": the Host it then sends still
    names the streaming distribution, which the edge's own address would not (it is the web
    distribution's here), and the router's DNS answers that name with that edge."""
    (origin.root / "live" / "test").mkdir(parents=True)
    (origin.root / "live" / "test" / "master.m3u8").write_text("#EXTM3U\n")
    raw = _raw(
        origin.url,
        edge_hostnames=True,
        regions={f"{AP}/32": "ap-southeast"},
        addresses={name: f"{EDGE_HOSTS[name]}:{server.port}" for name, server in rig.edges.items()},
    )
    router = Router(parse_config(raw))
    port = rig.edges["edge-syd"].port
    response = await _via(router, AP, LIVE, "/live/test/master.m3u8?x=1")
    assert response.status_code == 302
    assert response.headers["location"] == f"http://edge-syd.{LIVE}:{port}/live/test/master.m3u8?x=1"
    # an address has no name to keep: the edge's address, as without the option
    by_address = await _via(router, AP, "127.0.0.1", "/hello.txt")
    assert by_address.headers["location"] == f"http://{EDGE_HOSTS['edge-syd']}:{port}/hello.txt"
    # DNS: the edge's own name is that edge, whichever region asks; other names are not served
    assert router.resolve(f"edge-syd.{LIVE}.", EU) == EDGE_HOSTS["edge-syd"]
    assert not router.serves(f"edge-nowhere.{LIVE}")
    # the edge takes its own name in front of the domain as that distribution, and no other edge's
    async with httpx.AsyncClient() as http:
        url = f"http://{EDGE_HOSTS['edge-syd']}:{port}/live/test/master.m3u8"
        ours = await http.get(url, headers={"Host": f"edge-syd.{LIVE}:{port}"})
        theirs = await http.get(url, headers={"Host": f"edge-lon.{LIVE}:{port}"})
    assert ours.status_code == 200 and ours.text == "#EXTM3U\n"
    assert theirs.status_code == 421


async def _via(router: Router, client: str, host: str, target: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=build_router_app(router), client=(client, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as http:
        return await http.get(target, headers={"Host": host})


async def test_a_canned_signed_url_keeps_working_after_the_302_to_the_edge_host(
    origin: Any, serve: Callable[..., Any], tmp_path: Any
) -> None:
    """A URL signed for the distribution's domain at the router (canned: the edge rebuilds the
    policy from the URL it is asked for) is still good at "EDGE.DOMAIN:PORT", where the router's
    302 sends the viewer; changed in any other way it is refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from web_dist.config.signing import Policy, signed_url

    (origin.root / "private").mkdir()
    (origin.root / "private" / "a.txt").write_text("for signed viewers\n")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    router_port = _free_port()
    raw = _raw(origin.url, edge_hostnames=True, regions={"127.0.0.1/32": "eu-west"})
    raw["router"]["listen"] = f"127.0.0.1:{router_port}"
    raw["distributions"]["live"] |= {
        "trusted_keys": {"K1": str(public)},
        "behaviors": [{"path": "/private/*", "signed": True}],
    }
    config = parse_config(raw)
    edge = await serve(build_edge_app(config, "edge-lon"), name="edge-lon", listen=config.edges["edge-lon"].listen)
    addresses = {"edge-lon": f"{EDGE_HOSTS['edge-lon']}:{edge.port}", "edge-syd": "127.0.0.99:9"}
    router = await serve(
        build_router_app(Router(parse_config(raw | {"router": raw["router"] | {"addresses": addresses}}))),
        name="router",
        listen=f"127.0.0.1:{router_port}",
    )
    url = signed_url(
        key,
        "K1",
        f"http://{LIVE}:{router_port}/private/a.txt",
        Policy(f"http://{LIVE}:{router_port}/private/a.txt", int(time.time()) + 60),
    )
    async with httpx.AsyncClient(timeout=5) as http:
        found = await http.get(
            router.url + url.removeprefix(f"http://{LIVE}:{router_port}"), headers={"Host": f"{LIVE}:{router_port}"}
        )
        assert found.status_code == 302
        location = httpx.URL(found.headers["location"])
        assert location.host == f"edge-lon.{LIVE}" and location.port == edge.port
        at_edge = f"http://{EDGE_HOSTS['edge-lon']}:{edge.port}{location.raw_path.decode()}"
        served = await http.get(at_edge, headers={"Host": f"{location.host}:{location.port}"})
        assert served.status_code == 200 and served.text == "for signed viewers\n"
        other = await http.get(at_edge.replace("a.txt", "b.txt"), headers={"Host": f"{location.host}:{location.port}"})
        assert other.status_code == 403 and "signature does not match" in other.text
        # another edge's name in front of the domain is not this edge's alias
        theirs = await http.get(at_edge, headers={"Host": f"edge-syd.{LIVE}:{location.port}"})
        assert theirs.status_code == 421


# -- HTTPS: the router over TLS, and to the edges' HTTPS ports ---------------------------------------
async def test_https_viewers_and_https_behaviors_are_sent_to_the_edges_https_port(
    origin: Any, serve: Callable[..., Any], tmp_path: Any
) -> None:
    """A viewer that came to the router over HTTPS is sent to the edge's HTTPS address (and
    gets the file there, over real TLS); so is a plain viewer of a path whose behavior wants
    HTTPS; plain viewers of other paths stay on HTTP; a distribution without an HTTPS edge is
    a clear 503 over HTTPS, never a downgrade."""
    files = make_server_cert(tmp_path, ["localhost", "site.test", "127.0.0.1", *EDGE_HOSTS.values()])
    lon = EDGE_HOSTS["edge-lon"]
    https_port = _free_port()
    raw = _raw(origin.url)
    raw["edges"]["edge-lon"].update(
        https_listen=f"{lon}:{https_port}", tls_cert=str(files.cert), tls_key=str(files.key)
    )
    raw["edges"] = {"edge-lon": raw["edges"]["edge-lon"], "edge-plain": {"listen": "127.0.0.13:0"}}
    raw["distributions"]["site"].update(
        edges=["edge-lon"], behaviors=[{"path": "/secure/*", "viewer_protocol": "https-only"}]
    )
    raw["distributions"]["live"]["edges"] = ["edge-plain"]
    edge_config = parse_config(raw)
    app = build_edge_app(edge_config, "edge-lon")
    edge = await serve(app, name="edge-lon", listen=edge_config.edges["edge-lon"].listen)
    edge_https = await start_server(
        SharedApp(app),
        f"{lon}:{https_port}",
        name="edge-lon https",
        engine="granian",
        tls_cert=files.cert,
        tls_key=files.key,
    )
    # edge-plain is only health-checked: edge-lon answers for it
    raw["router"].update(
        https_listen="127.0.0.1:0",
        tls_cert=str(files.cert),
        tls_key=str(files.key),
        addresses={"edge-lon": f"{lon}:{edge.port}", "edge-plain": f"{lon}:{edge.port}"},
    )
    router = Router(parse_config(raw))
    router_app = build_router_app(router)
    plain = await serve(router_app, name="router")
    secure = await start_server(
        SharedApp(router_app), "127.0.0.1:0", name="router https", tls_cert=files.cert, tls_key=files.key
    )
    trust = ssl.create_default_context(cafile=str(files.ca))
    try:
        async with httpx.AsyncClient(verify=trust, timeout=5, follow_redirects=True) as client:
            got = await client.get(f"https://localhost:{secure.port}/hello.txt?v=1", headers={"host": "site.test"})
            assert [r.headers["location"] for r in got.history] == [f"https://{lon}:{https_port}/hello.txt?v=1"]
            assert got.status_code == 200 and got.text == "hello, world\n" and got.http_version == "HTTP/1.1"
            stay = await client.get(f"{plain.url}/hello.txt", headers={"host": "site.test"}, follow_redirects=False)
            assert stay.headers["location"] == f"http://{lon}:{edge.port}/hello.txt"
            moved = await client.get(f"{plain.url}/secure/x", headers={"host": "site.test"}, follow_redirects=False)
            assert moved.headers["location"] == f"https://{lon}:{https_port}/secure/x"
            nowhere = await client.get(f"https://localhost:{secure.port}/watch/x", headers={"host": LIVE})
            assert nowhere.status_code == 503 and "no edge of distribution live has HTTPS" in nowhere.text
            assert (
                await client.get(f"{plain.url}/watch/x", headers={"host": LIVE}, follow_redirects=False)
            ).status_code == 302
    finally:
        await secure.stop()
        await plain.stop()
        await edge_https.stop()


def test_router_https_needs_a_certificate_and_https_addresses_an_https_edge() -> None:
    raw = _raw("http://127.0.0.1:1")
    raw["router"]["https_listen"] = "127.0.0.1:0"
    with pytest.raises(ValueError, match=r"router\.tls_cert: missing: https_listen needs tls_cert and tls_key"):
        parse_config(raw)
    raw = _raw("http://127.0.0.1:1", https_addresses={"edge-lon": "127.0.0.1:443"})
    with pytest.raises(ValueError, match=r"router\.https_addresses\.edge-lon: edge 'edge-lon' has no https_listen"):
        parse_config(raw)
