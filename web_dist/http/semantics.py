"""RFC 9110 validators, preconditions and single byte ranges for a served file. Pure.

The origin asks three questions of a request, in RFC 9110 section 13.2.2's order: does a
precondition stop it (412 or 304), does If-Range still allow the range, and which bytes does
Range select. Header mappings are read with lowercase names (Starlette's `Headers` and a plain
dict with lowercase keys both work).
"""

from __future__ import annotations

import calendar
import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

# An entity-tag: optional weak prefix, then an opaque quoted string (RFC 9110 8.8.3).
_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def content_length(value: str | None) -> int | None:
    """A Content-Length field (RFC 9110 8.6: 1*DIGIT), None when absent; ValueError when it is
    not a number. The one parser of it for the edge and the origins."""
    if value is None:
        return None
    value = value.strip(" \t")
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"Content-Length {value[:40]!r} is not a number")
    return int(value)


def response_length(headers: list[tuple[str, str]]) -> int | None:
    """The Content-Length of a response's headers (lower-cased names); None when absent or
    not a number (the length is then unknown, as for a chunked body)."""
    for name, value in headers:
        if name == "content-length":
            try:
                return content_length(value)
            except ValueError:
                return None
    return None


def format_http_date(timestamp: float) -> str:
    """IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`."""
    return email.utils.formatdate(timestamp, usegmt=True)


_MONTHS = {
    name: n
    for n, name in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}
_TIME = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
_MONTH = r"(?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_IMF_FIXDATE = re.compile(
    rf"(?P<wday>Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT"
)
_RFC850_DATE = re.compile(
    r"(?P<wday>Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rf"(?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME} GMT"
)
_ASCTIME_DATE = re.compile(
    rf"(?P<wday>Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})"
)
_FIFTY_YEARS = 50 * 365 * 86400 + 12 * 86400  # 50 Julian-ish years, leap days included


def _timestamp(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int | None:
    if not 1 <= day <= calendar.monthrange(year, month)[1] or hour > 23 or minute > 59 or second > 60:
        return None
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def parse_http_date(value: str | None, now: float | None = None) -> int | None:
    """Seconds since the epoch of an RFC 9110 5.6.7 HTTP-date, or None for a missing or invalid one.

    Only IMF-fixdate, the obsolete RFC 850 form and asctime are accepted, exactly (callers ignore
    an invalid date). An RFC 850 two-digit year is the latest year with those digits that is not
    more than 50 years after `now` (default: the clock). The day name is checked for form, not against the date.
    """
    if not value:
        return None
    for form in (_IMF_FIXDATE, _RFC850_DATE, _ASCTIME_DATE):
        match = form.fullmatch(value)
        if match is not None:
            break
    else:
        return None
    fields = [int(match[name]) for name in ("day", "hour", "minute", "second")]
    day, hour, minute, second = fields
    month, year = _MONTHS[match["month"]], int(match["year"])
    if form is _RFC850_DATE:  # the latest such year that is not more than 50 years ahead
        clock = time.time() if now is None else now
        century = time.gmtime(clock).tm_year // 100 * 100
        for full_year in (century + 100 + year, century + year, century - 100 + year):
            stamp = _timestamp(full_year, month, day, hour, minute, second)
            if stamp is None or stamp <= clock + _FIFTY_YEARS:
                return stamp
        return None
    return _timestamp(year, month, day, hour, minute, second)


def _entity_tags(value: str) -> list[tuple[bool, str]]:
    """(weak, opaque-tag) pairs; a list with any malformed member matches nothing."""
    tags: list[tuple[bool, str]] = []
    pos = 0
    while pos < len(value):
        match = _ENTITY_TAG.match(value, pos)
        if match is None:
            return []
        tags.append((match.group(1) is not None, match.group(2)))
        pos = match.end()
    return tags


def etag_matches(header: str, etag: str | None, *, weak: bool) -> bool:
    """Does an If-Match / If-None-Match / If-Range list match `etag`? `*` matches any."""
    if etag is None:
        return False
    if header.strip() == "*":
        return True
    current = etag.removeprefix("W/")
    current_is_weak = etag.startswith("W/")
    for tag_is_weak, opaque in _entity_tags(header):
        # Strong comparison: both tags strong and equal; weak comparison ignores W/.
        if opaque == current and (weak or not (tag_is_weak or current_is_weak)):
            return True
    return False


def precondition_status(
    method: str, headers: Mapping[str, str], etag: str | None, last_modified: int | None
) -> int | None:
    """412 or 304 when a precondition stops the request, else None (RFC 9110 13.2.2 steps 1-4).

    `etag` and `last_modified` describe the current representation, both None when there is none
    (a PUT creating an object).
    """
    if_match = headers.get("if-match")
    if if_match is not None:
        if not etag_matches(if_match, etag, weak=False):
            return 412
    else:
        since = parse_http_date(headers.get("if-unmodified-since"))
        if since is not None and last_modified is not None and last_modified > since:
            return 412
    if_none_match = headers.get("if-none-match")
    safe = method in ("GET", "HEAD")
    if if_none_match is not None:
        if etag_matches(if_none_match, etag, weak=True):
            return 304 if safe else 412
        return None
    if safe:
        modified_since = parse_http_date(headers.get("if-modified-since"))
        if modified_since is not None and last_modified is not None and last_modified <= modified_since:
            return 304
    return None


def if_range_allows(header: str | None, etag: str, last_modified: int) -> bool:
    """False when If-Range names another version, so the whole representation is sent."""
    if header is None:
        return True
    value = header.strip()
    if value.startswith(('"', "W/")):
        return etag_matches(value, etag, weak=False)  # weak tags never match: strong required
    # A date validates only when it is exactly the Last-Modified date (RFC 9110 13.1.5).
    return parse_http_date(value) == last_modified


@dataclass(frozen=True)
class ByteRange:
    """Bytes first..last inclusive, as Content-Range writes them."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


class Unsatisfiable(Enum):
    """Range selects no byte of the representation: answer 416."""

    RANGE = "unsatisfiable"


UNSATISFIABLE = Unsatisfiable.RANGE


def select_range(header: str | None, size: int) -> ByteRange | Unsatisfiable | None:
    """The single byte range `header` asks of a `size`-byte representation.

    None means "send it all": no header, another unit, a malformed spec (RFC 9110 14.2 says
    ignore it) or several ranges. Several ranges could be a multipart/byteranges reply; the
    whole body is a valid answer too and no client we serve needs more.
    """
    if header is None:
        return None
    unit, equals, spec = header.partition("=")
    if not equals or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not _digits_or_empty(first_text) or not _digits_or_empty(last_text):
        return None
    if not first_text:
        return _suffix_range(last_text, size)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        return UNSATISFIABLE
    return ByteRange(first, min(last, size - 1))


def _suffix_range(length_text: str, size: int) -> ByteRange | Unsatisfiable | None:
    if not length_text:
        return None  # "bytes=-" names no bytes at all: malformed
    length = int(length_text)
    if length == 0 or size == 0:
        return UNSATISFIABLE
    return ByteRange(max(0, size - length), size - 1)


def _digits_or_empty(text: str) -> bool:
    return text == "" or (text.isascii() and text.isdigit())
