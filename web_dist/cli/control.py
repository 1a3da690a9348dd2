"""The control plane's commands of `cdn`:

    cdn control --config FILE                      run the control API of FILE's [control]
    cdn control publish-config FILE                send FILE to every running edge (no restart)
    cdn invalidate DIST PATH... [--soft] [--wait]  invalidate paths on every edge of DIST
    cdn purge DIST --tag T [--tag T...] [--soft] [--wait]

The API is found from the config's [control] (`--config`, default ./cdn.toml, else
./demo/cdn.toml) or `--control URL`; the token comes from the environment variable
[control].token_env (CDN_CONTROL_TOKEN), or the secrets `cdn up` kept beside the config.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from web_dist.config import (
    MIN_SECRET_LENGTH,
    ConfigError,
    ControlConfig,
    find_config,
    load_config,
    no_config_error,
)
from web_dist.config.invalidation import resolve_token


def add_commands(sub: Any) -> None:
    control = sub.add_parser("control", help="run the control plane, or publish a config through it")
    control.add_argument("action", nargs="?", choices=["run", "publish-config"], default="run")
    control.add_argument("file", nargs="?", type=Path, help="publish-config: the config file to send")
    control.add_argument("--config", type=Path)
    control.add_argument("--name", default="control", help=argparse.SUPPRESS)  # `cdn up` passes one
    control.set_defaults(run=_cmd_control)

    inv = sub.add_parser("invalidate", help="invalidate paths of a distribution on all its edges")
    inv.add_argument("distribution")
    inv.add_argument("paths", nargs="+", metavar="PATH", help="/exact/path or /prefix/*")
    _client_options(inv)
    inv.set_defaults(run=_cmd_invalidate, finds_config=True)

    purge = sub.add_parser("purge", help="purge objects by cache tag (Surrogate-Key / Cache-Tag) on all edges")
    purge.add_argument("distribution")
    purge.add_argument("--tag", action="append", required=True, dest="tags")
    _client_options(purge)
    purge.set_defaults(run=_cmd_purge, finds_config=True)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="the config whose [control] to use (default ./cdn.toml, else ./demo/cdn.toml)"
    )
    parser.add_argument("--control", metavar="URL", help="the control API's URL (instead of --config)")
    parser.add_argument(
        "--soft", action="store_true", help="mark stale instead of removing (stale-if-error keeps a copy)"
    )
    parser.add_argument("--wait", action="store_true", help="wait until every edge has applied it")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits (default 120)")


def _cmd_control(args: argparse.Namespace) -> int:
    if args.action == "publish-config":
        source = args.file or args.config
        if source is None:
            raise ConfigError("cdn control publish-config needs the config FILE to send")
        config = load_config(source)  # refuse a bad file before sending it
        url, token = _api(args.config or source, None)
        answer = _call("PUT", f"{url}/config", token, Path(source).read_bytes(), "application/toml")
        print(f"published {config.source} as {answer['id']}")
        return 0
    from web_dist.cli import _serve_until_signal
    from web_dist.control import build_control_app

    path = find_config(args.config)
    if path is None:
        raise no_config_error("cdn control")
    config = load_config(path)
    control = _control_of(config.control, config.source)
    found = resolve_token(control.token, control.token_env, os.environ)
    if found is None:
        raise ConfigError(f"{config.source}: control: no API token: set control.token or ${control.token_env}")
    secret: str = found
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{config.source}: control: the API token must be at least {MIN_SECRET_LENGTH} characters")
    mode = f"redis {control.redis_url}" if control.redis_url else "embedded"
    return _serve_until_signal(lambda: build_control_app(config, token=secret), control.listen, f"control ({mode})")


def _cmd_invalidate(args: argparse.Namespace) -> int:
    return _submit(args, "invalidations", {"paths": args.paths, "soft": args.soft})


def _cmd_purge(args: argparse.Namespace) -> int:
    return _submit(args, "purges", {"tags": args.tags, "soft": args.soft})


def _submit(args: argparse.Namespace, what: str, body: dict[str, Any]) -> int:
    url, token = _api(args.config, args.control)
    base = f"{url}/distributions/{args.distribution}/{what}"
    record = _call("POST", base, token, json.dumps(body).encode(), "application/json")
    print(f"{record['id']} {record['status']}", flush=True)
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while record["status"] != "Completed":
        if time.monotonic() > deadline:
            print(f"cdn: {record['id']} not applied by every edge within {args.timeout:g} s", flush=True)
            _print_edges(record)
            return 1
        time.sleep(0.2)
        record = _call("GET", f"{base}/{record['id']}", token)
    print(f"{record['id']} Completed in {record['completed'] - record['created']:.3f} s")
    _print_edges(record)
    return 0


def _print_edges(record: dict[str, Any]) -> None:
    for edge, state in record["edges"].items():
        at = state["applied"]
        print(f"  {edge}: " + (f"applied after {at - record['created']:.3f} s" if at is not None else "pending"))


def _api(config_path: Path | None, url: str | None) -> tuple[str, str]:
    """The control API's URL and token, from --control or the config's [control]."""
    control = ControlConfig()
    if url is None:
        path = find_config(config_path)
        if path is None:
            raise no_config_error("cdn: the control API")
        config = load_config(path)
        control = _control_of(config.control, config.source)
        url = control.api_url
    token = resolve_token(control.token, control.token_env, os.environ)
    if token is None:
        raise ConfigError(f"no control API token: set ${control.token_env}")
    return url.rstrip("/"), token


def _control_of(control: ControlConfig | None, source: Path) -> ControlConfig:
    if control is None:
        raise ConfigError(f"{source}: control: missing table: no control plane configured")
    return control


def _call(method: str, url: str, token: str, body: bytes | None = None, kind: str | None = None) -> Any:
    headers = {"authorization": f"Bearer {token}", "accept": "application/json"}
    if kind:
        headers["content-type"] = kind
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise ControlRefused(f"{method} {url}: {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"cannot reach the control API at {url}: {exc.reason}") from None


class ControlRefused(OSError):
    """The control API said no; the message carries its status and reason."""
