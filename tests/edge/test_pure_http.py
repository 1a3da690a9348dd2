"""Byte ranges, preconditions, cache keys and host/path matching: pure rules, table-driven."""

from __future__ import annotations

import pytest

from edge.cache_key import cache_key, forwarded_query
from edge.store import CachedResponse, MemoryStore
from web_dist.config import CacheBehavior, Distribution
from web_dist.config.behaviors import DistributionIndex, behavior_for, host_name, path_matches


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/images/*.jpg", "/images/a.jpg", True),
        ("/images/*.jpg", "/images/deep/a.jpg", True),  # * crosses slashes, as CloudFront's does
        ("/images/*.jpg", "/images/a.JPG", False),  # case-sensitive
        ("/images/*.jpg", "/images/a.png", False),
        ("/a?c", "/abc", True),
        ("/a?c", "/ac", False),
        ("/live/*/index.m3u8", "/live/x/index.m3u8", True),
        ("/file.(1).txt", "/file.(1).txt", True),  # regex characters are literal
        ("*", "/anything", True),
    ],
)
def test_path_patterns(pattern: str, path: str, matches: bool) -> None:
    assert path_matches(pattern, path) is matches


def _dist(
    id_: str, domains: tuple[str, ...], behaviors: tuple[CacheBehavior, ...] = (CacheBehavior(),)
) -> Distribution:
    return Distribution(id_, "web", domains, "o", behaviors, ("e",))


def test_first_matching_behavior_wins_and_default_is_last() -> None:
    jpg = CacheBehavior(path_pattern="/img/*.jpg", default_ttl=1)
    img = CacheBehavior(path_pattern="/img/*", default_ttl=2)
    default = CacheBehavior(default_ttl=3)
    dist = _dist("d", ("a.test",), (jpg, img, default))
    assert behavior_for(dist, "/img/x.jpg") is jpg
    assert behavior_for(dist, "/img/x.png") is img
    assert behavior_for(dist, "/other") is default


@pytest.mark.parametrize(
    ("host", "dist"),
    [
        ("www.example.com", "site"),
        ("WWW.Example.COM:8080", "site"),
        ("www.example.com.", "site"),
        ("cdn.img.example.com", "images"),
        ("img.example.com", None),  # *.img.example.com needs a label before it
        ("127.0.0.1:9000", "local"),
        ("[::1]:9000", "local"),
        ("evil.test", None),
        ("", None),
    ],
)
def test_host_picks_the_distribution(host: str, dist: str | None) -> None:
    index = DistributionIndex(
        [
            _dist("site", ("www.example.com",)),
            _dist("images", ("*.img.example.com",)),
            _dist("local", ("127.0.0.1", "[::1]")),
        ]
    )
    found = index.lookup(host)
    assert (found.id if found else None) == dist


def test_host_name() -> None:
    assert host_name("Example.com:80") == "example.com"
    assert host_name("[::1]:8080") == "[::1]"


def test_cache_key_has_only_the_configured_query_and_headers() -> None:
    b = CacheBehavior(query_keys=("v", "w"), header_keys=("x-device",))
    assert forwarded_query(b, "z=1&w=2&v=1") == "v=1&w=2"
    assert forwarded_query(CacheBehavior(query_keys="all"), "b=2&a=1") == "a=1&b=2"
    assert forwarded_query(CacheBehavior(), "a=1") == ""
    assert cache_key("d", b, "/p", "v=1", {"x-device": "tv"}) == "d:/p?v=1|x-device=tv"
    assert cache_key("d", b, "/p", "", {}) == "d:/p|x-device="


def _entry(size: int) -> CachedResponse:
    return CachedResponse(200, [], b"x" * size, 0.0, 0.0, 60)


def test_memory_store_is_bounded_in_bytes_and_evicts_least_recently_used() -> None:
    store = MemoryStore(capacity_bytes=3000, max_object_bytes=2000)
    for key in ("a", "b", "c"):
        assert store.put(key, _entry(700))
    store.get("a")  # a is now the most recent
    assert store.put("d", _entry(700))
    assert store.get("b") is None and store.get("a") is not None
    assert store.used_bytes <= 3000 and store.evictions == 1
    assert not store.put("huge", _entry(2500))  # over max_object_bytes
    assert store.get("huge") is None
