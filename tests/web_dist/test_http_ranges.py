"""RFC 9110 validators, preconditions and byte ranges shared by the origin and the edge."""

from __future__ import annotations

import pytest

from web_dist.http.semantics import (
    UNSATISFIABLE,
    ByteRange,
    content_length,
    if_range_allows,
    parse_http_date,
    precondition_status,
    response_length,
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


NOV_1994 = 784111777
NOW_2026 = 1_780_000_000.0  # 2026-05-28


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", NOV_1994),
        ("Sunday, 06-Nov-94 08:49:37 GMT", NOV_1994),
        ("Sun Nov  6 08:49:37 1994", NOV_1994),
        ("Sun Nov 06 08:49:37 1994", NOV_1994),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
        ("Wed, 31 Dec 1969 23:59:59 GMT", -1),
        ("Tue, 01 Jan 2030 00:00:00 GMT", 1893456000),
        ("Tuesday, 01-Jan-30 00:00:00 GMT", 1893456000),  # 2030: within 50 years
        ("Wednesday, 01-Jan-70 00:00:00 GMT", 3155760000),  # 2070: within 50 years of 2026
        ("Thu, 29 Feb 2024 12:00:00 GMT", 1709208000),
        ("Sat, 31 Dec 2016 23:59:60 GMT", 1483228800),  # leap second allowed by the grammar
        ("Mon, 06 Nov 1994 08:49:37 GMT", NOV_1994),  # day name is not checked against the date
        (None, None),
        ("", None),
        ("0", None),
        ("-1", None),
        ("2024-01-01", None),
        ("2024-01-01T00:00:00Z", None),
        ("Tue, 1 Jan 2030 00:00:00 +0000", None),
        ("Tue, 01 Jan 2030 00:00:00 +0000", None),
        ("Tue, 01 Jan 2030 00:00:00", None),
        ("Tue, 01 Jan 2030 00:00:00 UTC", None),
        ("Tue, 01 Jan 2030 00:00:00 gmt", None),
        ("Tue, 1 Jan 2030 00:00:00 GMT", None),
        ("Tue, 01 Jan 30 00:00:00 GMT", None),
        ("Tue 01 Jan 2030 00:00:00 GMT", None),
        ("Tue,  01 Jan 2030 00:00:00 GMT", None),
        (" Tue, 01 Jan 2030 00:00:00 GMT", None),
        ("Tue, 01 Jan 2030 00:00:00 GMT ", None),
        ("Tues, 01 Jan 2030 00:00:00 GMT", None),
        ("tue, 01 Jan 2030 00:00:00 GMT", None),
        ("Xyz, 01 Jan 2030 00:00:00 GMT", None),
        ("Tue, 01 jan 2030 00:00:00 GMT", None),
        ("Tue, 01 Jnu 2030 00:00:00 GMT", None),
        ("Tue, 00 Jan 2030 00:00:00 GMT", None),
        ("Tue, 32 Jan 2030 00:00:00 GMT", None),
        ("Fri, 29 Feb 2030 00:00:00 GMT", None),
        ("Tue, 01 Jan 2030 24:00:00 GMT", None),
        ("Tue, 01 Jan 2030 00:60:00 GMT", None),
        ("Tue, 01 Jan 2030 00:00:61 GMT", None),
        ("Tue, 01 Jan 2030 0:00:00 GMT", None),
        ("Tue, 01 Jan 2030 00:00 GMT", None),
        ("Tue, 01-Jan-30 00:00:00 GMT", None),  # RFC 850 needs the long day name
        ("Tuesday, 01-Jan-2030 00:00:00 GMT", None),
        ("Tuesday, 01 Jan 2030 00:00:00 GMT", None),
        ("Sunday, 06-Nov-94 08:49:37", None),
        ("Sun Nov 6 08:49:37 1994", None),
        ("Sun Nov  6 08:49:37 94", None),
        ("Sun Nov  6 08:49:37 1994 GMT", None),
        ("Sun, Nov  6 08:49:37 1994", None),
        ("Sun, 06 Nov 1994 08:49:37 GMT\r\n", None),
        ("Sun, ٠٦ Nov 1994 08:49:37 GMT", None),  # non-ASCII digits
    ],
)
def test_parse_http_date_is_strict(value: str | None, expected: int | None) -> None:
    assert parse_http_date(value, now=NOW_2026) == expected


@pytest.mark.parametrize(
    ("value", "now", "year"),
    [
        ("Sunday, 06-Nov-94 08:49:37 GMT", NOW_2026, 1994),  # 2094 is > 50 years ahead
        ("Saturday, 06-Nov-76 08:49:37 GMT", NOW_2026, 1976),  # 2076-11 is 50.4 years ahead
        ("Monday, 01-Jan-75 00:00:00 GMT", NOW_2026, 2075),
        ("Wednesday, 01-Jan-00 00:00:00 GMT", NOW_2026, 2000),
        ("Saturday, 01-Jan-00 00:00:00 GMT", 0.0, 2000),  # seen from 1970, 2000 is 30 years on
        ("Monday, 01-Jan-01 00:00:00 GMT", 4_070_908_800.0, 2101),  # seen from 2099
    ],
)
def test_rfc850_two_digit_years(value: str, now: float, year: int) -> None:
    import time

    parsed = parse_http_date(value, now=now)
    assert parsed is not None and time.gmtime(parsed).tm_year == year


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("0", 0), (" 12\t", 12), ("007", 7)])
def test_content_length_reads_digits(value: str | None, expected: int | None) -> None:
    assert content_length(value) == expected


@pytest.mark.parametrize("value", ["", "-1", "1e3", "12, 12", "\uff11\uff12", "0x10", "+5"])
def test_content_length_refuses_what_is_not_a_number(value: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        content_length(value)
    assert response_length([("content-length", value)]) is None  # a response's length is then unknown
