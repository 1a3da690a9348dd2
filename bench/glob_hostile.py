"""Path-pattern matching on hostile inputs: the old translate-to-regex matcher vs web_dist.config.glob.

The old matcher is only timed on the 8 KB case (about 12 s on a loaded 2-core box); on the
others it runs for minutes or longer, so it is skipped there.
"""

from __future__ import annotations

import re
import time

from web_dist.config.glob import glob_match

CASES = (
    ("/v/*/*/*.jpg vs 8 KB '/v/' + 'a/'*N", "/v/*/*/*.jpg", "/v/" + "a/" * 4096, True),
    ("/v/*/*/*.jpg vs 64 KB '/v/' + 'a/'*N", "/v/*/*/*.jpg", "/v/" + "a/" * 32768, False),
    ("200 x '*a' vs 64 KB 'a'*N + 'b'", "*a" * 200, "a" * 65536 + "b", False),
)


def old_regex_match(pattern: str, text: str) -> bool:
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL).fullmatch(text) is not None


def _seconds(match: object, pattern: str, text: str) -> float:
    start = time.perf_counter()
    match(pattern, text)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    for label, pattern, text, time_old in CASES:
        new = _seconds(glob_match, pattern, text)
        old = f"{_seconds(old_regex_match, pattern, text):.3f} s" if time_old else "skipped (minutes+)"
        print(f"{label}: glob_match {new * 1000:.3f} ms, old regex {old}", flush=True)


if __name__ == "__main__":
    main()
