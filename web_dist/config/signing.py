"""Signed URLs and signed cookies in CloudFront's manner: policies, their encoding, RSA-SHA256.

A policy says which URLs (`Resource`, `*` and `?` wildcards), until when (`DateLessThan`),
optionally from when (`DateGreaterThan`) and from which client addresses (`IpAddress`, a
CIDR block). A *canned* policy is only a URL and an expiry, rebuilt by the edge from the
request itself; a *custom* policy travels with the request, base64-encoded. Either way the
signature is RSA (PKCS#1 v1.5) with SHA-256 over the policy's exact JSON bytes, by a key pair
whose public key the distribution trusts (`trusted_keys`), named by `Key-Pair-Id`.

Query parameters: `Expires` (canned) or `Policy` (custom), `Signature`, `Key-Pair-Id`; cookies:
`CloudFront-Expires` or `CloudFront-Policy`, `CloudFront-Signature`, `CloudFront-Key-Pair-Id`.
Binary values use CloudFront's URL-safe base64 (`+` -> `-`, `=` -> `_`, `/` -> `~`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from web_dist.config import Network
from web_dist.config.glob import glob_match

if TYPE_CHECKING:  # loaded with the first key: a process that signs or checks nothing does without it
    from cryptography.hazmat.primitives.asymmetric import rsa

# Query parameters that carry a signature; they never reach the origin or the cache key.
SIGNING_PARAMS = frozenset({"Expires", "Signature", "Key-Pair-Id", "Policy", "Hash-Algorithm"})
COOKIE_PREFIX = "CloudFront-"
MAX_POLICY_BYTES = 4096
_TO_CF = str.maketrans("+=/", "-_~")
_FROM_CF = str.maketrans("-_~", "+=/")


class PolicyError(ValueError):
    """A policy that cannot be read; the message says what is wrong with it."""


@dataclass(frozen=True)
class Policy:
    resource: str  # a URL pattern; "*" when the policy names none (any URL of the distribution)
    expires: int  # epoch seconds: valid while now < expires
    starts: int | None = None  # valid only when now > starts
    ip: Network | None = None


def cf_b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").translate(_TO_CF)


def cf_b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.translate(_FROM_CF).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise PolicyError("not CloudFront base64") from None


def canned_policy(resource: str, expires: int) -> bytes:
    """The exact bytes CloudFront signs for a canned policy (no whitespace, this key order):
    a custom policy with only a resource and an expiry."""
    return custom_policy(Policy(resource, expires))


def custom_policy(policy: Policy) -> bytes:
    condition: dict[str, Any] = {"DateLessThan": {"AWS:EpochTime": policy.expires}}
    if policy.starts is not None:
        condition["DateGreaterThan"] = {"AWS:EpochTime": policy.starts}
    if policy.ip is not None:
        condition["IpAddress"] = {"AWS:SourceIp": str(policy.ip)}
    statement = {"Resource": policy.resource, "Condition": condition}
    return json.dumps({"Statement": [statement]}, separators=(",", ":")).encode()


def parse_policy(raw: bytes) -> Policy:
    """A custom policy's JSON, checked: one statement, a DateLessThan, well-formed conditions."""
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"longer than {MAX_POLICY_BYTES} bytes")
    try:
        doc = json.loads(raw)
        (statement,) = doc["Statement"]
        condition = statement["Condition"]
        resource = statement.get("Resource", "*")
        expires = _epoch(condition["DateLessThan"]["AWS:EpochTime"])
        starts = _epoch(condition["DateGreaterThan"]["AWS:EpochTime"]) if "DateGreaterThan" in condition else None
        ip = ipaddress.ip_network(condition["IpAddress"]["AWS:SourceIp"]) if "IpAddress" in condition else None
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyError(f"not a policy with one statement and a DateLessThan condition ({exc})") from None
    if not isinstance(resource, str):
        raise PolicyError("Resource must be a string")
    unknown = set(condition) - {"DateLessThan", "DateGreaterThan", "IpAddress"}
    if unknown:
        raise PolicyError(f"unknown condition {sorted(unknown)[0]!r}")
    return Policy(resource, expires, starts, ip)


def _epoch(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"AWS:EpochTime must be an integer, not {value!r}")
    return value


def resource_matches(pattern: str, url: str) -> bool:
    """CloudFront's Resource match: `*` any run of characters, `?` one, the rest literal.

    The scheme is not what protects content, so `http://` and `https://` forms of the URL
    both match a pattern naming either.
    """
    if glob_match(pattern, url):
        return True
    scheme, sep, rest = url.partition("://")
    other = {"http": "https", "https": "http"}.get(scheme)
    return bool(sep and other and glob_match(pattern, f"{other}://{rest}"))


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


@lru_cache(maxsize=64)
def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """An RSA public key from PEM (cached: the edge checks every signed request against it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return cf_b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256()))


def verify(public_key: rsa.RSAPublicKey, message: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def signing_values(private_key: rsa.RSAPrivateKey, key_pair_id: str, url: str, policy: Policy) -> dict[str, str]:
    """The values to send (as query parameters or, prefixed, as cookies): canned when the
    policy is only this URL and an expiry, custom otherwise."""
    if policy.resource == url and policy.starts is None and policy.ip is None:
        return {
            "Expires": str(policy.expires),
            "Signature": sign(private_key, canned_policy(url, policy.expires)),
            "Key-Pair-Id": key_pair_id,
        }
    raw = custom_policy(policy)
    return {"Policy": cf_b64encode(raw), "Signature": sign(private_key, raw), "Key-Pair-Id": key_pair_id}


def signed_url(private_key: rsa.RSAPrivateKey, key_pair_id: str, url: str, policy: Policy) -> str:
    """`url` with the signing parameters appended (CloudFront wants them last)."""
    values = signing_values(private_key, key_pair_id, url, policy)
    query = "&".join(f"{k}={quote(v, safe='-_~')}" for k, v in values.items())
    return f"{url}{'&' if urlsplit(url).query else '?'}{query}"


def signed_cookies(private_key: rsa.RSAPrivateKey, key_pair_id: str, policy: Policy) -> dict[str, str]:
    """Cookies always carry a custom policy: a cookie is sent for many URLs, not one."""
    raw = custom_policy(policy)
    return {
        f"{COOKIE_PREFIX}Policy": cf_b64encode(raw),
        f"{COOKIE_PREFIX}Signature": sign(private_key, raw),
        f"{COOKIE_PREFIX}Key-Pair-Id": key_pair_id,
    }
