"""Freshness, age and storability: RFC 9111 and CloudFront's TTL rules, table-driven."""

from __future__ import annotations

import pytest

from edge.freshness import (
    corrected_initial_age,
    decide_lifetime,
    parse_cache_control,
    parse_http_date,
)
from web_dist.config import CacheBehavior

NOW = 1_700_000_000.0
DATE = "Tue, 14 Nov 2023 22:13:20 GMT"  # == NOW
B = CacheBehavior(min_ttl=0, default_ttl=60, max_ttl=3600)
CLAMP = CacheBehavior(min_ttl=100, default_ttl=150, max_ttl=200)
PLAIN_RFC = CacheBehavior(min_ttl=0, default_ttl=0, max_ttl=31536000)


def test_http_date_formats_of_rfc_9110() -> None:
    # RFC 9110 5.6.7: IMF-fixdate, obsolete RFC 850 and asctime forms all parse.
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777.0
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777.0
    assert (
        parse_http_date("Sun Nov  6 08:49:37 1994") is None
        or parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777.0
    )
    assert parse_http_date("0") is None
    assert parse_http_date("") is None
    assert parse_http_date(DATE) == NOW


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("max-age=60", {"max-age": "60"}),
        ("public, max-age=60, s-maxage=120", {"public": None, "max-age": "60", "s-maxage": "120"}),
        ('no-cache="Set-Cookie, X-Foo", max-age=5', {"no-cache": "Set-Cookie, X-Foo", "max-age": "5"}),
        ("MAX-AGE=7", {"max-age": "7"}),
        ("max-age=1, max-age=2", {"max-age": "1"}),  # first wins
        (" , ,private", {"private": None}),
    ],
)
def test_cache_control_parsing(header: str, expected: dict[str, str | None]) -> None:
    assert dict(parse_cache_control([header]).directives) == expected


def test_malformed_delta_seconds_count_as_zero() -> None:
    assert parse_cache_control(["max-age=abc"]).seconds("max-age") == 0
    assert parse_cache_control(["max-age=-5"]).seconds("max-age") == 0


@pytest.mark.parametrize(
    ("status", "headers", "behavior", "store", "ttl", "reason"),
    [
        (200, {}, B, True, 60, "default-ttl"),
        (200, {"cache-control": "max-age=10"}, B, True, 10, "explicit"),
        (200, {"cache-control": "max-age=10, s-maxage=30"}, B, True, 30, "explicit"),
        (200, {"cache-control": "max-age=100000"}, B, True, 3600, "explicit"),  # clamped to max
        (200, {"cache-control": "max-age=10"}, CLAMP, True, 100, "explicit"),  # clamped to min
        (200, {"cache-control": "max-age=1000"}, CLAMP, True, 200, "explicit"),
        (200, {}, CLAMP, True, 150, "default-ttl"),
        (200, {"expires": "Tue, 14 Nov 2023 22:14:20 GMT", "date": DATE}, B, True, 60, "explicit"),
        (200, {"expires": "garbage", "date": DATE}, B, True, 0, "explicit"),  # invalid: already stale
        (200, {"expires": "0"}, B, True, 0, "explicit"),
        (
            200,
            {"cache-control": "max-age=10", "expires": "Tue, 14 Nov 2023 23:13:20 GMT", "date": DATE},
            B,
            True,
            10,
            "explicit",
        ),
        (200, {"cache-control": "no-store"}, B, False, 0, "no-store"),
        (200, {"cache-control": "private, max-age=600"}, B, False, 0, "private"),
        (200, {"cache-control": "no-cache"}, B, True, 0, "explicit"),
        (200, {"cache-control": "no-cache"}, CLAMP, True, 100, "explicit"),
        (200, {"cdn-cache-control": "max-age=300", "cache-control": "no-store"}, B, True, 300, "explicit"),
        (200, {"vary": "Cookie"}, B, True, 60, "default-ttl"),  # stored as a variant
        (200, {"vary": "Accept-Language, *"}, B, False, 0, "vary *"),
        (200, {"vary": "Accept-Encoding"}, B, True, 60, "default-ttl"),
        (206, {"cache-control": "max-age=60"}, B, False, 0, "status 206"),
        (302, {}, B, False, 0, "status 302"),
        (302, {"cache-control": "max-age=5"}, B, True, 5, "explicit"),
        (404, {}, B, True, 10, "error-ttl"),
        (503, {}, B, True, 10, "error-ttl"),
        (418, {}, B, False, 0, "status 418"),
        (200, {"last-modified": "Tue, 14 Nov 2023 12:13:20 GMT", "date": DATE}, PLAIN_RFC, True, 3600, "heuristic"),
        (200, {}, PLAIN_RFC, True, 0, "heuristic"),  # no Last-Modified: nothing invented
    ],
)
def test_lifetime_decisions(status, headers, behavior, store, ttl, reason) -> None:
    life = decide_lifetime(status, headers, behavior, now=NOW)
    assert (life.store, life.reason) == (store, reason)
    if store:
        assert life.ttl == ttl


def test_authorization_only_shared_when_the_response_allows() -> None:
    assert not decide_lifetime(200, {}, B, has_authorization=True, now=NOW).store
    for allowing in ("public", "s-maxage=5", "must-revalidate"):
        assert decide_lifetime(200, {"cache-control": allowing}, B, has_authorization=True, now=NOW).store


def test_must_revalidate_flags_are_kept() -> None:
    assert decide_lifetime(200, {"cache-control": "max-age=5, must-revalidate"}, B, now=NOW).must_revalidate
    assert decide_lifetime(200, {"cache-control": "max-age=5, proxy-revalidate"}, B, now=NOW).must_revalidate
    assert not decide_lifetime(200, {"cache-control": "max-age=5"}, B, now=NOW).must_revalidate


def test_initial_age_adds_the_round_trip_to_the_upstream_age() -> None:
    assert corrected_initial_age({"age": "30"}, NOW, NOW + 2) == 32
    assert corrected_initial_age({}, NOW, NOW + 0.5) == 0.5
    # A skewed origin Date does not age the object (see corrected_initial_age).
    assert corrected_initial_age({"date": "Mon, 01 Jan 2001 00:00:00 GMT"}, NOW, NOW) == 0


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        ("30", 30),
        ("0", 0),
        ("5, 10", 5),
        ("junk", 2**31),
        ("-1", 2**31),
        ("1.5", 2**31),
        ("", 2**31),
        ("99999999999999", 2**31),
        ("\u0661", 2**31),
    ],
)
def test_an_age_that_is_not_a_non_negative_integer_makes_the_response_stale(age: str, expected: int) -> None:
    """RFC 9111 5.1: the first Age line counts; anything but digits is stale."""
    assert corrected_initial_age({"age": age}, NOW, NOW) == expected


@pytest.mark.parametrize(
    ("cache_control", "ttl", "revalidate"),
    [
        ("no-cache, max-age=600", 0, True),
        ('no-cache="set-cookie", max-age=600', 600, False),
        ("s-maxage=60", 60, True),
        ("s-maxage=60, stale-if-error=30", 60, False),
        ("max-age=60", 60, False),
    ],
)
def test_no_cache_wins_and_s_maxage_forbids_stale(cache_control: str, ttl: float, revalidate: bool) -> None:
    life = decide_lifetime(200, {"cache-control": cache_control}, B, now=NOW)
    assert (life.store, life.ttl, life.must_revalidate) == (True, ttl, revalidate)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 404])
def test_errors_are_stored_only_for_an_error_ttl_the_operator_set(status: int) -> None:
    assert not decide_lifetime(status, {}, B, error_ttl=0, now=NOW).store
    assert decide_lifetime(status, {}, B, error_ttl=5, now=NOW).ttl == 5
    assert decide_lifetime(status, {"cache-control": "max-age=7"}, B, error_ttl=0, now=NOW).ttl == 7


def test_a_hold_is_not_age() -> None:
    # A blocking reload the origin held 1.5 s: its age starts when the origin answered.
    assert corrected_initial_age({"age": "0"}, NOW, NOW + 1.5, held=True) == 0
    assert corrected_initial_age({"age": "3"}, NOW, NOW + 1.5, held=True) == 3
    # Date (made 2 s after the request was sent) bounds the round trip: the response is 0.5 s old.
    made = "Tue, 14 Nov 2023 22:13:22 GMT"  # NOW + 2
    assert corrected_initial_age({"date": made}, NOW, NOW + 2.5) == 0.5
    # A Date before the request says nothing about a hold: the whole round trip counts.
    assert corrected_initial_age({"date": DATE}, NOW + 0.25, NOW + 2.5) == 2.25


@pytest.mark.parametrize(
    ("cdn_cc", "ttl"),
    [
        ("max-age=30", 30),
        ("max-age=30, no-store=?0", 30),
        ('max-age="30"', 600),  # a String where an Integer belongs: the whole field is ignored
        ("max-age=30,", 600),  # not a dictionary (trailing comma)
        ("MAX-AGE=30", 600),  # keys are lower case
        ("max-age=-5", 600),
        ("no-store", None),
    ],
)
def test_an_invalid_cdn_cache_control_is_ignored_as_a_whole(cdn_cc: str, ttl: float | None) -> None:
    """RFC 9213: CDN-Cache-Control is a Structured Field dictionary; Cache-Control says 600."""
    life = decide_lifetime(200, {"cdn-cache-control": cdn_cc, "cache-control": "max-age=600"}, B, now=NOW)
    assert (life.ttl if life.store else None) == ttl
