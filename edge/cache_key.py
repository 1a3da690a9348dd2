"""Cache keys: distribution, path, and the query strings and headers a behavior names. Pure.

Only what joins the key is forwarded to the origin (CloudFront's cache policy and origin
request policy in one), so two requests with one key always get the same origin answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, urlencode

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


def forwarded_cookies(behavior: CacheBehavior, cookie: str) -> str:
    """The Cookie header sent to the origin: none, all, or the named cookies, "; "-joined."""
    if behavior.cookie_keys == "none" or not cookie:
        return ""
    pairs = [p.strip() for p in cookie.split(";") if p.strip()]
    if behavior.cookie_keys != "all":
        pairs = [p for p in pairs if p.partition("=")[0].strip() in behavior.cookie_keys]
    return "; ".join(pairs)


def cache_key(dist_id: str, behavior: CacheBehavior, path: str, query: str, headers: Mapping[str, str]) -> str:
    """`dist:path[?query][|name=value...]`, every field escaped so no request can write a
    separator: the path has no raw `|` or `?`, header values are percent-encoded whole."""
    key = f"{dist_id}:{key_path(path)}"
    if query:
        key += "?" + query  # urlencoded by forwarded_query: no raw '|' either
    for name in behavior.header_keys:
        key += f"|{name}={key_field(headers.get(name, ''))}"
    return key


def key_path(path: str) -> str:
    """The request path as the key holds it: `|` and `?` percent-encoded (RFC 3986 says they
    mean the same encoded), so a path never forges a variant or a query field."""
    return path.replace("|", "%7C").replace("?", "%3F")


def key_field(value: str) -> str:
    """A header value inside a key, percent-encoded whole (no '|', '&' or '=' left)."""
    return quote(value, safe="")
