"""A bad config is refused at start with a message naming the file, the key and the fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from web_dist.config import ConfigError, load_config

GOOD = """
[origins.site]
kind = "web"
root = "site"
listen = "127.0.0.1:8081"

[edges.edge-lon]
listen = "127.0.0.1:8091"
region = "eu-west"

[edges.edge-syd]
listen = "127.0.0.1:8092"

[distributions.site]
domains = ["localhost", "*.example.com"]
origin = "site"

[[distributions.site.behaviors]]
path = "/images/*.jpg"
min_ttl = 10
default_ttl = 86400
max_ttl = 604800
query_keys = ["w", "h"]
header_keys = ["X-Device"]

[distributions.site.default_behavior]
default_ttl = 60
methods = ["GET", "HEAD", "PUT"]
compress = true
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "site").mkdir(exist_ok=True)
    path = tmp_path / "cdn.toml"
    path.write_text(text)
    return path


def test_good_config_loads_into_frozen_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    dist = config.distributions[0]
    assert [b.path_pattern for b in dist.behaviors] == ["/images/*.jpg", "*"]
    jpg = dist.behaviors[0]
    assert (jpg.min_ttl, jpg.default_ttl, jpg.max_ttl) == (10, 86400, 604800)
    assert jpg.query_keys == ("h", "w") and jpg.header_keys == ("x-device",)
    assert dist.default_behavior.allowed_methods == {"GET", "HEAD", "PUT"}
    assert dist.edges == ("edge-lon", "edge-syd")  # all edges by default
    assert config.origins["site"].url == "http://127.0.0.1:8081"
    assert config.edges["edge-lon"].abandoned_fill_bytes == 4 * 1024 * 1024  # the default
    assert config.origins["site"].root == (tmp_path / "site").resolve()
    with pytest.raises(AttributeError):
        dist.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("min_ttl = 10", "min_ttl = 100000"),
            "distributions.site.behaviors[0]: TTLs must satisfy min_ttl <= default_ttl <= max_ttl",
        ),
        (('origin = "site"', 'origin = "nowhere"'), "distributions.site.origin: 'nowhere' is not one of: site"),
        (
            ('listen = "127.0.0.1:8092"', 'listen = "127.0.0.1:8091"'),
            "edges.edge-syd.listen: 127.0.0.1:8091 is already used by edges.edge-lon.listen",
        ),
        (('listen = "127.0.0.1:8092"', 'listen = "nowhere"'), "edges.edge-syd.listen: 'nowhere' is not HOST:PORT"),
        (
            ('path = "/images/*.jpg"', 'path = "images"'),
            "distributions.site.behaviors[0].path: 'images' is not a path pattern",
        ),
        (
            ('methods = ["GET", "HEAD", "PUT"]', 'methods = ["GET", "HEAD", "FETCH"]'),
            "distributions.site.default_behavior.methods[2]: 'FETCH' is not one of",
        ),
        (
            ('methods = ["GET", "HEAD", "PUT"]', 'methods = ["PUT"]'),
            "distributions.site.default_behavior.methods: must include GET and HEAD",
        ),
        (
            ("default_ttl = 60", 'default_ttl = "sixty"'),
            "distributions.site.default_behavior.default_ttl: must be a number, not str 'sixty'",
        ),
        (
            ("compress = true", "compres = true"),
            "distributions.site.default_behavior.compres: unknown key; did you mean 'compress'?",
        ),
        (('region = "eu-west"', "region = 5"), "edges.edge-lon.region: must be a string, not int 5"),
        (('root = "site"', 'root = "missing"'), "origins.site.root:"),
        (
            ('domains = ["localhost", "*.example.com"]', "domains = []"),
            "distributions.site.domains: needs at least one domain name",
        ),
        (
            ('domains = ["localhost", "*.example.com"]', 'domains = ["bad domain"]'),
            "distributions.site.domains[0]: 'bad domain' is not a domain name",
        ),
        (
            ("[distributions.site]", '[distributions.site]\nedges = ["edge-nyc"]'),
            "distributions.site.edges[0]: no edge named 'edge-nyc'",
        ),
        (("[edges.edge-lon]", '[edges."bad name!"]'), "edges.bad name!: names use letters"),
        (
            ('region = "eu-west"', 'region = "eu-west"\nabandoned_fill_bytes = -1'),
            "edges.edge-lon.abandoned_fill_bytes: must not be negative",
        ),
        (
            ('listen = "127.0.0.1:8081"', 'listen = "127.0.0.1:8081"\ncache_tags = { "/a" = ["has space"] }'),
            'origins.site.cache_tags."/a": must be a non-empty list of tags',
        ),
        (
            ('listen = "127.0.0.1:8081"', 'listen = "127.0.0.1:8081"\ncache_tags = { "images" = ["images"] }'),
            'origins.site.cache_tags."images": a path pattern starts with /',
        ),
    ],
)
def test_bad_config_names_file_key_and_fault(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[origins\n"))
    with pytest.raises(ConfigError, match="edges: missing table"):
        load_config(write(tmp_path, GOOD.split("[edges.edge-lon]")[0]))


def test_one_domain_served_twice_on_an_edge_is_refused(tmp_path: Path) -> None:
    twice = GOOD + '\n[distributions.other]\ndomains = ["localhost"]\norigin = "site"\n'
    with pytest.raises(ConfigError, match="'localhost' is already served by distribution 'site'"):
        load_config(write(tmp_path, twice))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('region = "eu-west"', 'admin_listen = "127.0.0.1:9091"'),
            "edges.edge-lon.admin_token: missing: the admin listener needs a token",
        ),
        (
            ('region = "eu-west"', 'admin_listen = "0.0.0.0:9091"\nadmin_token = "admin-token-0123456789"'),
            "edges.edge-lon.admin_listen: '0.0.0.0:9091' is beyond loopback: this listener has no TLS",
        ),
        (
            ('region = "eu-west"', 'admin_listen = "127.0.0.1:9091"\nadmin_token = "short"'),
            "edges.edge-lon.admin_token: must be at least 16 characters",
        ),
        (
            ("[distributions.site]", '[control]\nlisten = "192.0.2.7:8070"\n[distributions.site]'),
            "control.listen: '192.0.2.7:8070' is beyond loopback",
        ),
        (
            ('origin = "site"', 'origin = "site"\nupload_token = "has spaces in it, sixteen+"'),
            "distributions.site.upload_token: must be printable ASCII without spaces",
        ),
    ],
)
def test_admin_and_control_doors_are_locked_and_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: tuple[str, str], message: str
) -> None:
    monkeypatch.delenv("CDN_ADMIN_TOKEN", raising=False)
    old, new = change
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError, match="^" + str(path).replace(".", r"\.")) as caught:
        load_config(path)
    assert message in str(caught.value)


def test_the_admin_token_may_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_ADMIN_TOKEN", "admin-token-0123456789")
    path = write(tmp_path, GOOD.replace('region = "eu-west"', 'admin_listen = "[::1]:9091"', 1))
    edge = load_config(path).edges["edge-lon"]
    assert edge.admin_token == "admin-token-0123456789" and "admin-token" not in repr(edge)


MEDIA = """
[origins.live]
kind = "media"
listen = "127.0.0.1:8082"
[origins.live.options]
segment_seconds = 2.0
{options}
[origins.live.options.streams.test]
source = "test"
{stream}
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (MEDIA.format(options="part_seconds = 99", stream=""), "origins.live.options.part_seconds: 99 is outside"),
        (MEDIA.format(options="", stream='renditions = ["9000p"]'), "unknown preset '9000p'"),
        (None, "edges.edge-syd.admin_listen: 127.0.0.1:9100 is already used by edges.edge-lon.admin_listen"),
        (
            MEDIA.format(options="segment_second = 2", stream=""),
            "origins.live.options.segment_second: unknown option; did you mean 'segment_seconds'?",
        ),
        (MEDIA.format(options="", stream='renditions = ["360"]'), "unknown preset '360'; did you mean '360p'?"),
    ],
    ids=[
        "part-longer-than-segment",
        "unknown-preset",
        "two-edges-one-admin-port",
        "misspelt-option",
        "misspelt-preset",
    ],
)
def test_cdn_check_refuses_what_cdn_up_would_fail_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str | None, message: str
) -> None:
    from web_dist.cli import main

    text = GOOD
    if extra is not None:
        text += extra
    else:
        token = 'admin_token = "' + "t" * 32 + '"'
        text = text.replace('region = "eu-west"', f'region = "eu-west"\nadmin_listen = "127.0.0.1:9100"\n{token}')
        text = text.replace(
            'listen = "127.0.0.1:8092"', f'listen = "127.0.0.1:8092"\nadmin_listen = "127.0.0.1:9100"\n{token}'
        )
    path = write(tmp_path, text)
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
