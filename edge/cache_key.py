"""Cache keys: distribution, path, and the query strings and headers a behavior names. Pure.

Only what joins the key is forwarded to the origin (CloudFront's cache policy and origin
request policy in one), so two requests with one key always get the same origin answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

from web_dist.config import CacheBehavior


def forwarded_query(behavior: CacheBehavior, query_string: str) -> str:
    """The query string sent to the origin: none, all (sorted), or the named keys."""
    if behavior.query_keys == "none" or not query_string:
        return ""
    pairs = parse_qsl(query_string, keep_blank_values=True)
    if behavior.query_keys != "all":
        pairs = [(k, v) for k, v in pairs if k in behavior.query_keys]
    return urlencode(sorted(pairs))


def forwarded_headers(behavior: CacheBehavior, headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in behavior.header_keys if name in headers}


def cache_key(dist_id: str, behavior: CacheBehavior, path: str, query: str, headers: Mapping[str, str]) -> str:
    key = f"{dist_id}:{path}"
    if query:
        key += "?" + query
    for name in behavior.header_keys:
        key += f"|{name}={headers.get(name, '')}"
    return key
