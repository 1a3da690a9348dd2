"""CloudFront path-pattern matching in linear time, without a backtracking regex. Pure.

`*` matches any run of characters (slashes included), `?` exactly one character, everything
else is literal and case-sensitive; the whole text must match.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["glob_match"]


@lru_cache(maxsize=4096)
def _piece_regex(piece: str) -> re.Pattern[str]:
    """A fixed-length regex: escaped literals and `.` for `?`, no quantifiers, so no backtracking."""
    return re.compile("".join("." if ch == "?" else re.escape(ch) for ch in piece), re.DOTALL)


def _match_at(piece: str, text: str, pos: int) -> bool:
    if pos + len(piece) > len(text):
        return False
    if "?" not in piece:
        return text.startswith(piece, pos)
    return _piece_regex(piece).match(text, pos) is not None


def _find(piece: str, text: str, start: int, end: int) -> int:
    """Leftmost index >= start where piece matches entirely before end, or -1."""
    if "?" not in piece:
        return text.find(piece, start, end)
    found = _piece_regex(piece).search(text, start, end)
    return -1 if found is None else found.start()


@lru_cache(maxsize=1024)
def _pieces(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("*"))


def glob_match(pattern: str, text: str) -> bool:
    pieces = _pieces(pattern)
    if len(pieces) == 1:
        return len(pattern) == len(text) and _match_at(pattern, text, 0)
    first, *middle, last = pieces
    if len(first) + len(last) > len(text):
        return False
    if not _match_at(first, text, 0) or not _match_at(last, text, len(text) - len(last)):
        return False
    pos, end = len(first), len(text) - len(last)
    for piece in middle:
        if not piece:
            continue
        found = _find(piece, text, pos, end)
        if found < 0:
            return False
        pos = found + len(piece)
    return True
