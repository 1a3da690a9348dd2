"""The `cdn` command: start a whole CDN from a config, or one edge or origin of it.

cdn up --config FILE              every origin and edge of FILE, each its own process
cdn edge --config FILE --name N   one edge location
cdn origin --config FILE --name N one origin of FILE (web or media)
cdn origin --root DIR --listen A  a web origin serving DIR, without a config
cdn check --config FILE           check FILE and print what it describes
cdn router --config FILE          the request router of FILE's [router] (HTTP 302 and DNS)
cdn control / invalidate / purge  the control plane and its client (web_dist/cli/control.py)
cdn loadtest --edge URL ...       virtual viewers against edges, a router or an origin
cdn keygen / cdn sign             key pairs, signed URLs and cookies (web_dist/cli/signing.py)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from web_dist.cli.control import add_commands as add_control_commands
from web_dist.cli.signing import add_commands as add_signing_commands
from web_dist.cli.signing import make_missing_key_pairs, private_key_beside
from web_dist.config import (
    CdnConfig,
    ConfigError,
    Distribution,
    EdgeLocation,
    Origin,
    find_config,
    load_config,
)
from web_dist.config.invalidation import resolve_token
from web_dist.server import Engine, SharedApp, parse_listen, start_server

log = logging.getLogger("cdn")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if getattr(args, "finds_config", False):  # ./cdn.toml, else ./demo/cdn.toml, when not given
        args.config = find_config(args.config)
    if isinstance(getattr(args, "config", None), Path):
        load_secrets(secrets_path(args.config), os.environ)  # what `cdn up` made for this config
    try:
        code: int = args.run(args)
        return code
    except ConfigError as exc:
        print(f"cdn: bad config: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cdn: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdn", description="A content delivery network you can run.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start every origin and edge of a config")
    up.add_argument("--config", required=True, type=Path)
    up.set_defaults(run=_cmd_up)

    edge = sub.add_parser("edge", help="run one edge location")
    edge.add_argument("--config", required=True, type=Path)
    edge.add_argument("--name", required=True)
    edge.set_defaults(run=_cmd_edge)

    origin = sub.add_parser("origin", help="run one origin")
    origin.add_argument("--config", type=Path)
    origin.add_argument("--name")
    origin.add_argument("--root", type=Path, help="serve this folder as a web origin (no config)")
    origin.add_argument("--listen", default="127.0.0.1:8081")
    origin.set_defaults(run=_cmd_origin)

    router = sub.add_parser("router", help="run the request router (nearest healthy edge, by 302 and DNS)")
    router.add_argument("--config", required=True, type=Path)
    router.add_argument("--name", default="router", help=argparse.SUPPRESS)  # `cdn up` passes one
    router.set_defaults(run=_cmd_router)

    check = sub.add_parser("check", help="check a config file and print what it describes")
    check.add_argument("--config", required=True, type=Path)
    check.set_defaults(run=_cmd_check)
    add_signing_commands(sub)
    add_control_commands(sub)
    from streaming.loadtest_cli import (  # argparse only: the load tester loads when run
        HelpFormatter,
        add_arguments,
    )

    loadtest = sub.add_parser(
        "loadtest",
        help="load test playback (or a web distribution) with virtual viewers",
        formatter_class=HelpFormatter,
    )

    add_arguments(loadtest)
    loadtest.set_defaults(run=_cmd_loadtest)
    return parser


def _cmd_loadtest(args: argparse.Namespace) -> int:
    from streaming.loadtest_cli import run

    return run(args)


# -- one server per process --------------------------------------------------------------------
def _cmd_edge(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.name not in config.edges:
        raise ConfigError(f"{config.source}: edges: no edge named {args.name!r} (edges: {', '.join(config.edges)})")
    from edge.worker_procs import lead, work  # the edge is only loaded where it runs
    from edge.workers import ENV, WorkerPlan, worker_count

    edge = config.edges[args.name]
    token = resolve_token(config.control.token, config.control.token_env, os.environ) if config.control else None

    plan = os.environ.pop(ENV, None)
    if plan is not None:  # one of the edge's workers, started by its leader
        _run(work(config, edge, WorkerPlan.from_env(plan), token, _wait_for_signal))
        return 0
    level = logging.getLevelName(log.getEffectiveLevel()).lower()
    _run(lead(config, edge, worker_count(edge), token, _wait_for_signal, level))
    return 0


def _cmd_router(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.router is None:
        raise ConfigError(f"{config.source}: router: missing table: nothing to start")
    from web_dist.router import Router, build_router_app

    settings = config.router
    https = (settings.https_listen, settings.tls_cert, settings.tls_key) if settings.https_listen else None
    return _serve_until_signal(lambda: build_router_app(Router(config)), settings.listen, "router", https=https)


def _cmd_origin(args: argparse.Namespace) -> int:
    if args.root is not None:
        root = args.root.resolve()
        if not root.is_dir():
            raise ConfigError(f"--root: {root} is not a folder")
        from web_dist.origin import build_origin_app

        return _serve_until_signal(lambda: build_origin_app(root, name="origin"), args.listen, f"origin {root}")
    if args.config is None or args.name is None:
        raise ConfigError("cdn origin needs --config FILE --name NAME, or --root DIR")
    config = load_config(args.config)
    origin = config.origins.get(args.name)
    if origin is None:
        raise ConfigError(
            f"{config.source}: origins: no origin named {args.name!r} (origins: {', '.join(config.origins)})"
        )
    if origin.listen is None:
        raise ConfigError(f"{config.source}: origins.{origin.id}.listen: missing: nothing to start here")
    return _serve_until_signal(lambda: build_origin(origin, config), origin.listen, f"origin {origin.id}")


def check_runnable(config: CdnConfig) -> None:
    """Everything `cdn up` relies on beyond what loading the file checks (every key and each
    origin's options): no two listeners of this config on one port (ConfigError before
    anything starts)."""
    seen: dict[tuple[str, str], str] = {}
    for where, listen in _listeners(config):
        host, _, port = listen.rpartition(":")
        if port in ("", "0"):
            continue
        host = host.strip("[]")
        wildcard = host in ("", "0.0.0.0", "::")
        clash = next(
            (w for (h, p), w in seen.items() if p == port and (wildcard or h in ("", "0.0.0.0", "::", host))), None
        )
        if clash is not None:
            raise ConfigError(f"{config.source}: {where}: {listen} is already used by {clash}")
        seen[(host, port)] = where


def _listeners(config: CdnConfig) -> list[tuple[str, str]]:
    found = [(f"origins.{o.id}.listen", o.listen) for o in config.origins.values() if o.listen]
    for edge in config.edges.values():
        for key in ("listen", "admin_listen", "https_listen"):
            value = getattr(edge, key, None)
            if value:
                found.append((f"edges.{edge.name}.{key}", value))
    for section in ("router", "control"):
        value = getattr(getattr(config, section, None), "listen", None)
        if isinstance(value, str) and value:
            found.append((f"{section}.listen", value))
    return found


def build_origin(origin: Origin, config: CdnConfig) -> Any:
    """The ASGI app of an origin described by the config."""
    if origin.kind == "web":
        from web_dist.origin import build_origin_app

        assert origin.root is not None  # checked by the config loader
        return build_origin_app(
            origin.root, name=origin.id, access_secret=origin.access_secret, cache_tags=origin.cache_tags
        )
    settings = origin.settings  # read and checked when the config was loaded
    if origin.kind == "player":
        from streaming.player_app import build_player_app
        from web_dist.http.access import OriginSecretGuard

        return OriginSecretGuard(build_player_app(settings), origin.access_secret)
    from origin_media.app import build_media_origin_app

    return build_media_origin_app(settings, access_secret=origin.access_secret)


def _serve_until_signal(
    build: Callable[[], Any],
    listen: str,
    what: str,
    *,
    engine: Engine = "uvicorn",
    https: tuple[str, Path | None, Path | None] | None = None,
) -> int:
    """Serve the app `build` makes on `listen` (and, with `https` = (listen, cert, key), on an
    HTTPS listener beside it) until SIGINT or SIGTERM."""

    async def serve() -> None:
        app = build()
        servers = [await start_server(app, listen, name=what, engine=engine)]
        try:
            if https is not None:
                servers.append(
                    await start_server(
                        SharedApp(app),
                        https[0],
                        name=f"{what} https",
                        engine=engine,
                        tls_cert=https[1],
                        tls_key=https[2],
                    )
                )
        except BaseException:
            await servers[0].stop()
            raise
        urls = " ".join(s.url for s in servers)
        log.info("%s listening on %s", what, urls)
        print(f"ready {what} {urls}", flush=True)
        await _wait_for_signal()
        log.info("%s stopping", what)
        for server in reversed(servers):
            await server.stop()

    _run(serve())
    return 0


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _run(main: Awaitable[None]) -> None:
    try:
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]


# -- the whole CDN -------------------------------------------------------------------------------
# Secrets `cdn up` makes for its children when the environment has none: every process it starts
# inherits them, so its edges hold what its origins, admin listeners and uploads ask for.
GENERATED_SECRETS = ("CDN_ORIGIN_SECRET", "CDN_ADMIN_TOKEN", "CDN_UPLOAD_TOKEN", "CDN_CONTROL_TOKEN")


def secrets_path(config: Path) -> Path:
    """Where `cdn up` keeps the secrets it made (beside the config, owner-only, git-ignored), so
    `cdn loadtest`, `cdn invalidate` and a restarted `cdn up` in another shell use the same."""
    return config.parent / ".cdn-secrets.env"


def load_secrets(path: Path, environ: dict[str, str] | os._Environ[str]) -> None:
    """NAME=value lines of `path` into `environ`, for names not already set there."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name in GENERATED_SECRETS and not environ.get(name):
            environ[name] = value


def save_secrets(path: Path, environ: dict[str, str] | os._Environ[str]) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text("".join(f"{name}={environ[name]}\n" for name in GENERATED_SECRETS if environ.get(name)))


def generate_secrets(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """Set each of GENERATED_SECRETS not already in `environ` to a fresh random token; their names."""
    made = [name for name in GENERATED_SECRETS if not environ.get(name)]
    for name in made:
        environ[name] = secrets.token_urlsafe(24)
    return made


def make_missing_certs(path: Path) -> list[Path]:
    """For each edge whose tls_cert and tls_key files are both missing, a certificate (and the
    local CA beside it, `ca.pem`) for localhost, *.localhost, 127.0.0.1 and every distribution
    domain; the CA files made. A config that cannot be read is left to load_config to report."""
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    edges: dict[str, Any] = raw["edges"] if isinstance(raw.get("edges"), dict) else {}
    dists: dict[str, Any] = raw["distributions"] if isinstance(raw.get("distributions"), dict) else {}
    domains = [
        d for body in dists.values() if isinstance(body, dict) for d in body.get("domains", []) if isinstance(d, str)
    ]
    names = [
        "localhost",
        "*.localhost",
        "127.0.0.1",
        *domains,
        *(f"*.{d}" for d in domains if not d[0].isdigit() and not d.startswith("*")),
    ]
    made: list[Path] = []
    for body in edges.values():
        cert, key = (body.get(k) if isinstance(body, dict) else None for k in ("tls_cert", "tls_key"))
        if not (isinstance(cert, str) and isinstance(key, str)):
            continue
        cert_path, key_path = (path.parent / cert).resolve(), (path.parent / key).resolve()
        if cert_path.exists() or key_path.exists() or cert_path.parent != key_path.parent:
            continue
        from web_dist.cli.tls import make_server_cert

        files = make_server_cert(cert_path.parent, names, stem=cert_path.stem)
        if files.cert != cert_path or files.key != key_path:
            files.cert.rename(cert_path)
            files.key.rename(key_path)
        made.append(files.ca)
    return made


def _cmd_up(args: argparse.Namespace) -> int:
    load_secrets(secrets_path(args.config), os.environ)
    generate_secrets(os.environ)
    save_secrets(secrets_path(args.config), os.environ)  # made here or exported: later commands find them
    make_missing_certs(args.config)
    make_missing_key_pairs(args.config)
    config = load_config(args.config)
    check_runnable(config)  # refused before any process starts
    children: list[tuple[str, str, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for origin in config.origins.values():
            if origin.listen is not None:
                children.append(_spawn(config, "origin", origin.id, origin.listen))
        if config.control is not None:  # first, so edges find it when they start
            children.append(_spawn(config, "control", "control", config.control.listen))
        for edge in config.edges.values():
            children.append(_spawn(config, "edge", edge.name, edge.listen))
        for what, listen, child in children:
            _wait_listening(what, listen, child)
        if config.router is not None:  # after the edges, so its first health checks find them up
            # its HTTPS listener starts last: once it listens, both do
            children.append(_spawn(config, "router", "router", config.router.https_listen or config.router.listen))
            _wait_listening(*children[-1])
        _print_summary(config)
        while not stopping:
            for what, _, child in children:
                if child.poll() is not None:
                    print(f"cdn: {what} exited with code {child.returncode}; stopping the rest", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        _stop_children([c for _, _, c in children])


def _spawn(config: CdnConfig, kind: str, name: str, listen: str) -> tuple[str, str, subprocess.Popen[bytes]]:
    cmd = [
        sys.executable,
        "-m",
        "web_dist.cli",
        "--log-level",
        logging.getLevelName(log.getEffectiveLevel()).lower(),
        kind,
        "--config",
        str(config.source),
        "--name",
        name,
    ]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    return f"{kind} {name}", listen, child


def _wait_listening(what: str, listen: str, child: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    host, port = parse_listen(listen)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise OSError(f"{what} failed to start (exit code {child.returncode}); see the log above")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise OSError(f"{what} did not start listening on {listen} within {timeout:.0f} s")


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def _print_summary(config: CdnConfig) -> None:
    lines = ["", "CDN is up (Ctrl-C stops it)", ""]
    for origin in config.origins.values():
        where = origin.url if origin.listen else f"{origin.url} (external)"
        lines.append(f"  origin {origin.id:<12} {origin.kind:<6} {where}")
    for edge in config.edges.values():
        region = f" region {edge.region}" if edge.region else ""
        admin = f", dashboard http://{edge.admin_listen}/?token={edge.admin_token}" if edge.admin_listen else ""
        https = f", https://{edge.https_listen}/" if edge.https_listen else ""
        lines.append(f"  edge   {edge.name:<12} http://{edge.listen}/{https}{region}{admin}")
    if config.router is not None:
        dns = f", DNS on udp {config.router.dns_listen}" if config.router.dns_listen else ""
        https = f", https://{config.router.https_listen}/" if config.router.https_listen else ""
        lines.append(f"  router {'':<12} http://{config.router.listen}/{https} (302 to the nearest healthy edge{dns})")
    if config.control is not None:
        store = f"events in Redis {config.control.redis_url}" if config.control.redis_url else "embedded"
        lines.append(f"  control {'':<11} {config.control.api_url}/ ({store})")
    lines.append("")
    for dist in config.distributions:
        edge = config.edges[dist.edges[0]]
        url, plain, cacert = _dist_url(dist, edge)
        domain = _domain(dist)
        if plain != url:
            lines.append(f"  distribution {dist.id} ({dist.kind}): open {url} (or {plain})")
        else:
            lines.append(f"  distribution {dist.id} ({dist.kind}): open {url}")
        lines += _watch_lines(config, dist, url)
        if not _opens_as_is(domain):
            lines.append(f"    (send Host: {domain})")
        lines.append("    a miss, then a hit:")
        hdr = ("" if _opens_as_is(domain) else f" -H 'Host: {domain}'") + cacert
        curl = f"curl -s -o /dev/null -D - {url}{hdr} | grep -iE '^(cache-status|age):'"
        lines.append(f"      {curl}; {curl}")
    lines += _tour_lines(config)
    for edge in config.edges.values():
        if edge.https_listen and edge.tls_cert is not None and (edge.tls_cert.parent / "ca.pem").exists():
            ca = edge.tls_cert.parent / "ca.pem"
            host, port = parse_listen(edge.https_listen)
            lines += [
                "",
                f"  HTTPS (h2): https://localhost:{port}/ on {edge.name}; trust the local CA {ca}",
                f"    curl --cacert {ca} -sI https://localhost:{port}/",
            ]
            break
    watched = next((e for e in config.edges.values() if e.admin_listen), None)
    if watched is not None:
        lines += [
            "",
            "  metrics (Prometheus: bearer_token, or this header):",
            f"    curl -H 'Authorization: Bearer {watched.admin_token}' http://{watched.admin_listen}/metrics",
        ]
    print("\n".join(lines), flush=True)


def _domain(dist: Distribution) -> str:
    return next((d for d in dist.domains if _opens_as_is(d)), dist.domains[0])


def _dist_url(dist: Distribution, edge: EdgeLocation) -> tuple[str, str, str]:
    """(URL to open, its plain-HTTP form, curl's --cacert option or "") of `dist` on `edge`:
    HTTPS when the edge has it and the local CA exists."""
    domain = _domain(dist)
    port = parse_listen(edge.listen)[1]
    plain = f"http://{domain}:{port}/" if _opens_as_is(domain) else f"http://{edge.listen}/"
    ca = edge.tls_cert.parent / "ca.pem" if edge.https_listen and edge.tls_cert is not None else None
    if ca is None or not ca.exists():
        return plain, plain, ""
    https_port = parse_listen(edge.https_listen or "")[1]
    url = f"https://{domain}:{https_port}/" if _opens_as_is(domain) else f"https://{edge.https_listen}/"
    return url, plain, f" --cacert {ca}"


def _tour_lines(config: CdnConfig) -> list[str]:
    """Copy-paste commands for what the config offers: uploads, invalidation, purge by tag,
    signed URLs, a load test and the router's watch page."""
    cdn = _cdn_command()
    flag = "" if _found_by_default(config.source) else f" --config {_shown(config.source)}"
    lines = ["", f"  try it (`cdn` is {cdn}; `make shell` puts it on PATH):"]
    for dist in config.distributions:
        lines += _upload_lines(config, dist)
    site = next((d for d in config.distributions if d.kind == "web"), None)
    if config.control is not None and site is not None:
        lines += ["    invalidate a path on every edge:", f"      {cdn} invalidate {site.id} /index.html{flag} --wait"]
        origin = config.origins.get(site.origin)
        tags = list(dict.fromkeys(t for _, ts in origin.cache_tags for t in ts)) if origin is not None else []
        if tags:
            lines += [
                f"    purge by cache tag ({', '.join(tags)}; the origin's cache_tags):",
                f"      {cdn} purge {site.id} --tag {tags[0]}{flag} --wait",
            ]
    for dist in config.distributions:
        lines += _signed_lines(config, dist, cdn)
    live = next((d for d in config.distributions if d.kind == "streaming"), None)
    if live is not None:
        lines += [
            "    load test the stream (a report in loadtest.html):",
            f"      {cdn} loadtest --config {_shown(config.source)} --viewers 20 --duration 20",
        ]
    if config.router is not None and live is not None:
        scheme, listen = (
            ("https", config.router.https_listen) if config.router.https_listen else ("http", config.router.listen)
        )
        port = parse_listen(listen)[1]
        lines += [
            f"  watch through the router (302 to the nearest edge): {scheme}://{_domain(live)}:{port}/watch/{name}"
            for name in _streams(config, live)
        ]
    return lines


def _upload_lines(config: CdnConfig, dist: Distribution) -> list[str]:
    """Working upload commands, for a distribution with a behavior that takes PUT: through the
    first edge, read back from the second (each edge drops its copy when another takes a write)."""
    put = next((b for b in dist.behaviors if "PUT" in b.allowed_methods), None)
    if put is None or dist.upload_token is None:
        return []
    path = put.path_pattern.rstrip("*").lstrip("/") if put.path_pattern != "*" else ""
    auth = f"-H 'Authorization: Bearer {dist.upload_token}'"
    url, _, cacert = _dist_url(dist, config.edges[dist.edges[0]])
    host = "" if _opens_as_is(_domain(dist)) else f" -H 'Host: {_domain(dist)}'"
    lines = [
        f"    upload through {dist.edges[0]} (anonymous writes get 403):",
        f"      curl -T README.md {auth}{host}{cacert} {url}{path}README.md",
    ]
    if len(dist.edges) > 1:
        other, _, other_ca = _dist_url(dist, config.edges[dist.edges[1]])
        lines += [
            f"    read it from {dist.edges[1]} at once, delete it, and it is gone there too:",
            f"      curl -s{host}{other_ca} {other}{path}README.md | head -3",
            f"      curl -X DELETE {auth}{host}{cacert} {url}{path}README.md",
            f"      curl -s -o /dev/null -w '%{{http_code}}\\n'{host}{other_ca} {other}{path}README.md",
        ]
    return lines


def _signed_lines(config: CdnConfig, dist: Distribution, cdn: str) -> list[str]:
    """Sign a URL of a signed-only behavior with the demo's key pair, and fetch it."""
    signed = next((b for b in dist.behaviors if b.signed and b.path_pattern.endswith("/*")), None)
    origin = config.origins.get(dist.origin)
    if signed is None or not dist.trusted_key_files or origin is None or origin.root is None:
        return []
    key_id, public = next(iter(dist.trusted_key_files.items()))
    private = private_key_beside(public)
    folder = origin.root / signed.path_pattern.strip("/*")
    sample = next((p.name for p in sorted(folder.iterdir()) if p.is_file()), None) if folder.is_dir() else None
    if not private.exists() or sample is None:
        return []
    _, plain, _ = _dist_url(dist, config.edges[dist.edges[0]])
    target = f"{plain}{signed.path_pattern.strip('/*')}/{sample}"
    return [
        f"    {signed.path_pattern} is for signed URLs only (unsigned: 403); sign one for an hour and fetch it:",
        f'      curl -i "$({cdn} sign --key {_shown(private)} --key-pair-id {key_id} --url {target} --expires 3600)"',
    ]


def _cdn_command() -> str:
    """How the shell `cdn up` runs in reaches `cdn`: this interpreter's script (.venv/bin/cdn)."""
    script = Path(sys.executable).parent / "cdn"
    return _shown(script) if script.exists() else "cdn"


def _shown(path: Path) -> str:
    """`path` as the user's shell names it: relative to the current folder when under it."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _found_by_default(source: Path) -> bool:
    found = find_config(None)
    return found is not None and found.resolve() == source.resolve()


def _opens_as_is(domain: str) -> bool:
    """A name a browser (and curl) reaches on loopback without DNS: *.localhost is loopback."""
    return domain in ("localhost", "127.0.0.1") or domain.endswith(".localhost")


def _watch_lines(config: CdnConfig, dist: Distribution, url: str) -> list[str]:
    """The player pages of a streaming distribution, when a behavior routes to a player origin."""
    return [
        f"    watch {name}: {url}watch/{name}  (LL-HLS; ?mode=hls, ?mode=webrtc, ?mode=dash)"
        for name in _streams(config, dist)
    ]


def _streams(config: CdnConfig, dist: Distribution) -> list[str]:
    """The streams of a distribution whose behaviors route to a player origin (their watch pages)."""
    routed = (config.origins.get(b.origin) for b in dist.behaviors if b.origin is not None)
    if not any(o is not None and o.kind == "player" for o in routed):
        return []
    media = config.origins.get(dist.origin)
    return list(media.options.get("streams", {})) if media is not None and media.kind == "media" else []


def _cmd_check(args: argparse.Namespace) -> int:
    made = generate_secrets(os.environ)  # as `cdn up` would: a secret it makes is not missing
    make_missing_certs(args.config)  # ... and a demo certificate neither
    make_missing_key_pairs(args.config)  # ... nor the demo's key pair for signed URLs
    config = load_config(args.config)
    check_runnable(config)
    print(f"{config.source}: ok")
    if made:
        print(f"  (not in the environment, made by `cdn up` at start: {', '.join(made)})")
    for origin in config.origins.values():
        print(f"  origin {origin.id}: {origin.kind} {origin.url}")
    for edge in config.edges.values():
        print(f"  edge {edge.name}: {edge.listen} cache {edge.cache_bytes} bytes")
    for dist in config.distributions:
        print(f"  distribution {dist.id}: {', '.join(dist.domains)} -> {dist.origin} on {', '.join(dist.edges)}")
        for b in dist.behaviors:
            print(
                f"    {b.path_pattern}: ttl {b.min_ttl:g}/{b.default_ttl:g}/{b.max_ttl:g} "
                f"methods {','.join(sorted(b.allowed_methods))} compress={b.compress}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
