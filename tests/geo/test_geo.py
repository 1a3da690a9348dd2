"""The geography: a hit near the user beats going to the far origin; a miss costs one more
edge-origin round trip; namespaces and processes never outlive a run, even a failed one.

The namespace tests need root and `ip netns`; CI runs as root. Elsewhere they are skipped with
the reason in the summary (pyproject has -ra).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from web_dist.geo import format_table, write_html
from web_dist.geo.netns import (
    NS_PREFIX,
    DelayRelay,
    Geography,
    _namespaces,
    netns_available,
    remove_stale_namespaces,
)
from web_dist.geo.topology import TopologyError, load_topology, parse_topology

REPO = Path(__file__).resolve().parents[2]
SCALE = 0.5  # half the real delays: still far above scheduling noise, twice as quick
NO_NETNS = netns_available()
needs_netns = pytest.mark.skipif(
    NO_NETNS is not None, reason=f"NAMESPACE GEOGRAPHY NOT TESTED: {NO_NETNS} (CI runs as root)"
)
TWO_PLACES = {
    "locations": {"a": {"role": "origin"}, "b": {"role": "edge"}, "c": {"role": "client"}},
    "links": [{"between": ["a", "b"], "delay_ms": 10}, {"between": ["b", "c"], "delay_ms": 10}],
}


def ours() -> list[str]:
    return [ns for ns in _namespaces() if ns.startswith(f"{NS_PREFIX}{os.getpid()}-")]


async def test_the_relay_holds_every_chunk_for_the_delay_and_a_new_connection_for_a_handshake() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    relay = DelayRelay(("127.0.0.1", 0), ("127.0.0.1", server.sockets[0].getsockname()[1]), 0.05)
    await relay.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        started = time.perf_counter()
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        first = time.perf_counter() - started  # handshake (one round trip) + one round trip
        started = time.perf_counter()
        writer.write(b"pong")
        assert await reader.readexactly(4) == b"pong"
        again = time.perf_counter() - started
        writer.close()
        assert 0.195 <= first < 0.3
        assert 0.098 <= again < 0.18
    finally:
        await relay.close()
        server.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"locations": {"a": {"role": "origin"}, "c": {"role": "client"}}, "links": []}, "needs exactly one origin"),
        ({"links": [{"between": ["a", "x"], "delay_ms": 1}]}, "must name two different locations"),
        ({"links": [{"between": ["a", "b"], "delay_ms": -1}]}, "delay_ms"),
        ({"links": [{"between": ["b", "c"], "delay_ms": 1}]}, "no link between b and a"),
        ({"locations": {**TWO_PLACES["locations"], "Bad_Name": {"role": "client"}}}, "names are"),
    ],
)
def test_topology_mistakes_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse_topology({**TWO_PLACES, **change})


@needs_netns
async def test_a_hit_near_the_user_beats_the_origin_and_a_miss_costs_one_edge_origin_round_trip(tmp_path: Path) -> None:
    from web_dist.geo import run_geography

    topology = replace(load_topology(REPO / "geo" / "topology.toml").scaled(SCALE), object_bytes=32 * 1024)
    result = await run_geography(topology, tmp_path, repeat=3)
    rows = result.rows
    print(format_table(result))
    for row in rows.values():
        assert [(s["status"], s["bytes"]) for s in row.samples] == [(200, 32 * 1024)] * len(row.samples)
    assert rows["first"].cache == rows["miss"].cache == "miss from edge-mumbai"
    assert rows["hit"].cache == "hit from edge-mumbai"
    hit, miss, origin = rows["hit"].ttfb, rows["miss"].ttfb, rows["origin"].ttfb
    # The delays are real: nothing arrives sooner than they allow.
    assert hit >= 0.97 * rows["hit"].model_ttfb and origin >= 0.97 * rows["origin"].model_ttfb
    # A hit saves at least half of what the delays alone say it should (140 ms at this scale).
    assert hit < origin - 0.5 * (rows["origin"].model_ttfb - rows["hit"].model_ttfb)
    # A miss on the edge's open connection to the origin: one edge-origin round trip (55 ms), not two.
    edge_origin = topology.link("mumbai", "london").rtt
    assert 0.8 * edge_origin <= miss - hit <= 1.6 * edge_origin + 0.015, format_table(result)
    write_html(result, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "via edge mumbai: repeat (hit)" in page
    assert ours() == []


@needs_netns
async def test_namespaces_and_processes_are_removed_when_a_run_fails(tmp_path: Path) -> None:
    topology = parse_topology(TWO_PLACES)
    with pytest.raises(RuntimeError, match="half way"):
        async with Geography(topology, tmp_path) as geo:
            relay = f"{geo.address('a', 'b')}:9000=127.0.0.1:9001@0.01"
            proc = await geo.spawn("a", ["-m", "web_dist.geo", "relay", relay], "relay a")
            assert len(ours()) == 3
            raise RuntimeError("a test failing half way")
    assert ours() == []
    assert proc.returncode is not None


@needs_netns
def test_namespaces_left_by_a_dead_run_are_removed() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = f"{NS_PREFIX}{dead.pid}-1-x", f"{NS_PREFIX}{os.getpid()}-999-y"
    try:
        for ns in (stale, live):
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
        assert stale in remove_stale_namespaces()
        assert stale not in _namespaces() and live in _namespaces()
    finally:
        for ns in (stale, live):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
