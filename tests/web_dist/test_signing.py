"""Signed URL and cookie math (pure), and `cdn keygen` / `cdn sign` as a user runs them."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from web_dist.cli import main
from web_dist.config.signing import (
    Policy,
    PolicyError,
    canned_policy,
    cf_b64decode,
    cf_b64encode,
    custom_policy,
    load_private_key,
    load_public_key,
    parse_policy,
    resource_matches,
    signed_cookies,
    signed_url,
    verify,
)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_canned_policy_is_cloudfronts_exact_bytes() -> None:
    # The statement from CloudFront's developer guide, without whitespace.
    expected = (
        '{"Statement":[{"Resource":"https://d111111abcdef8.cloudfront.net/horizon.jpg?size=large",'
        '"Condition":{"DateLessThan":{"AWS:EpochTime":1357034400}}}]}'
    )
    assert (
        canned_policy("https://d111111abcdef8.cloudfront.net/horizon.jpg?size=large", 1357034400) == expected.encode()
    )


def test_cloudfront_base64_uses_url_safe_characters() -> None:
    assert cf_b64encode(b"\xfb\xff") == "-~8_"  # standard base64: +/8=
    assert cf_b64decode("-~8_") == b"\xfb\xff"
    for bad in ("***", "abc", "é"):
        with pytest.raises(PolicyError):
            cf_b64decode(bad)


def test_custom_policy_round_trips() -> None:
    policy = Policy("https://site.test/private/*", 2000, 1000, ipaddress.ip_network("203.0.113.0/24"))
    assert parse_policy(custom_policy(policy)) == policy


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "one statement"),
        (b'{"Statement":[]}', "one statement"),
        (b'{"Statement":[{"Resource":"*","Condition":{}}]}', "DateLessThan"),
        (b'{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":"soon"}}}]}', "integer"),
        (
            b'{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":5},"Odd":{}}}]}',
            "unknown condition",
        ),
        (
            b'{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":5},'
            b'"IpAddress":{"AWS:SourceIp":"300.1.1.1/8"}}}]}',
            "one statement",
        ),
        (b'{"Statement":[{"Resource":7,"Condition":{"DateLessThan":{"AWS:EpochTime":5}}}]}', "Resource"),
        (b"{" + b" " * 5000 + b"}", "longer than"),
    ],
)
def test_malformed_policies_are_refused_with_a_reason(raw: bytes, why: str) -> None:
    with pytest.raises(PolicyError, match=why):
        parse_policy(raw)


@pytest.mark.parametrize(
    ("pattern", "url", "matches"),
    [
        ("http://site.test/a.txt", "http://site.test/a.txt", True),
        ("https://site.test/a.txt", "http://site.test/a.txt", True),  # the scheme protects nothing
        ("http://site.test/private/*", "http://site.test/private/deep/b.mp4", True),
        ("http://site.test/private/*", "http://site.test/public/b.mp4", False),
        ("http://site.test/v?.mp4", "http://site.test/v1.mp4", True),
        ("http://site.test/v?.mp4", "http://site.test/v10.mp4", False),
        ("http://site.test/a.txt", "http://site.test/a.txt?x=1", False),  # exact means exact
        ("http://site.test/a.(txt)", "http://site.test/a.(txt)", True),  # regex characters are literal
        ("http://site.test/a.txt", "http://site.test/aXtxt", False),
        ("*", "http://anything.test/at/all", True),
    ],
)
def test_resource_wildcards(pattern: str, url: str, matches: bool) -> None:
    assert resource_matches(pattern, url) is matches


def test_signed_url_is_canned_when_only_url_and_expiry(key: rsa.RSAPrivateKey) -> None:
    url = signed_url(key, "K1", "http://site.test/a.txt?x=1", Policy("http://site.test/a.txt?x=1", 2000))
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["x"] == "1" and query["Expires"] == "2000" and query["Key-Pair-Id"] == "K1"
    assert "Policy" not in query
    signature = cf_b64decode(query["Signature"])
    assert verify(key.public_key(), canned_policy("http://site.test/a.txt?x=1", 2000), signature)
    assert not verify(key.public_key(), canned_policy("http://site.test/a.txt?x=1", 2001), signature)


def test_signed_url_carries_a_custom_policy_otherwise(key: rsa.RSAPrivateKey) -> None:
    policy = Policy("http://site.test/private/*", 2000, starts=1000)
    query = dict(parse_qsl(urlsplit(signed_url(key, "K1", "http://site.test/private/a", policy)).query))
    raw = cf_b64decode(query["Policy"])
    assert parse_policy(raw) == policy
    assert verify(key.public_key(), raw, cf_b64decode(query["Signature"]))


def test_signed_cookies_always_carry_a_policy(key: rsa.RSAPrivateKey) -> None:
    cookies = signed_cookies(key, "K1", Policy("http://site.test/*", 2000))
    assert set(cookies) == {"CloudFront-Policy", "CloudFront-Signature", "CloudFront-Key-Pair-Id"}
    raw = cf_b64decode(cookies["CloudFront-Policy"])
    assert json.loads(raw)["Statement"][0]["Resource"] == "http://site.test/*"
    assert verify(key.public_key(), raw, cf_b64decode(cookies["CloudFront-Signature"]))


def test_keygen_then_sign_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private, public = tmp_path / "private.pem", tmp_path / "public.pem"
    assert main(["keygen", "--private", str(private), "--public", str(public)]) == 0
    assert private.stat().st_mode & 0o777 == 0o600
    assert main(["keygen", "--private", str(private), "--public", str(public)]) == 2  # never overwrites
    assert "not overwriting" in capsys.readouterr().err
    key = load_private_key(private.read_bytes())
    assert load_public_key(public.read_bytes()).public_numbers() == key.public_key().public_numbers()

    args = ["sign", "--key", str(private), "--key-pair-id", "K1", "--url", "http://site.test/a.txt", "--expires", "60"]
    assert main(args) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("http://site.test/a.txt?Expires=") and "&Key-Pair-Id=K1" in url
    assert main([*args, "--cookies", "--ip", "10.0.0.0/8"]) == 0
    cookie = capsys.readouterr().out.strip()
    assert cookie.startswith("Cookie: CloudFront-Policy=") and "CloudFront-Key-Pair-Id=K1" in cookie


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--url": "ftp://site.test/a"}, "not an http(s)://host/path URL"),
        ({"--expires": "0"}, "--expires must be a positive"),
        ({"--ip": "10.0.0.300/8"}, "--ip"),
        ({"--key": "missing.pem"}, "cannot read --key"),
        ({"--key": "public.pem"}, "not an unencrypted RSA private key"),
    ],
)
def test_sign_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], message: str
) -> None:
    assert main(["keygen", "--private", str(tmp_path / "private.pem"), "--public", str(tmp_path / "public.pem")]) == 0
    values = {"--key": "private.pem", "--key-pair-id": "K1", "--url": "http://site.test/a", "--expires": "60", **change}
    values["--key"] = str(tmp_path / values["--key"])
    assert main(["sign", *[part for pair in values.items() for part in pair]]) == 2
    assert message in capsys.readouterr().err


def test_keygen_prints_the_trusted_keys_path_relative_to_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths in a config are its folder's, not the shell's: run from the folder above demo/,
    keygen prints what demo/cdn.toml needs, and that line, pasted in, loads."""
    from web_dist.config import load_config

    (tmp_path / "demo" / "keys").mkdir(parents=True)
    (tmp_path / "demo" / "site").mkdir()
    config = tmp_path / "demo" / "cdn.toml"
    config.write_text(
        '[origins.o]\nurl = "http://127.0.0.1:9"\n[edges.e]\nlisten = "127.0.0.1:0"\n'
        '[distributions.d]\ndomains = ["d.test"]\norigin = "o"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["keygen", "--private", "demo/keys/k.pem", "--public", "demo/keys/k.pub.pem"]) == 0
    printed = capsys.readouterr().out
    assert (
        f'trust it in a distribution of {Path("demo/cdn.toml")}: trusted_keys = {{ KEY_PAIR_ID = "keys/k.pub.pem" }}'
        in printed
    )
    line = printed.strip().splitlines()[-1].partition(": ")[2].replace("KEY_PAIR_ID", "K1")
    config.write_text(config.read_text() + line + "\n")
    assert set(load_config(config).distributions[0].trusted_keys) == {"K1"}
