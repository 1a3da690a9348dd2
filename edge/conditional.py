"""Client preconditions and byte ranges against a stored representation (RFC 9110 13-14). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge.freshness import parse_http_date


def _etags(value: str) -> list[str]:
    return [tag.strip() for tag in value.split(",") if tag.strip()]


def _weak_match(a: str, b: str) -> bool:
    return a.removeprefix("W/") == b.removeprefix("W/")


def not_modified(req: Mapping[str, str], etag: str | None, last_modified: str | None) -> bool:
    """True when a GET/HEAD with these request headers deserves 304 (RFC 9110 13.2.2 steps 3-4)."""
    inm = req.get("if-none-match")
    if inm is not None:
        if etag is None:
            return False
        return inm.strip() == "*" or any(_weak_match(tag, etag) for tag in _etags(inm))
    ims = parse_http_date(req.get("if-modified-since"))
    lm = parse_http_date(last_modified)
    return ims is not None and lm is not None and lm <= ims


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


UNSATISFIABLE = "unsatisfiable"


def select_range(
    req: Mapping[str, str], size: int, etag: str | None, last_modified: str | None
) -> ByteRange | str | None:
    """The one range to send, UNSATISFIABLE (416), or None for the whole representation.

    A malformed Range, several ranges or an If-Range that does not match mean the whole
    representation, as RFC 9110 14.2 allows.
    """
    header = req.get("range")
    if header is None or not _if_range_matches(req.get("if-range"), etag, last_modified):
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return UNSATISFIABLE
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    if start >= size:
        return UNSATISFIABLE
    end = int(last) if last else size - 1
    if end < start:
        return None
    return ByteRange(start, min(end, size - 1))


def _if_range_matches(if_range: str | None, etag: str | None, last_modified: str | None) -> bool:
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        # If-Range needs a strong comparison: a weak tag never matches.
        return etag is not None and not etag.startswith("W/") and value == etag
    return last_modified is not None and value == last_modified.strip()
