"""CloudFront path patterns: semantics table, and hostile inputs that the old regex took seconds on."""

from __future__ import annotations

import time

import pytest

from web_dist.config.behaviors import path_matches
from web_dist.config.glob import glob_match
from web_dist.config.signing import resource_matches

TABLE = [
    ("/images/*.jpg", "/images/a.jpg", True),
    ("/images/*.jpg", "/images/sub/dir/a.jpg", True),
    ("/images/*.jpg", "/images/a.JPG", False),
    ("/images/*.jpg", "/images/a.jpg.png", False),
    ("/images/*.jpg", "/other/a.jpg", False),
    ("/images/*.jpg", "/images/.jpg", True),
    ("*.gif", "/a/b.gif", True),
    ("*.gif", ".gif", True),
    ("*.gif", "gif", False),
    ("/a?c", "/abc", True),
    ("/a?c", "/a/c", True),
    ("/a?c", "/ac", False),
    ("/a?c", "/abbc", False),
    ("/v/*/*/*.jpg", "/v/x/y/z.jpg", True),
    ("/v/*/*/*.jpg", "/v///.jpg", True),
    ("/v/*/*/*.jpg", "/v/x/y.jpg", False),
    ("/v/*/*/*.jpg", "/v/x/y/z.png", False),
    ("**", "", True),
    ("**", "/anything", True),
    ("*", "", True),
    ("", "", True),
    ("", "/", False),
    ("/exact", "/exact", True),
    ("/exact", "/exact/", False),
    ("/exact", "/Exact", False),
    ("a*a", "a", False),
    ("a*a", "aa", True),
    ("*ab*ab*", "abab", True),
    ("*ab*ab*", "aba", False),
    ("*?b?*", "xaby", True),
    ("*?b?*", "bb", False),
    ("?*?", "ab", True),
    ("?*?", "a", False),
    ("/a.b", "/axb", False),
    ("/[ab]", "/[ab]", True),
    ("/[ab]", "/a", False),
    ("/x+", "/xx", False),
    ("/p\\*", "/p\\zz", True),
    ("/*.m3u8?", "/live/i.m3u8x", True),
    ("*\n*", "a\nb", True),
]


@pytest.mark.parametrize(("pattern", "text", "expected"), TABLE)
def test_glob_table(pattern: str, text: str, expected: bool) -> None:
    assert glob_match(pattern, text) is expected
    assert path_matches(pattern, text) is expected


def test_resource_matches_keeps_scheme_swap() -> None:
    assert resource_matches("https://d.example/*", "http://d.example/a")
    assert resource_matches("http://d.example/a?c", "https://d.example/abc")
    assert not resource_matches("https://d.example/*.ts", "https://d.example/a.m3u8")


HOSTILE = [
    ("/v/*/*/*.jpg", "/v/" + "a/" * 4096),  # 8 KB; the old regex took ~12 s on this
    ("/v/*/*/*.jpg", "/v/" + "a/" * 32768),  # 64 KB
    ("*a" * 200, "a" * 65536 + "b"),
    ("*a" * 200 + "*", "a" * 65536 + "b"),
    ("*?a" * 200 + "*", "b" * 65536),
]


@pytest.mark.parametrize(("pattern", "text"), HOSTILE)
def test_hostile_inputs_finish_fast(pattern: str, text: str) -> None:
    start = time.perf_counter()
    glob_match(pattern, text)
    path_matches(pattern, text)
    resource_matches(pattern, text)
    assert time.perf_counter() - start < 0.5


def test_hostile_results_are_right() -> None:
    assert not glob_match("/v/*/*/*.jpg", "/v/" + "a/" * 4096)
    assert glob_match("/v/*/*/*.jpg", "/v/" + "a/" * 4096 + ".jpg")
    assert not glob_match("*a" * 200, "a" * 65536 + "b")
    assert glob_match("*a" * 200 + "*", "a" * 65536 + "b")
    assert not glob_match("*?a" * 200 + "*", "b" * 65536)
