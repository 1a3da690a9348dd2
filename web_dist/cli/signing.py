"""`cdn keygen` and `cdn sign`: make a key pair, and signed URLs or cookies with its private key.

    cdn keygen --private keys/private.pem --public keys/public.pem [--bits 2048]
    cdn sign --key keys/private.pem --key-pair-id K1 --url https://site.test/private/a.mp4 \\
             --expires 3600 [--starts -60] [--ip 203.0.113.0/24] [--resource PATTERN] [--cookies]

Times are seconds from now. The public key goes into the distribution's `trusted_keys`
(`trusted_keys = { K1 = "keys/public.pem" }`); the private key stays with whoever signs.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from web_dist.config.signing import Policy, load_private_key, signed_cookies, signed_url

if TYPE_CHECKING:  # loaded when a key is made: `cdn edge` and friends do without it
    from cryptography.hazmat.primitives.asymmetric import rsa


class SignError(Exception):
    """A sign or keygen request that cannot be met; the message says why."""


def add_commands(sub: Any) -> None:
    """Register `keygen` and `sign` on the `cdn` command's subparsers."""
    keygen = sub.add_parser("keygen", help="make an RSA key pair for signed URLs and cookies")
    keygen.add_argument("--private", required=True, type=Path, help="where to write the private key (PEM, mode 0600)")
    keygen.add_argument("--public", required=True, type=Path, help="where to write the public key (PEM)")
    keygen.add_argument("--bits", type=int, default=2048, choices=[2048, 3072, 4096])
    keygen.add_argument(
        "--config",
        type=Path,
        help="the config whose trusted_keys will name the public key: the "
        "path printed is relative to its folder (default ./cdn.toml, else ./demo/cdn.toml)",
    )
    keygen.set_defaults(run=_run(cmd_keygen, "keygen"), finds_config=True)

    sign = sub.add_parser("sign", help="print a signed URL (or signed cookies) for a private distribution")
    sign.add_argument("--key", required=True, type=Path, help="the private key (PEM)")
    sign.add_argument(
        "--key-pair-id", required=True, help="the name the distribution's trusted_keys gives the public key"
    )
    sign.add_argument("--url", required=True, help="the URL to sign, http(s)://host/path")
    sign.add_argument("--expires", required=True, type=int, help="seconds from now until it stops working")
    sign.add_argument("--starts", type=int, help="seconds from now before which it does not work yet")
    sign.add_argument("--ip", help="only clients in this CIDR block may use it")
    sign.add_argument("--resource", help="the URL pattern allowed (* and ? wildcards); default: --url")
    sign.add_argument("--cookies", action="store_true", help="print a Cookie header instead of a URL")
    sign.set_defaults(run=_run(cmd_sign, "sign"))


def _run(command: Any, name: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            print(command(args, time.time()))
        except SignError as exc:
            print(f"cdn {name}: {exc}", file=sys.stderr)
            return 2
        return 0

    return run


def cmd_sign(args: argparse.Namespace, now: float) -> str:
    policy = sign_policy(args.url, args.resource, now, args.expires, args.starts, args.ip)
    key = _private_key(args.key)
    if args.cookies:
        cookies = signed_cookies(key, args.key_pair_id, policy)
        return "Cookie: " + "; ".join(f"{name}={value}" for name, value in cookies.items())
    return signed_url(key, args.key_pair_id, args.url, policy)


def sign_policy(url: str, resource: str | None, now: float, expires: int, starts: int | None, ip: str | None) -> Policy:
    """The policy `cdn sign` asks for, with each argument checked."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.path.startswith("/"):
        raise SignError(f"--url {url!r} is not an http(s)://host/path URL")
    if expires <= 0:
        raise SignError("--expires must be a positive number of seconds")
    if starts is not None and starts >= expires:
        raise SignError("--starts must come before --expires")
    try:
        network = ipaddress.ip_network(ip, strict=False) if ip else None
    except ValueError as exc:
        raise SignError(f"--ip: {exc}") from None
    return Policy(resource or url, int(now) + expires, None if starts is None else int(now) + starts, network)


def _private_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        return load_private_key(path.read_bytes())
    except OSError as exc:
        raise SignError(f"cannot read --key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise SignError(f"--key {path} is not an unencrypted RSA private key in PEM: {exc}") from None


def cmd_keygen(args: argparse.Namespace, now: float) -> str:
    write_key_pair(args.private, args.public, args.bits)
    config: Path | None = getattr(args, "config", None)
    if config is None:
        where = f"{args.public.resolve()}"  # relative paths in a config are the config's, not the shell's
        told = "trust it in a distribution"
    else:
        where = os.path.relpath(args.public.resolve(), config.resolve().parent)
        told = f"trust it in a distribution of {config}"
    return (
        f'wrote {args.private} (keep it secret) and {args.public}\n{told}: trusted_keys = {{ KEY_PAIR_ID = "{where}" }}'
    )


def write_key_pair(private_path: Path, public_path: Path, bits: int = 2048) -> None:
    """A new RSA key pair: the private key owner-only (0600), neither file overwritten."""
    for path in (private_path, public_path):
        if path.exists():
            raise SignError(f"{path} exists; not overwriting a key")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(private)
        public_path.write_bytes(public)
    except OSError as exc:
        raise SignError(f"cannot write the key: {exc.strerror or exc} ({exc.filename})") from None


def private_key_beside(public: Path) -> Path:
    """Where `cdn up` keeps the private half of a key pair it made: keys/public.pem -> keys/private.pem."""
    name = public.name.replace("public", "private") if "public" in public.name else f"{public.stem}.private.pem"
    return public.with_name(name)


def make_missing_key_pairs(config: Path) -> list[Path]:
    """For each `trusted_keys` file of the config that is missing (and whose private half is
    too), a new key pair; the private keys made. A config that cannot be read is left to
    load_config to report."""
    import tomllib

    try:
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    dists: dict[str, Any] = raw["distributions"] if isinstance(raw.get("distributions"), dict) else {}
    made: list[Path] = []
    for body in dists.values():
        keys = body.get("trusted_keys") if isinstance(body, dict) else None
        for value in keys.values() if isinstance(keys, dict) else ():
            public = (config.parent / value).resolve() if isinstance(value, str) else None
            if public is None or public.exists() or private_key_beside(public).exists():
                continue
            public.parent.mkdir(parents=True, exist_ok=True)
            try:
                write_key_pair(private_key_beside(public), public)
            except SignError as exc:
                raise OSError(f"{config}: trusted_keys: {exc}") from None
            made.append(private_key_beside(public))
    return made
