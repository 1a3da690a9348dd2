"""What the benchmarks put on loopback: a web origin on a folder of test objects, an edge,
and nginx (`proxy_cache`) and Varnish in front of the same origin, each a child process.

Every cache is warmed and then checked to answer the object from its cache, by its own
header: the edge's `Cache-Status: ...; hit`, nginx's `X-Cache-Status: HIT`, Varnish's
`X-Varnish` carrying two transaction ids (this request's and the one that stored the object).
"""

from __future__ import annotations

import http.client
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Child, Children, free_port, wait_http, wait_ready

KIB = 1024
MIB = 1024 * 1024
# name -> (path on the origin, size in bytes)
OBJECTS: dict[str, tuple[str, int]] = {"1KiB": ("/obj-1k.bin", KIB), "1MiB": ("/obj-1m.bin", MIB)}
EDGE_NAME = "bench-edge"
BIN = Path(sys.executable).parent  # the virtualenv's bin: `cdn`, `granian`, `hypercorn`


@dataclass(frozen=True)
class Server:
    """A started server: its process and the base URL it answers on."""

    name: str
    child: Child
    port: int
    https_port: int | None = None  # its TLS listener, when it has one

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def make_site(root: Path) -> Path:
    """The origin's folder: one object per entry of OBJECTS, filled with fixed bytes."""
    root.mkdir(parents=True, exist_ok=True)
    for path, size in OBJECTS.values():
        (root / path.lstrip("/")).write_bytes(bytes(range(256)) * (size // 256))
    return root


def start_origin(children: Children, site: Path) -> Server:
    port = free_port()
    child = children.spawn(
        "origin",
        [str(BIN / "cdn"), "--log-level", "warning", "origin", "--root", str(site), "--listen", f"127.0.0.1:{port}"],
    )
    wait_http(child, port)
    return Server("origin", child, port)


def write_edge_config(
    folder: Path, origin_url: str, port: int, server: str = "auto", *, edge_lines: str = "", name: str | None = None
) -> Path:
    """A config with one edge in front of `origin_url`, caching everything for a day;
    `edge_lines` are more keys of the edge's table (TLS, say)."""
    config = folder / f"{name or 'edge-' + server}.toml"
    config.write_text(f"""\
[origins.bench]
kind = "web"
url = "{origin_url}"

[edges.{EDGE_NAME}]
listen = "127.0.0.1:{port}"
server = "{server}"
{edge_lines}

[distributions.bench]
domains = ["127.0.0.1", "localhost"]
origin = "bench"

[distributions.bench.default_behavior]
min_ttl = 86400
default_ttl = 86400
max_ttl = 31536000
""")
    return config


def start_edge(
    children: Children,
    folder: Path,
    origin_url: str,
    server: str = "auto",
    *,
    workers: int | None = None,
    name: str = "edge",
) -> Server:
    """`cdn edge` as users run it (granian embedded, access log on, a worker process per core
    unless `workers` says); `server = "uvicorn"` for the edge on uvicorn (httptools, uvloop)."""
    port = free_port()
    lines = f"workers = {workers}" if workers is not None else ""
    config = write_edge_config(folder, origin_url, port, server, edge_lines=lines, name=name)
    child = children.spawn(name, [str(BIN / "cdn"), "edge", "--config", str(config), "--name", EDGE_NAME])
    wait_http(child, port, "/_cdn/health", timeout=90.0)
    wait_ready(child, "ready edge")  # every worker listening (the leader answers first)
    return Server(name, child, port)


def start_nginx(children: Children, folder: Path, origin_port: int, *, tls: tuple[Path, Path] | None = None) -> Server:
    """nginx as a `proxy_cache` in front of the origin, with Debian's defaults for the rest;
    with `tls` = (cert, key) an HTTPS listener too (TLS 1.2 and 1.3, h2 and http/1.1, as the edge)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    https_port = free_port() if tls is not None else None
    https = (
        ""
        if tls is None
        else (
            f"listen 127.0.0.1:{https_port} ssl http2;\n        ssl_certificate {tls[0]};\n"
            f"        ssl_certificate_key {tls[1]};\n        ssl_protocols TLSv1.2 TLSv1.3;"
        )
    )
    work = folder / "nginx"
    work.mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(f"""\
daemon off;
master_process on;
worker_processes auto;
user root;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    access_log {work}/access.log;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy_temp;
    fastcgi_temp_path {work}/fastcgi_temp;
    uwsgi_temp_path {work}/uwsgi_temp;
    scgi_temp_path {work}/scgi_temp;
    proxy_cache_path {work}/cache levels=1:2 keys_zone=bench:10m max_size=1g inactive=1d use_temp_path=off;
    upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        {https}
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1d;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
""")
    child = children.spawn("nginx", [nginx, "-c", str(conf), "-p", str(work)])
    wait_http(child, port)
    return Server("nginx", child, port, https_port)


def start_varnish(children: Children, folder: Path, origin_port: int) -> Server:
    """varnishd in the foreground with a minimal VCL: everything cached for a day, in malloc."""
    varnishd = shutil.which("varnishd") or "/usr/sbin/varnishd"
    port = free_port()
    work = folder / "varnish"
    work.mkdir(exist_ok=True)
    vcl = folder / "bench.vcl"
    vcl.write_text(f"""\
vcl 4.1;
backend origin {{ .host = "127.0.0.1"; .port = "{origin_port}"; }}
sub vcl_backend_response {{ set beresp.ttl = 1d; }}
""")
    admin = free_port()
    argv = [
        varnishd,
        "-F",
        "-j",
        "none",
        "-n",
        str(work),
        "-a",
        f"127.0.0.1:{port}",
        "-T",
        f"127.0.0.1:{admin}",
        "-f",
        str(vcl),
        "-s",
        "malloc,256m",
    ]
    child = children.spawn("varnish", argv)
    wait_http(child, port)
    return Server("varnish", child, port)


# -- is it a hit? --------------------------------------------------------------------------------
def edge_hit(headers: Mapping[str, str]) -> bool:
    # The edge's own member is the last one of Cache-Status (RFC 9211).
    return "; hit" in headers.get("cache-status", "").rsplit(",", 1)[-1]


def nginx_hit(headers: Mapping[str, str]) -> bool:
    return headers.get("x-cache-status", "") == "HIT"


def varnish_hit(headers: Mapping[str, str]) -> bool:
    return len(headers.get("x-varnish", "").split()) == 2 and "age" in headers


HIT_CHECKS: dict[str, Callable[[Mapping[str, str]], bool]] = {
    "edge": edge_hit,
    "edge-w1": edge_hit,
    "nginx": nginx_hit,
    "varnish": varnish_hit,
}


def fetch(port: int, path: str) -> tuple[int, dict[str, str], int]:
    """One GET on a new connection: status, lower-cased headers and body length."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, len(body)
    finally:
        conn.close()


def warm(
    server: Server,
    path: str,
    size: int,
    is_hit: Callable[[Mapping[str, str]], bool],
    *,
    in_a_row: int = 1,
    tries: int = 60,
) -> dict[str, str]:
    """Request `path` until `in_a_row` answers in a row are whole hits; their last headers.

    With several workers each keeps its own cache: asking on new connections until several
    hits come in a row warms every worker the kernel hands connections to.
    """
    streak = 0
    for _ in range(tries):
        status, headers, length = fetch(server.port, path)
        if status != 200 or length != size:
            raise RuntimeError(f"{server.name} answered {path} with {status} and {length} bytes, not 200 and {size}")
        streak = streak + 1 if is_hit(headers) else 0
        if streak >= in_a_row:
            return headers
    raise RuntimeError(f"{server.name} did not serve {path} from its cache after {tries} requests: {headers}")


def start_nginx_static(children: Children, folder: Path, site: Path) -> Server:
    """nginx serving the origin's folder itself: a fast origin, for measuring HTTP clients."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    work = folder / "nginx-static"
    work.mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(f"""\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    sendfile on;
    keepalive_requests 100000;
    access_log off;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy_temp;
    fastcgi_temp_path {work}/fastcgi_temp;
    uwsgi_temp_path {work}/uwsgi_temp;
    scgi_temp_path {work}/scgi_temp;
    server {{
        listen 127.0.0.1:{port};
        root {site};
    }}
}}
""")
    child = children.spawn("nginx-static", [nginx, "-c", str(conf), "-p", str(work)])
    wait_http(child, port)
    return Server("nginx-static", child, port)
