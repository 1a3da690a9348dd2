"""The CDN's configuration: a TOML file read into frozen dataclasses.

Everything is checked at load time; a bad file raises `ConfigError` naming the file, the key
and what is wrong, so nothing ever starts half-configured. This module imports nothing of ours:
it is the bottom layer every server builds on.

Shape of the file (see demo/cdn.toml for a whole one)::

    [origins.site]            # a web origin `cdn up` starts on a folder
    kind = "web"
    root = "site"
    listen = "127.0.0.1:8081"

    [edges.edge-lon]
    listen = "127.0.0.1:8091"
    region = "eu-west"

    [distributions.site]
    domains = ["localhost", "127.0.0.1"]
    origin = "site"

    [[distributions.site.behaviors]]   # ordered, first match wins
    path = "/images/*.jpg"
    default_ttl = 86400

    [distributions.site.default_behavior]   # the "*" behavior, always last
    default_ttl = 60
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

ORIGIN_KINDS = ("web", "media", "player")  # player: the watch pages (streaming/player_app.py)
DISTRIBUTION_KINDS = ("web", "streaming")
LIVE_QUERY_KEYS = ("_HLS_msn", "_HLS_part", "_HLS_skip")  # LL-HLS delivery directives
LIVE_PART_SECONDS = 0.5  # the media origin's default part duration
LIVE_HOLD_TARGETS = 3  # a media origin holds a blocking reload up to 3 target durations
HTTP_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_DOMAIN = re.compile(
    r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$|^\[[0-9a-fA-F:]+\]$"
)
_PATTERN = re.compile(r"^(\*|/[A-Za-z0-9_.*?/~+\-%=&:@!$',;]*)$")
# An edge sends its origin's `access_secret` in this header; the origin refuses requests without it.
ORIGIN_SECRET_HEADER = "x-cdn-origin-secret"
MIN_SECRET_LENGTH = 16  # tokens and secrets shorter than this are refused
MAX_WORKERS = 64  # processes one edge location may run (edges.NAME.workers)
# A cache tag (Surrogate-Key / Cache-Tag entry, purged by `cdn purge --tag`): no space or comma.
CACHE_TAG = re.compile(r"^[^\s,]{1,256}$")
WRITE_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})
VIEWER_PROTOCOLS = ("allow-all", "redirect-to-https", "https-only")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the choice closest to a misspelt `word`, else ""."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names file and key."""


@dataclass(frozen=True)
class Origin:
    """Where the truth lives. `listen` set: `cdn up` starts it; else it runs elsewhere."""

    id: str
    kind: Literal["web", "media", "player"]
    url: str
    listen: str | None = None
    root: Path | None = None
    connect_timeout: float = 3.0
    read_timeout: float = 30.0
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    # the options read into a media origin's MediaOriginSettings or a player's PlayerSettings
    settings: Any = field(default=None, repr=False, compare=False)
    # Sent by edges in ORIGIN_SECRET_HEADER; the origin refuses (403) requests without it.
    access_secret: str | None = field(default=None, repr=False)
    ca_file: Path | None = None  # an https:// origin's certificate is checked against this CA, else the system's
    # A web origin's cache tags: (path pattern, tags), every matching rule's tags sent in Surrogate-Key.
    cache_tags: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class EdgeLocation:
    """One edge process: where it listens and how much it may cache."""

    name: str
    listen: str
    region: str | None = None
    cache_bytes: int = 256 * 1024 * 1024
    max_object_bytes: int = 64 * 1024 * 1024
    disk_path: Path | None = None  # a disk tier below memory, kept across restarts
    disk_bytes: int = 1024 * 1024 * 1024
    disk_max_object_bytes: int = 128 * 1024 * 1024
    parent: str | None = None  # another edge asked on a miss (tiered caching, like Origin Shield)
    admin_listen: str | None = None  # metrics and dashboard, never on the public port
    admin_token: str | None = field(default=None, repr=False)  # required with admin_listen
    # HTTPS beside HTTP: one certificate chain and key (PEM) for every domain of the edge (its
    # subject alternative names), TLS 1.2+, ALPN h2 and http/1.1.
    https_listen: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # More (cert, key) pairs on the HTTPS listener, each chosen by SNI for the names in its
    # certificate; tls_cert is the default. Served by uvicorn (HTTP/1.1): see web_dist/server/sni.py.
    certificates: tuple[tuple[Path, Path], ...] = ()
    # The public ports' HTTP server: "auto" serves plain HTTP on uvicorn with the fast lane for
    # fresh hits (web_dist/server/fast_lane.py) and HTTPS on granian; "granian" or "uvicorn" both.
    server: Literal["auto", "granian", "uvicorn"] = "auto"
    max_upload_bytes: int = 5 * 1024**3  # a larger PUT/POST body gets 413 (a behavior may lower it)
    # Peers whose X-Forwarded-For names the client (load balancers in front of the edge).
    trusted_proxies: tuple[Network, ...] = ()
    # WebRTC (WHEP) viewers: a stream's pull from the origin outlives its last viewer this long
    webrtc_grace: float = 5.0
    webrtc_max_viewers: int = 1000  # more get 503
    # A cache fill whose every viewer hung up goes on this far, then stops (Varnish's
    # beresp.do_stream abandon, ATS's background fill threshold): a fill others wait on goes on.
    abandoned_fill_bytes: int = 4 * 1024 * 1024
    # Processes serving this edge location (None: one per core of the host); see edge/workers.py.
    workers: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def https_port(self) -> int | None:
        return int(self.https_listen.rpartition(":")[2]) if self.https_listen else None


@dataclass(frozen=True)
class OriginGroup:
    """CloudFront origin failover: the secondary is asked when the primary fails."""

    id: str
    primary: str
    secondary: str
    failover_statuses: frozenset[int] = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class CacheBehavior:
    """How requests whose path matches `path_pattern` are cached (CloudFront's cache behavior).

    `query_keys` is "none", "all" or a tuple of names that join the cache key (and are the
    only ones forwarded); `header_keys` likewise, lower-cased.
    """

    path_pattern: str = "*"
    min_ttl: float = 0.0
    default_ttl: float = 86400.0
    max_ttl: float = 31536000.0
    allowed_methods: frozenset[str] = frozenset({"GET", "HEAD"})
    query_keys: Literal["none", "all"] | tuple[str, ...] = "none"
    header_keys: tuple[str, ...] = ()
    compress: bool = False
    origin: str | None = None
    max_upload_bytes: int | None = None  # a larger PUT/POST body gets 413
    signed: bool = False  # viewers need a signed URL or signed cookies (CloudFront's trusted key groups)
    # CloudFront's origin request policy: request headers sent to the origin on a fill without
    # joining the key (header_keys are always sent). Every other viewer header is dropped.
    origin_headers: tuple[str, ...] = ()
    # Cookies forwarded to the origin: "none" (the default: Cookie is dropped and Set-Cookie is
    # removed from responses), "all" or a tuple of names. A behavior that forwards cookies
    # passes every request to the origin: the answer is that viewer's own.
    cookie_keys: Literal["none", "all"] | tuple[str, ...] = "none"
    # CloudFront's viewer protocol policy: both, HTTP answered 301 to HTTPS, or HTTP refused (403)
    viewer_protocol: Literal["allow-all", "redirect-to-https", "https-only"] = "allow-all"


@dataclass(frozen=True)
class GeoRestriction:
    """CloudFront geo restriction: an allow or deny list of regions. A client's region comes
    from `networks` (CIDR -> region, longest prefix wins), else from `[router].regions`."""

    mode: Literal["allow", "deny"]
    regions: frozenset[str]
    networks: tuple[tuple[Network, str], ...] = ()


@dataclass(frozen=True)
class Distribution:
    """A named set of edges in front of an origin, answering for some domain names."""

    id: str
    kind: Literal["web", "streaming"]
    domains: tuple[str, ...]
    origin: str
    behaviors: tuple[CacheBehavior, ...]
    edges: tuple[str, ...]
    error_ttl: float = 10.0
    error_pages: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))  # status -> origin path
    # Key-Pair-Id -> public key (PEM) that signed URLs and cookies of this distribution may use.
    trusted_keys: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    trusted_key_files: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    geo_restriction: GeoRestriction | None = None
    # `Authorization: Bearer <upload_token>` (or a signed URL) lets a viewer PUT/POST/PATCH/DELETE.
    upload_token: str | None = field(default=None, repr=False)
    hsts_max_age: int | None = None  # HTTPS answers carry Strict-Transport-Security: max-age=N

    @property
    def default_behavior(self) -> CacheBehavior:
        return self.behaviors[-1]


@dataclass(frozen=True)
class RouterConfig:
    """The request router: sends each client to the nearest healthy edge, by HTTP 302 or DNS.

    `regions` maps client networks to regions (longest prefix wins); `nearby` lists, per
    region, the regions next nearest to it, nearest first; `addresses` is where clients reach
    an edge ("host:port") when that differs from its `listen`, `https_addresses` the same for
    its `https_listen`. With `https_listen` (and `tls_cert`, `tls_key`) the router answers
    HTTPS too; a viewer that came over HTTPS, or whose path's behavior wants HTTPS, is sent to
    the edge's HTTPS address.
    """

    listen: str
    https_listen: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    dns_listen: str | None = None
    health_interval: float = 2.0
    health_timeout: float = 1.0
    dns_ttl: int = 5
    regions: tuple[tuple[Network, str], ...] = ()
    nearby: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    addresses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    https_addresses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Redirect to "EDGE.DOMAIN:PORT" instead of the edge's address, so a browser keeps the
    # distribution's name (its Host picks the distribution at the edge); DNS answers those names.
    edge_hostnames: bool = False


@dataclass(frozen=True)
class ControlConfig:
    """`[control]`: the control plane (invalidations, purges, config pushes).

    Without `redis_url` it is one process (`cdn control`) that edges long-poll; with it, edges
    on any host read the events from a Redis stream. The API token is `token`, or read from
    the environment variable `token_env` (better: it keeps the secret out of the file).
    """

    listen: str = "127.0.0.1:8070"
    url: str | None = None  # where edges and `cdn` reach the API, when not http://<listen>
    token: str | None = field(default=None, repr=False)
    token_env: str = "CDN_CONTROL_TOKEN"
    redis_url: str | None = None
    redis_prefix: str = "cdn"  # keys <prefix>:events (the stream), <prefix>:applied:<id>, ...
    max_paths: int = 3000  # paths in one invalidation, CloudFront's limit
    journal: Path | None = None  # embedded mode: the log kept in this file, so a restart keeps it

    @property
    def api_url(self) -> str:
        return (self.url or f"http://{self.listen}").rstrip("/")


@dataclass(frozen=True)
class CdnConfig:
    source: Path
    origins: Mapping[str, Origin]
    edges: Mapping[str, EdgeLocation]
    distributions: tuple[Distribution, ...]
    origin_groups: Mapping[str, OriginGroup] = field(default_factory=lambda: MappingProxyType({}))
    router: RouterConfig | None = None
    control: ControlConfig | None = None

    def distribution(self, dist_id: str) -> Distribution | None:
        return next((d for d in self.distributions if d.id == dist_id), None)

    def distributions_of(self, edge: str) -> tuple[Distribution, ...]:
        return tuple(d for d in self.distributions if edge in d.edges)

    def origins_of(self, target: str) -> tuple[Origin, ...]:
        """The origins a distribution's `origin` names: one, or a group's primary and secondary."""
        group = self.origin_groups.get(target)
        if group is None:
            return (self.origins[target],)
        return (self.origins[group.primary], self.origins[group.secondary])


# Where `cdn` looks for a config when a command is given no --config: here, then the demo's.
DEFAULT_CONFIGS = (Path("cdn.toml"), Path("demo") / "cdn.toml")


def find_config(given: Path | None, cwd: Path | None = None) -> Path | None:
    """`given`, else the first of DEFAULT_CONFIGS that exists under `cwd` (None: none does)."""
    if given is not None:
        return given
    base = Path() if cwd is None else cwd  # relative: it is shown as the user would type it
    return next((base / p for p in DEFAULT_CONFIGS if (base / p).is_file()), None)


def no_config_error(what: str) -> ConfigError:
    looked = " nor ".join(f"./{p}" for p in DEFAULT_CONFIGS)
    return ConfigError(
        f"{what}: no --config FILE given, and neither {looked} is here: pass --config with the file `cdn up` runs"
    )


def load_config(path: str | Path) -> CdnConfig:
    """Read and check a config file; raises ConfigError on anything wrong."""
    source = Path(path)
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return parse_config(raw, source)


def parse_config(
    raw: Mapping[str, Any], source: Path = Path("<config>"), environ: Mapping[str, str] | None = None
) -> CdnConfig:
    """Check an already-parsed TOML document (paths resolve against `source`'s folder; secrets
    named by `*_env` keys are read from `environ`, the process environment by default)."""
    r = _Reader(source, os.environ if environ is None else environ)
    r.keys(raw, "", {"origins", "origin_groups", "edges", "distributions", "router", "control"})
    origins = {
        name: _origin(r, name, body, source.parent) for name, body in r.table(raw, "", "origins", required=True).items()
    }
    groups = {name: _origin_group(r, name, body, origins) for name, body in r.table(raw, "", "origin_groups").items()}
    for name in groups:
        if name in origins:
            raise r.fail(f"origin_groups.{name}", "an origin has that name too")
    edges = {
        name: _edge(r, name, body, source.parent) for name, body in r.table(raw, "", "edges", required=True).items()
    }
    _check_parents(r, edges)
    targets: dict[str, Origin | OriginGroup] = {**origins, **groups}
    dists = tuple(
        _distribution(r, name, body, targets, edges)
        for name, body in r.table(raw, "", "distributions", required=True).items()
    )
    _check_unique_listen(r, origins, edges)
    _check_unique_domains(r, dists)
    router = _router(r, raw["router"], edges) if "router" in raw else None
    for dist in dists:
        if dist.geo_restriction is not None and not dist.geo_restriction.networks and not (router and router.regions):
            raise r.fail(
                f"distributions.{dist.id}.geo_restriction.networks",
                "missing: no CIDR -> region map here or in [router].regions",
            )
    control = _control(r, raw["control"]) if "control" in raw else None
    return CdnConfig(
        source, MappingProxyType(origins), MappingProxyType(edges), dists, MappingProxyType(groups), router, control
    )


class _Reader:
    """Typed access to the raw document; every failure names file and dotted key."""

    def __init__(self, source: Path, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}")

    def keys(self, body: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        for key in body:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.fail(_join(where, key), f"unknown key{did_you_mean(key, allowed)} (known keys: {known})")

    def table(self, body: Mapping[str, Any], where: str, key: str, *, required: bool = False) -> dict[str, Any]:
        value = body.get(key)
        if value is None:
            if required:
                raise self.fail(_join(where, key), "missing table")
            return {}
        if not isinstance(value, dict):
            raise self.fail(_join(where, key), "must be a table")
        for name, inner in value.items():
            if not _NAME.match(name):
                raise self.fail(_join(where, key, name), "names use letters, digits, '.', '_', '-'")
            if not isinstance(inner, dict):
                raise self.fail(_join(where, key, name), "must be a table")
        return value

    def get(
        self,
        body: Mapping[str, Any],
        where: str,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = ...,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        full = _join(where, key)
        if key not in body:
            if default is ...:
                raise self.fail(full, "missing")
            return default
        value = body[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise self.fail(full, f"must be {_kind_name(kind)}, not {type(value).__name__} {value!r}")
        problem = check(value) if check else None
        if problem:
            raise self.fail(full, problem)
        return value

    def secret(self, body: Mapping[str, Any], where: str, key: str, default_env: str | None = None) -> str | None:
        """A secret: `key` in the file, else the environment variable `key_env` names (or
        `default_env`, when the file names none). None when neither is set."""
        env_key = f"{key}_env"
        literal: str | None = self.get(body, where, key, str, None, _secret_problem)
        env = self.get(body, where, env_key, str, default_env)
        if literal is not None or env is None:
            return literal
        value = self.environ.get(env)
        if value is None:
            if env_key in body:
                raise self.fail(_join(where, env_key), f"the environment variable {env} is not set")
            return None
        problem = _secret_problem(value)
        if problem:
            raise self.fail(_join(where, env_key), f"the environment variable {env} {problem}")
        return value

    def strings(self, body: Mapping[str, Any], where: str, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(body, where, key, list, default)
        if not all(isinstance(v, str) for v in value):
            raise self.fail(_join(where, key), "must be a list of strings")
        return tuple(value)


def _origin(r: _Reader, name: str, body: dict[str, Any], base: Path) -> Origin:
    where = f"origins.{name}"
    r.keys(
        body,
        where,
        {
            "kind",
            "url",
            "listen",
            "root",
            "connect_timeout",
            "read_timeout",
            "options",
            "access_secret",
            "access_secret_env",
            "ca_file",
            "cache_tags",
        },
    )
    kind = r.get(body, where, "kind", str, "web", _one_of(ORIGIN_KINDS))
    listen = r.get(body, where, "listen", str, None, _listen_problem)
    url = r.get(body, where, "url", str, None, _url_problem)
    if url is None and listen is None:
        raise r.fail(where, "needs `url` (an origin running elsewhere) or `listen` (one `cdn up` starts)")
    root = r.get(body, where, "root", str, None)
    if kind == "web" and listen is not None and root is None:
        raise r.fail(f"{where}.root", "missing: a web origin started by `cdn up` serves a folder")
    root_path = (base / root).resolve() if root is not None else None
    if root_path is not None and not root_path.is_dir():
        raise r.fail(f"{where}.root", f"{root_path} is not a folder")
    options = dict(r.get(body, where, "options", dict, {}))
    settings = _origin_settings(r, kind, options, base, f"{where}.options")
    read_timeout = r.get(body, where, "read_timeout", float, _default(Origin, "read_timeout"), _positive)
    segment = getattr(settings, "segment_seconds", 0.0)  # a media origin's
    if kind == "media" and read_timeout <= LIVE_HOLD_TARGETS * segment:
        if "read_timeout" in body:
            raise r.fail(
                f"{where}.read_timeout",
                f"{read_timeout:g} s is too short: the origin holds blocking "
                f"playlist reloads up to {LIVE_HOLD_TARGETS} target durations ({LIVE_HOLD_TARGETS * segment:g} s)",
            )
        read_timeout = LIVE_HOLD_TARGETS * segment + 30.0
    return Origin(
        id=name,
        kind=kind,
        url=(url or f"http://{listen}").rstrip("/"),
        listen=listen,
        root=root_path,
        connect_timeout=r.get(body, where, "connect_timeout", float, _default(Origin, "connect_timeout"), _positive),
        read_timeout=read_timeout,
        options=MappingProxyType(options),
        settings=settings,
        access_secret=r.secret(body, where, "access_secret"),
        ca_file=_pem_file(r, body, where, "ca_file", base, b"-----BEGIN CERTIFICATE-----"),
        cache_tags=_cache_tags(r, f"{where}.cache_tags", body.get("cache_tags", {}), kind),
    )


def _origin_settings(r: _Reader, kind: str, options: dict[str, Any], base: Path, where: str) -> Any:
    """A media or player origin's typed options (web_dist/config/media.py, player.py), checked
    here with the rest of the file; None for a web origin, which takes none."""
    try:
        if kind == "media":
            from web_dist.config.media import MediaOriginSettings

            return MediaOriginSettings.from_options(options, where=where)
        if kind == "player":
            from web_dist.config.player import PlayerSettings

            return PlayerSettings.from_options(options, base=base, where=where)
    except ValueError as exc:
        raise ConfigError(f"{r.source}: {exc}") from None
    return None


def _cache_tags(r: _Reader, where: str, raw: Any, kind: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`cache_tags = { "/images/*" = ["images"], "/index.html" = ["home", "pages"] }`."""
    if not isinstance(raw, dict):
        raise r.fail(where, 'must be a table of path pattern = ["tag", ...]')
    if raw and kind != "web":
        raise r.fail(where, "only a web origin attaches cache tags (a media origin's objects are named once)")
    rules = []
    for pattern, tags in raw.items():
        if not _PATTERN.match(pattern):
            raise r.fail(f'{where}."{pattern}"', "a path pattern starts with / (or is *)")
        if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and CACHE_TAG.match(t) for t in tags):
            raise r.fail(
                f'{where}."{pattern}"', "must be a non-empty list of tags (1 to 256 characters, no spaces or commas)"
            )
        rules.append((pattern, tuple(tags)))
    return tuple(rules)


def _origin_group(r: _Reader, name: str, body: dict[str, Any], origins: Mapping[str, Origin]) -> OriginGroup:
    where = f"origin_groups.{name}"
    r.keys(body, where, {"primary", "secondary", "failover_statuses"})
    primary = r.get(body, where, "primary", str, ..., _one_of(tuple(origins)))
    secondary = r.get(body, where, "secondary", str, ..., _one_of(tuple(origins)))
    if primary == secondary:
        raise r.fail(f"{where}.secondary", "must differ from primary")
    statuses = r.get(body, where, "failover_statuses", list, [500, 502, 503, 504])
    for i, status in enumerate(statuses):
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise r.fail(f"{where}.failover_statuses[{i}]", f"{status!r} is not a 4xx or 5xx status code")
    return OriginGroup(name, primary, secondary, frozenset(statuses))


def _edge(r: _Reader, name: str, body: dict[str, Any], base: Path) -> EdgeLocation:
    where = f"edges.{name}"
    r.keys(
        body,
        where,
        {
            "listen",
            "region",
            "cache_bytes",
            "max_object_bytes",
            "disk_path",
            "disk_bytes",
            "disk_max_object_bytes",
            "parent",
            "admin_listen",
            "max_upload_bytes",
            "trusted_proxies",
            "server",
            "admin_token",
            "admin_token_env",
            "https_listen",
            "tls_cert",
            "tls_key",
            "certificates",
            "webrtc_grace",
            "webrtc_max_viewers",
            "abandoned_fill_bytes",
            "workers",
        },
    )
    cache_bytes = r.get(body, where, "cache_bytes", int, _default(EdgeLocation, "cache_bytes"), _positive)
    max_object = r.get(body, where, "max_object_bytes", int, min(cache_bytes, 64 * 1024 * 1024), _positive)
    if max_object > cache_bytes:
        raise r.fail(f"{where}.max_object_bytes", f"{max_object} is larger than cache_bytes {cache_bytes}")
    admin_listen = r.get(body, where, "admin_listen", str, None, _private_listen_problem)
    admin_token = r.secret(body, where, "admin_token", "CDN_ADMIN_TOKEN")
    if admin_listen is not None and admin_token is None:
        raise r.fail(
            f"{where}.admin_token",
            "missing: the admin listener needs a token (admin_token, admin_token_env "
            "or the environment variable CDN_ADMIN_TOKEN)",
        )
    https_listen = r.get(body, where, "https_listen", str, None, _listen_problem)
    tls_cert = _pem_file(r, body, where, "tls_cert", base, b"-----BEGIN CERTIFICATE-----")
    tls_key = _pem_file(r, body, where, "tls_key", base, b"PRIVATE KEY-----")
    if https_listen is not None and (tls_cert is None or tls_key is None):
        raise r.fail(
            f"{where}.{'tls_key' if tls_cert else 'tls_cert'}",
            "missing: https_listen needs tls_cert and tls_key (PEM files)",
        )
    certificates = _certificates(r, body, where, base)
    if certificates and https_listen is None:
        raise r.fail(f"{where}.certificates", "needs https_listen (and tls_cert, tls_key: the default certificate)")
    return EdgeLocation(
        name=name,
        https_listen=https_listen,
        tls_cert=tls_cert,
        tls_key=tls_key,
        certificates=certificates,
        listen=r.get(body, where, "listen", str, ..., _listen_problem),
        region=r.get(body, where, "region", str, None),
        cache_bytes=cache_bytes,
        max_object_bytes=max_object,
        disk_path=(base / disk).resolve() if (disk := r.get(body, where, "disk_path", str, None)) else None,
        disk_bytes=r.get(body, where, "disk_bytes", int, _default(EdgeLocation, "disk_bytes"), _positive),
        disk_max_object_bytes=r.get(
            body, where, "disk_max_object_bytes", int, _default(EdgeLocation, "disk_max_object_bytes"), _positive
        ),
        parent=r.get(body, where, "parent", str, None),
        admin_listen=admin_listen,
        admin_token=admin_token,
        server=r.get(
            body, where, "server", str, _default(EdgeLocation, "server"), _one_of(("auto", "granian", "uvicorn"))
        ),
        max_upload_bytes=r.get(
            body, where, "max_upload_bytes", int, _default(EdgeLocation, "max_upload_bytes"), _positive
        ),
        trusted_proxies=_networks(r, f"{where}.trusted_proxies", r.strings(body, where, "trusted_proxies", ())),
        webrtc_grace=r.get(body, where, "webrtc_grace", float, _default(EdgeLocation, "webrtc_grace"), _not_negative),
        webrtc_max_viewers=r.get(
            body, where, "webrtc_max_viewers", int, _default(EdgeLocation, "webrtc_max_viewers"), _positive
        ),
        abandoned_fill_bytes=r.get(
            body, where, "abandoned_fill_bytes", int, _default(EdgeLocation, "abandoned_fill_bytes"), _not_negative
        ),
        workers=r.get(body, where, "workers", int, None, _worker_count_problem),
    )


def _worker_count_problem(value: int) -> str | None:
    return None if 1 <= value <= MAX_WORKERS else f"must be between 1 and {MAX_WORKERS}, not {value}"


def _certificates(r: _Reader, body: dict[str, Any], where: str, base: Path) -> tuple[tuple[Path, Path], ...]:
    """`[[edges.NAME.certificates]]`: tables of `cert` and `key` (PEM files)."""
    entries = r.get(body, where, "certificates", list, [])
    pairs = []
    for i, entry in enumerate(entries):
        at = f"{where}.certificates[{i}]"
        if not isinstance(entry, dict):
            raise r.fail(at, "must be a table of cert and key")
        r.keys(entry, at, {"cert", "key"})
        cert = _pem_file(r, entry, at, "cert", base, b"-----BEGIN CERTIFICATE-----")
        key = _pem_file(r, entry, at, "key", base, b"PRIVATE KEY-----")
        if cert is None or key is None:
            raise r.fail(f"{at}.{'key' if cert else 'cert'}", "missing: a certificate needs cert and key (PEM files)")
        pairs.append((cert, key))
    return tuple(pairs)


def _pem_file(r: _Reader, body: dict[str, Any], where: str, key: str, base: Path, marker: bytes) -> Path | None:
    """A PEM file named by `key` (relative to the config's folder), checked readable and PEM."""
    raw: str | None = r.get(body, where, key, str, None)
    if raw is None:
        return None
    path = (base / raw).resolve()
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise r.fail(f"{where}.{key}", f"cannot read {path}: {exc.strerror or exc}") from None
    if marker not in text:
        raise r.fail(f"{where}.{key}", f"{path} is not a PEM file of the expected kind ({marker.decode().strip('-')})")
    return path


def _networks(r: _Reader, where: str, cidrs: Sequence[str]) -> tuple[Network, ...]:
    """CIDR blocks ("10.0.0.0/8", or one address), each checked."""
    networks: list[Network] = []
    for i, cidr in enumerate(cidrs):
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise r.fail(f"{where}[{i}]", f"not a network in CIDR form: {exc}") from None
    return tuple(networks)


def _check_parents(r: _Reader, edges: Mapping[str, EdgeLocation]) -> None:
    for edge in edges.values():
        seen = [edge.name]
        current = edge
        while current.parent is not None:
            if current.parent not in edges:
                raise r.fail(f"edges.{current.name}.parent", f"no edge named {current.parent!r}")
            if current.parent in seen:
                raise r.fail(
                    f"edges.{edge.name}.parent", f"parents form a loop: {' -> '.join([*seen, current.parent])}"
                )
            seen.append(current.parent)
            current = edges[current.parent]


def _distribution(
    r: _Reader,
    name: str,
    body: dict[str, Any],
    origins: Mapping[str, Origin | OriginGroup],
    edges: Mapping[str, EdgeLocation],
) -> Distribution:
    where = f"distributions.{name}"
    r.keys(
        body,
        where,
        {
            "kind",
            "domains",
            "origin",
            "edges",
            "behaviors",
            "default_behavior",
            "error_ttl",
            "error_pages",
            "trusted_keys",
            "geo_restriction",
            "upload_token",
            "upload_token_env",
            "hsts_max_age",
        },
    )
    kind = r.get(body, where, "kind", str, "web", _one_of(DISTRIBUTION_KINDS))
    origin = r.get(body, where, "origin", str, ..., _one_of(tuple(origins)))
    domains = r.strings(body, where, "domains")
    if not domains:
        raise r.fail(f"{where}.domains", "needs at least one domain name")
    for i, domain in enumerate(domains):
        if not _DOMAIN.match(domain):
            raise r.fail(f"{where}.domains[{i}]", f"{domain!r} is not a domain name or IP address")
    dist_edges = r.strings(body, where, "edges", tuple(edges))
    for i, edge in enumerate(dist_edges):
        if edge not in edges:
            raise r.fail(f"{where}.edges[{i}]", f"no edge named {edge!r} (edges: {', '.join(edges)})")
    raw_behaviors = r.get(body, where, "behaviors", list, [])
    behaviors = [
        _behavior(r, f"{where}.behaviors[{i}]", b, origins, default_pattern=False) for i, b in enumerate(raw_behaviors)
    ]
    if kind == "streaming" and "behaviors" not in body:
        behaviors += _live_playlist_behaviors(origins[origin])
    default = body.get("default_behavior", {})
    if not isinstance(default, dict):
        raise r.fail(f"{where}.default_behavior", "must be a table")
    behaviors.append(_behavior(r, f"{where}.default_behavior", default, origins, default_pattern=True))
    for i, b in enumerate(behaviors):
        plain = [e for e in dist_edges if edges[e].https_listen is None]
        if b.viewer_protocol != "allow-all" and plain:
            key = f"{where}.default_behavior" if b is behaviors[-1] else f"{where}.behaviors[{i}]"
            raise r.fail(
                f"{key}.viewer_protocol",
                f"{b.viewer_protocol!r} needs HTTPS, but edge {plain[0]!r} has no https_listen",
            )
    trusted_keys = _trusted_keys(r, f"{where}.trusted_keys", body.get("trusted_keys", {}), r.source.parent)
    if any(b.signed for b in behaviors) and not trusted_keys:
        raise r.fail(
            f"{where}.trusted_keys", "missing: a behavior has signed = true, so the distribution needs a public key"
        )
    return Distribution(
        id=name,
        kind=kind,
        domains=tuple(d.lower() for d in domains),
        origin=origin,
        behaviors=tuple(behaviors),
        edges=dist_edges,
        # a live stream's errors (a part asked too early) are over within about a part
        error_ttl=r.get(body, where, "error_ttl", float, 1.0 if kind == "streaming" else 10.0, _not_negative),
        error_pages=_error_pages(r, f"{where}.error_pages", body.get("error_pages", {})),
        trusted_keys=trusted_keys,
        trusted_key_files=MappingProxyType(
            {k: (r.source.parent / v).resolve() for k, v in body.get("trusted_keys", {}).items()}
        ),
        geo_restriction=_geo_restriction(r, f"{where}.geo_restriction", body["geo_restriction"])
        if "geo_restriction" in body
        else None,
        upload_token=r.secret(body, where, "upload_token"),
        hsts_max_age=r.get(body, where, "hsts_max_age", int, None, _not_negative),
    )


def _live_playlist_behaviors(origin: Origin | OriginGroup) -> list[CacheBehavior]:
    """A streaming distribution's defaults: `/*.m3u8` and `/*.mpd` (DASH) live about one part
    duration, with the LL-HLS delivery directives in the key (one held upstream reload per msn
    and part); `/recordings/*` follows the origin's max-age. Media objects fall to the default
    behavior, whose long TTL honours the origin's `immutable`."""
    options = origin.options if isinstance(origin, Origin) else {}
    part = options.get("part_seconds", LIVE_PART_SECONDS)
    part = float(part) if isinstance(part, int | float) and part > 0 else LIVE_PART_SECONDS
    return [
        # a recording's playlist: the origin's own max-age (1 s while it grows, a day once VOD)
        CacheBehavior(path_pattern="/recordings/*", min_ttl=0.0, default_ttl=1.0),
        CacheBehavior(path_pattern="/*.m3u8", min_ttl=0.0, default_ttl=part, max_ttl=part, query_keys=LIVE_QUERY_KEYS),
        CacheBehavior(path_pattern="/*.mpd", min_ttl=0.0, default_ttl=part, max_ttl=part),
    ]


def _error_pages(r: _Reader, where: str, raw: Any) -> Mapping[int, str]:
    """`error_pages = { 404 = "/errors/404.html" }`: the origin path answered for a status."""
    if not isinstance(raw, dict):
        raise r.fail(where, 'must be a table of status = "/path"')
    pages: dict[int, str] = {}
    for status, path in raw.items():
        if not status.isdigit() or not 400 <= int(status) <= 599:
            raise r.fail(f"{where}.{status}", "keys are 4xx or 5xx status codes")
        if not isinstance(path, str) or _pattern_problem(path) or "*" in path or "?" in path:
            raise r.fail(f"{where}.{status}", f"{path!r} is not a path starting with '/'")
        pages[int(status)] = path
    return MappingProxyType(pages)


def _behavior(
    r: _Reader, where: str, body: Any, origins: Mapping[str, Origin | OriginGroup], *, default_pattern: bool
) -> CacheBehavior:
    if not isinstance(body, dict):
        raise r.fail(where, "must be a table")
    allowed = {
        "min_ttl",
        "default_ttl",
        "max_ttl",
        "methods",
        "query_keys",
        "header_keys",
        "compress",
        "origin",
        "max_upload_bytes",
        "signed",
        "origin_headers",
        "cookie_keys",
        "viewer_protocol",
    }
    r.keys(body, where, allowed if default_pattern else allowed | {"path"})
    pattern = "*" if default_pattern else r.get(body, where, "path", str, ..., _pattern_problem)
    min_ttl = r.get(body, where, "min_ttl", float, _default(CacheBehavior, "min_ttl"), _not_negative)
    default_ttl = r.get(body, where, "default_ttl", float, _default(CacheBehavior, "default_ttl"), _not_negative)
    max_ttl = r.get(body, where, "max_ttl", float, max(31536000.0, default_ttl), _not_negative)
    if not min_ttl <= default_ttl <= max_ttl:
        raise r.fail(
            where,
            f"TTLs must satisfy min_ttl <= default_ttl <= max_ttl (got {min_ttl:g}, {default_ttl:g}, {max_ttl:g})",
        )
    methods = r.strings(body, where, "methods", ("GET", "HEAD"))
    for i, method in enumerate(methods):
        if method not in HTTP_METHODS:
            raise r.fail(f"{where}.methods[{i}]", f"{method!r} is not one of {', '.join(sorted(HTTP_METHODS))}")
    if "GET" not in methods or "HEAD" not in methods:
        raise r.fail(f"{where}.methods", "must include GET and HEAD")
    query: Literal["none", "all"] | tuple[str, ...]
    raw_query = body.get("query_keys", "none")
    if raw_query == "none" or raw_query == "all":
        query = raw_query
    else:
        query = tuple(sorted(r.strings(body, where, "query_keys")))
    headers = _header_names(r, where, body, "header_keys")
    cookies: Literal["none", "all"] | tuple[str, ...]
    raw_cookies = body.get("cookie_keys", "none")
    cookies = raw_cookies if raw_cookies in ("none", "all") else tuple(sorted(r.strings(body, where, "cookie_keys")))
    return CacheBehavior(
        path_pattern=pattern,
        min_ttl=min_ttl,
        default_ttl=default_ttl,
        max_ttl=max_ttl,
        allowed_methods=frozenset(methods),
        query_keys=query,
        header_keys=headers,
        compress=r.get(body, where, "compress", bool, _default(CacheBehavior, "compress")),
        origin=r.get(body, where, "origin", str, None, _one_of(tuple(origins))),
        max_upload_bytes=r.get(body, where, "max_upload_bytes", int, None, _positive),
        signed=r.get(body, where, "signed", bool, _default(CacheBehavior, "signed")),
        origin_headers=_header_names(r, where, body, "origin_headers"),
        cookie_keys=cookies,
        viewer_protocol=r.get(
            body, where, "viewer_protocol", str, _default(CacheBehavior, "viewer_protocol"), _one_of(VIEWER_PROTOCOLS)
        ),
    )


def _header_names(r: _Reader, where: str, body: Any, key: str) -> tuple[str, ...]:
    names = tuple(h.lower() for h in r.strings(body, where, key, ()))
    for i, header in enumerate(names):
        if not re.match(r"^[a-z0-9!#$%&'*+.^_`|~-]+$", header):
            raise r.fail(f"{where}.{key}[{i}]", f"{header!r} is not a header name")
    return names


def _trusted_keys(r: _Reader, where: str, raw: Any, base: Path) -> Mapping[str, bytes]:
    """`trusted_keys = { KEY_PAIR_ID = "keys/public.pem" }`: the PEM files are read here."""
    if not isinstance(raw, dict):
        raise r.fail(where, 'must be a table of KEY_PAIR_ID = "path/to/public.pem"')
    keys: dict[str, bytes] = {}
    for key_id, path in raw.items():
        if not _NAME.match(key_id):
            raise r.fail(f"{where}.{key_id}", "key pair ids use letters, digits, '.', '_', '-'")
        if not isinstance(path, str):
            raise r.fail(f"{where}.{key_id}", "must be the path of a public key PEM file")
        try:
            pem = (base / path).read_bytes()
        except OSError as exc:
            raise r.fail(f"{where}.{key_id}", f"cannot read {base / path}: {exc.strerror or exc}") from None
        if b"-----BEGIN PUBLIC KEY-----" not in pem and b"-----BEGIN RSA PUBLIC KEY-----" not in pem:
            raise r.fail(f"{where}.{key_id}", f"{base / path} is not a PEM public key")
        keys[key_id] = pem
    return MappingProxyType(keys)


def _geo_restriction(r: _Reader, where: str, body: Any) -> GeoRestriction:
    """`geo_restriction = { mode = "allow", regions = ["eu-west"], networks = { "10.0.0.0/8" = "eu-west" } }`."""
    if not isinstance(body, dict):
        raise r.fail(where, "must be a table")
    r.keys(body, where, {"mode", "regions", "networks"})
    return GeoRestriction(
        mode=r.get(body, where, "mode", str, ..., _one_of(("allow", "deny"))),
        regions=frozenset(r.strings(body, where, "regions")),
        networks=_region_map(r, where, "networks", body),
    )


def _region_map(r: _Reader, where: str, key: str, body: dict[str, Any]) -> tuple[tuple[Network, str], ...]:
    """A table of CIDR = region (`[router.regions]`, a geo restriction's `networks`), each checked."""
    raw = r.get(body, where, key, dict, {})
    regions: list[tuple[Network, str]] = []
    for cidr in raw:
        try:
            network = ipaddress.ip_network(cidr)
        except ValueError as exc:
            raise r.fail(f"{where}.{key}.{cidr}", f"not a network in CIDR form: {exc}") from None
        regions.append((network, r.get(raw, f"{where}.{key}", cidr, str)))
    return tuple(regions)


def _control(r: _Reader, body: Any) -> ControlConfig:
    """`[control]`: listen, url, token or token_env, redis_url, redis_prefix, max_paths."""
    if not isinstance(body, dict):
        raise r.fail("control", "must be a table")
    r.keys(
        body, "control", {"listen", "url", "token", "token_env", "redis_url", "redis_prefix", "max_paths", "journal"}
    )
    redis_url = r.get(body, "control", "redis_url", str, None)
    if redis_url is not None and not re.match(r"^(redis|rediss|unix)://\S+$", redis_url):
        raise r.fail("control.redis_url", f"{redis_url!r} is not a redis://, rediss:// or unix:// URL")
    return ControlConfig(
        listen=r.get(body, "control", "listen", str, "127.0.0.1:8070", _private_listen_problem),
        url=r.get(body, "control", "url", str, None, _url_problem),
        token=r.get(body, "control", "token", str, None, _secret_problem),
        token_env=r.get(body, "control", "token_env", str, "CDN_CONTROL_TOKEN"),
        redis_url=redis_url,
        redis_prefix=r.get(
            body, "control", "redis_prefix", str, "cdn", lambda v: None if _NAME.match(v) else f"{v!r} is not a name"
        ),
        max_paths=r.get(body, "control", "max_paths", int, 3000, _positive),
        journal=(r.source.parent / journal).resolve()
        if (journal := r.get(body, "control", "journal", str, None))
        else None,
    )


def _router(r: _Reader, body: Any, edges: Mapping[str, EdgeLocation]) -> RouterConfig:
    """`[router]`: listen, dns_listen, health timings, and the tables `regions` (CIDR = region),
    `nearby` (region = [regions, nearest first]) and `addresses` (edge = "host:port")."""
    if not isinstance(body, dict):
        raise r.fail("router", "must be a table")
    r.keys(
        body,
        "router",
        {
            "listen",
            "dns_listen",
            "health_interval",
            "health_timeout",
            "dns_ttl",
            "regions",
            "nearby",
            "addresses",
            "https_addresses",
            "edge_hostnames",
            "https_listen",
            "tls_cert",
            "tls_key",
        },
    )
    regions = _region_map(r, "router", "regions", body)
    raw_nearby = r.get(body, "router", "nearby", dict, {})
    nearby = {region: r.strings(raw_nearby, "router.nearby", region) for region in raw_nearby}
    addresses, https_addresses = (_edge_addresses(r, body, key, edges) for key in ("addresses", "https_addresses"))
    for name in https_addresses:
        if edges[name].https_listen is None:
            raise r.fail(f"router.https_addresses.{name}", f"edge {name!r} has no https_listen")
    https_listen = r.get(body, "router", "https_listen", str, None, _listen_problem)
    tls_cert = _pem_file(r, body, "router", "tls_cert", r.source.parent, b"-----BEGIN CERTIFICATE-----")
    tls_key = _pem_file(r, body, "router", "tls_key", r.source.parent, b"PRIVATE KEY-----")
    if https_listen is not None and (tls_cert is None or tls_key is None):
        raise r.fail(
            f"router.{'tls_key' if tls_cert else 'tls_cert'}",
            "missing: https_listen needs tls_cert and tls_key (PEM files)",
        )
    return RouterConfig(
        listen=r.get(body, "router", "listen", str, ..., _listen_problem),
        https_listen=https_listen,
        tls_cert=tls_cert,
        tls_key=tls_key,
        dns_listen=r.get(body, "router", "dns_listen", str, None, _listen_problem),
        health_interval=r.get(body, "router", "health_interval", float, 2.0, _positive),
        health_timeout=r.get(body, "router", "health_timeout", float, 1.0, _positive),
        dns_ttl=r.get(body, "router", "dns_ttl", int, 5, _not_negative),
        regions=regions,
        nearby=MappingProxyType(nearby),
        addresses=MappingProxyType(addresses),
        https_addresses=MappingProxyType(https_addresses),
        edge_hostnames=r.get(body, "router", "edge_hostnames", bool, False),
    )


def _edge_addresses(r: _Reader, body: dict[str, Any], key: str, edges: Mapping[str, EdgeLocation]) -> dict[str, str]:
    """`[router.addresses]` or `[router.https_addresses]`: edge name = "host:port"."""
    addresses = r.get(body, "router", key, dict, {})
    for name in addresses:
        if name not in edges:
            raise r.fail(f"router.{key}.{name}", f"no edge named {name!r} (edges: {', '.join(edges)})")
        r.get(addresses, f"router.{key}", name, str, ..., _listen_problem)
    return dict(addresses)


def _check_unique_listen(r: _Reader, origins: Mapping[str, Origin], edges: Mapping[str, EdgeLocation]) -> None:
    seen: dict[str, str] = {}
    listeners = [(f"origins.{o.id}.listen", o.listen) for o in origins.values()]
    listeners += [(f"edges.{e.name}.listen", e.listen) for e in edges.values()]
    listeners += [(f"edges.{e.name}.https_listen", e.https_listen) for e in edges.values()]
    for key, listen in listeners:
        if listen is None or listen.endswith(":0"):
            continue
        if listen in seen:
            raise r.fail(key, f"{listen} is already used by {seen[listen]}")
        seen[listen] = key


def _check_unique_domains(r: _Reader, dists: tuple[Distribution, ...]) -> None:
    owner: dict[tuple[str, str], str] = {}
    for dist in dists:
        for domain in dist.domains:
            for edge in dist.edges:
                if (edge, domain) in owner:
                    raise r.fail(
                        f"distributions.{dist.id}.domains",
                        f"{domain!r} is already served by distribution {owner[edge, domain]!r} on edge {edge!r}",
                    )
                owner[edge, domain] = dist.id


def _default(cls: type, name: str) -> Any:
    """The default a config dataclass gives field `name`: each default is written once, there."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].default


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"{v!r} is not one of: {', '.join(choices)}"


def _positive(v: float) -> str | None:
    return None if v > 0 else f"must be greater than 0, not {v}"


def _not_negative(v: float) -> str | None:
    return None if v >= 0 else f"must not be negative, not {v}"


def _listen_problem(v: str) -> str | None:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return f"{v!r} is not HOST:PORT"
    return None


def _private_listen_problem(v: str) -> str | None:
    """A listener that serves secrets over plain HTTP: loopback only (no TLS there yet)."""
    problem = _listen_problem(v)
    if problem:
        return problem
    host = v.rpartition(":")[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return (
        None
        if loopback
        else f"{v!r} is beyond loopback: this listener has no TLS, so its token would cross the network in clear"
    )


def _secret_problem(v: str) -> str | None:
    if len(v) < MIN_SECRET_LENGTH:
        return f"must be at least {MIN_SECRET_LENGTH} characters"
    if not re.match(r"^[\x21-\x7e]+$", v):
        return "must be printable ASCII without spaces"
    return None


def _url_problem(v: str) -> str | None:
    if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", v):
        return f"{v!r} is not an http:// or https:// URL"
    return None


def _pattern_problem(v: str) -> str | None:
    if not _PATTERN.match(v):
        return f"{v!r} is not a path pattern (starts with '/', may use '*' and '?')"
    return None
