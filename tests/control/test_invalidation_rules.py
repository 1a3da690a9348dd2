"""The pure rules: which paths CloudFront accepts, what a path matches, when a record completes."""

from __future__ import annotations

import pytest

from web_dist.config.invalidation import (
    Event,
    Invalidation,
    InvalidRequest,
    check_paths,
    check_tags,
    path_matches,
)


@pytest.mark.parametrize("paths", [["/"], ["/index.html"], ["/images/*"], ["/*"], ["/a%20b.txt", "/ä.html"]])
def test_cloudfront_paths_are_accepted(paths: list[str]) -> None:
    assert check_paths(paths, 10) == tuple(paths)


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["index.html"], "must start with '/'"),
        (["*"], "must start with '/'"),
        (["/images/*.jpg"], "'*' is only allowed as the last character"),
        (["/a/*/b"], "'*' is only allowed as the last character"),
        (["/a b"], "space or a control character"),
        (["/a\nb"], "space or a control character"),
        ([42], "must be a string"),
        ([], "non-empty list"),
        ("/a", "non-empty list"),
        (["/" + "a" * 5000], "longer than 4096"),
        ([f"/{i}" for i in range(11)], "too many paths: 11 (at most 10"),
    ],
)
def test_invalid_paths_are_refused_with_the_reason(paths: object, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_paths(paths, 10)
    assert message in str(info.value)


def test_duplicate_paths_count_once() -> None:
    assert check_paths(["/a", "/b", "/a"], 10) == ("/a", "/b")


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/a.html", "/a.html", True),
        ("/a.html", "/a.html.bak", False),
        ("/images/*", "/images/x/y.png", True),
        ("/images/*", "/images", False),
        ("/images*", "/images-old/x", True),
        ("/*", "/anything", True),
    ],
)
def test_path_matching(pattern: str, path: str, matches: bool) -> None:
    assert path_matches(pattern, path) is matches


def test_tags_are_checked() -> None:
    assert check_tags(["a", "b", "a"]) == ("a", "b")
    for bad in ([], ["two words"], ["a,b"], [""], [1]):
        with pytest.raises(InvalidRequest):
            check_tags(bad)


def test_a_record_completes_when_every_edge_of_it_has_applied() -> None:
    event = Event("I1", "invalidation", "site", ("/a",), created=100.0)
    record = Invalidation(event, ("e1", "e2"), {"e1": 100.5})
    assert record.status == "InProgress" and record.completed_at is None
    done = Invalidation(event, ("e1", "e2"), {"e1": 100.5, "e2": 101.25})
    assert done.status == "Completed" and done.completed_at == 101.25
    body = done.to_api()
    assert body["paths"] == ["/a"] and body["edges"]["e2"] == {"applied": 101.25}


def test_events_round_trip_as_json() -> None:
    event = Event("P1", "purge", "site", tags=("t",), soft=True, created=5.0, origin_edge="e1")
    assert Event.from_json(event.to_json()) == event
