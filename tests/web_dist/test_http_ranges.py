"""RFC 9110 validators, preconditions and byte ranges shared by the origin and the edge."""

from __future__ import annotations

import pytest

from web_dist.http_ranges import (
    UNSATISFIABLE,
    ByteRange,
    if_range_allows,
    parse_http_date,
    precondition_status,
    select_range,
)

LM = "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-499", ByteRange(0, 499)),
        ("bytes=500-999", ByteRange(500, 999)),
        ("bytes=-500", ByteRange(9500, 9999)),  # RFC 9110 14.1.2 examples, size 10000
        ("bytes=9500-", ByteRange(9500, 9999)),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=-1", ByteRange(9999, 9999)),
        ("bytes=0-99999", ByteRange(0, 9999)),  # last-pos past the end is clamped
        ("bytes=10000-", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=5-1", None),  # invalid: ignored, whole representation
        ("bytes=0-1,5-6", None),  # several ranges: whole representation
        ("items=0-1", None),
        ("bytes=abc", None),
        ("bytes=-", None),
    ],
)
def test_select_range(header: str, expected: object) -> None:
    assert select_range(header, 10000) == expected


def test_if_range_needs_a_strong_match() -> None:
    lm = parse_http_date(LM)
    assert lm is not None
    assert if_range_allows('"e"', '"e"', lm)
    assert not if_range_allows('"other"', '"e"', lm)
    assert not if_range_allows('W/"e"', 'W/"e"', lm)
    assert if_range_allows(LM, '"e"', lm)
    assert if_range_allows(None, '"e"', lm)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"if-none-match": '"e"'}, True),
        ({"if-none-match": 'W/"e"'}, True),  # weak comparison
        ({"if-none-match": '"x", "e"'}, True),
        ({"if-none-match": "*"}, True),
        ({"if-none-match": '"x"'}, False),
        ({"if-none-match": '"x"', "if-modified-since": LM}, False),  # INM wins over IMS
        ({"if-modified-since": LM}, True),
        ({"if-modified-since": "Sat, 05 Nov 1994 08:49:37 GMT"}, False),
        ({"if-modified-since": "not a date"}, False),
        ({}, False),
    ],
)
def test_not_modified(headers: dict[str, str], expected: bool) -> None:
    status = precondition_status("GET", headers, '"e"', parse_http_date(LM))
    assert (status == 304) is expected


def test_preconditions_in_rfc_order() -> None:
    lm = parse_http_date(LM)
    assert precondition_status("GET", {"if-match": '"x"'}, '"e"', lm) == 412
    assert precondition_status("GET", {"if-match": '"e"', "if-none-match": '"e"'}, '"e"', lm) == 304
    assert precondition_status("PUT", {"if-none-match": "*"}, '"e"', lm) == 412
    assert precondition_status("GET", {"if-unmodified-since": "Sat, 05 Nov 1994 08:49:37 GMT"}, '"e"', lm) == 412
