"""An edge's admin app, served on its own listener (`admin_listen`), never on the public port.

    /              the dashboard: hit ratio, requests/s, bandwidth and top objects, self-refreshing
    /metrics       Prometheus text format, from the edge's own registry
    /metrics.json  the same counters as JSON (what the dashboard polls)
    /health        liveness (the only page without the token)

Every other page needs the edge's `admin_token`: `Authorization: Bearer TOKEN` (Prometheus'
`bearer_token`), `?token=TOKEN`, or, for a browser, the cookie that `/?token=TOKEN` sets
(HttpOnly, SameSite Strict) before redirecting to `/`. Compared in constant time.
"""

from __future__ import annotations

import hmac
from html import escape
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from edge.metrics import EdgeMetrics
from web_dist.config import MIN_SECRET_LENGTH

if TYPE_CHECKING:
    from edge.flow import EdgeFlow

NO_STORE = {"cache-control": "no-store"}
# The page may talk to this admin port only: no script, style or font from anywhere else.
DASHBOARD_HEADERS = {
    **NO_STORE,
    "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
}


COOKIE = "cdn_admin"


class AdminGuard:
    """ASGI middleware: the admin token as a bearer token or cookie, else 401 (403 if wrong)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = _given_token(request)
        if given is None:
            response: Response = PlainTextResponse("Unauthorized: send Authorization: Bearer TOKEN (or open /?token=TOKEN)\n",
                                                   401, {"www-authenticate": "Bearer", **NO_STORE})
        elif not hmac.compare_digest(given.encode(), self.token):
            response = PlainTextResponse("Forbidden: wrong admin token\n", 403, NO_STORE)
        elif scope["path"] == "/" and "token" in request.query_params:  # a browser's first visit: keep it in a cookie
            response = RedirectResponse(scope["path"], 303, NO_STORE)
            response.set_cookie(COOKIE, given, httponly=True, samesite="strict", path="/")
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def _given_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token") or request.cookies.get(COOKIE) or None


def build_admin_app(flow: EdgeFlow, *, token: str | None = None) -> Starlette:
    """The admin ASGI app of the edge whose requests `flow` answers, guarded by `token` (by
    default the edge's `admin_token`; ValueError without one, or with one too short)."""
    token = token if token is not None else flow.edge.admin_token
    if token is None or len(token) < MIN_SECRET_LENGTH:
        raise ValueError(f"edge {flow.name}: the admin listener needs an admin_token of at least {MIN_SECRET_LENGTH} characters")

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(DASHBOARD_HTML.replace("{{EDGE}}", escape(flow.name)), headers=DASHBOARD_HEADERS)

    async def edge_metrics() -> tuple[EdgeMetrics, dict[str, Any]]:
        """This edge's counters: with workers, every worker's added up (edge/workers.py)."""
        if flow.workers is None:
            return flow.metrics, {"collapsed": flow.flights.collapsed}
        merged, rows = await flow.workers.merged_metrics(flow.metrics, flow.flights.collapsed)
        return merged, {"collapsed": sum(r["collapsed"] for r in rows), "workers": rows}

    async def metrics(request: Request) -> Response:
        counters, _ = await edge_metrics()
        return Response(generate_latest(counters.registry), media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)

    async def metrics_json(request: Request) -> Response:
        counters, extra = await edge_metrics()
        body = counters.snapshot()
        body.update(edge=flow.name, **extra)
        return JSONResponse(body, headers=NO_STORE)

    async def health(request: Request) -> Response:
        return JSONResponse({"edge": flow.name, "status": "ok"}, headers=NO_STORE)

    return Starlette(routes=[
        Route("/", dashboard),
        Route("/metrics", metrics),
        Route("/metrics.json", metrics_json),
        Route("/health", health),
    ], middleware=[Middleware(AdminGuard, token=token)])


# One static page: it polls /metrics.json every 2 s, keeps the last 5 minutes in memory and
# draws its own SVG charts; rates are differences between two polls, by the edge's own clock.
DASHBOARD_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge {{EDGE}}</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:18px;margin:0} #state{color:#9aa4b8;font-size:12px}
main{padding:16px 20px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(300px,1fr))}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px}
h2{font-size:13px;margin:0 0 4px;color:#5a6478;text-transform:uppercase;letter-spacing:.04em}
.big{font-size:28px;font-weight:600} .sub{color:#5a6478;font-size:12px} svg{width:100%;height:120px;display:block}
polyline{fill:none;stroke:#2f6fde;stroke-width:2;vector-effect:non-scaling-stroke}
.wide{grid-column:1/-1} table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff3} td.n,th.n{text-align:right}
td.key{font-family:ui-monospace,monospace;word-break:break-all}
</style></head><body>
<header><h1>edge {{EDGE}}</h1><span id="state">connecting...</span></header>
<main>
<section><h2>Hit ratio</h2><div class="big" id="ratio">-</div><div id="offload" class="sub">-</div><svg id="ratio-chart" viewBox="0 0 300 120" preserveAspectRatio="none"><polyline/></svg></section>
<section><h2>Requests / s</h2><div class="big" id="rps">-</div><svg id="rps-chart" viewBox="0 0 300 120" preserveAspectRatio="none"><polyline/></svg></section>
<section><h2>Bandwidth</h2><div class="big" id="bw">-</div><svg id="bw-chart" viewBox="0 0 300 120" preserveAspectRatio="none"><polyline/></svg></section>
<section><h2>Cache</h2><table id="tiers"><tbody></tbody></table></section>
<section class="wide" id="live-section" hidden><h2>Live streams</h2>
<table id="live"><thead><tr><th>stream</th><th class="n">viewers</th><th class="n">WebRTC</th><th class="n">egress</th>
<th class="n">origin requests per segment</th><th class="n">per part</th><th class="n">per playlist</th></tr></thead>
<tbody></tbody></table></section>
<section class="wide"><h2>Top objects</h2>
<table id="top"><thead><tr><th>#</th><th>key</th><th class="n">requests</th><th class="n">bytes</th></tr></thead>
<tbody></tbody></table></section>
</main>
<script>
"use strict";
const POLL_MS = 2000, KEEP = 150, W = 300, H = 120;
const series = {ratio: [], rps: [], bw: []};
let last = null;

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
}

function hits(m) {
  let n = 0;
  for (const byCache of Object.values(m.requests)) n += byCache.hit || 0;
  return n;
}

function push(name, value) {
  series[name].push(value);
  if (series[name].length > KEEP) series[name].shift();
}

function chart(id, values, max) {
  const top = Math.max(max || 0, ...values, 1e-9);
  const points = values.map((v, i) => ((i / (KEEP - 1)) * W).toFixed(1) + "," + (H - 4 - (v / top) * (H - 8)).toFixed(1));
  document.querySelector("#" + id + " polyline").setAttribute("points", points.join(" "));
}

function row(tbody, cells) {
  const tr = document.createElement("tr");
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
}

function render(m) {
  const total = m.requests_total, served = hits(m);
  if (last && m.time > last.time) {
    const dt = m.time - last.time, dn = total - last.requests_total;
    push("ratio", dn > 0 ? (served - hits(last)) / dn : (series.ratio.at(-1) ?? 0));
    push("rps", dn / dt);
    push("bw", (m.bytes_out_total - last.bytes_out_total) / dt);
  }
  last = m;
  document.getElementById("ratio").textContent = (m.hit_ratio * 100).toFixed(1) + " %";
  document.getElementById("offload").textContent =
    "origin offload " + ((m.offload_ratio || 0) * 100).toFixed(1) + " % (hits and collapsed misses)";
  document.getElementById("rps").textContent = (series.rps.at(-1) ?? 0).toFixed(1);
  document.getElementById("bw").textContent = bytes(series.bw.at(-1) ?? 0) + "/s";
  chart("ratio-chart", series.ratio, 1);
  chart("rps-chart", series.rps);
  chart("bw-chart", series.bw);
  const tiers = document.querySelector("#tiers tbody");
  tiers.replaceChildren();
  for (const [tier, t] of Object.entries(m.cache)) {
    row(tiers, [[tier], [t.entries + " objects", "n"], [bytes(t.bytes) + " / " + bytes(t.capacity_bytes), "n"],
                [t.evictions + " evicted", "n"]]);
  }
  row(tiers, [["origin requests"], [String(m.origin_requests), "n"], [""], [""]]);
  const top = document.querySelector("#top tbody");
  top.replaceChildren();
  m.top_objects.forEach((o, i) => row(top, [[String(i + 1)], [o.key, "key"], [String(o.requests), "n"],
                                            [bytes(o.bytes), "n"]]));
  const streams = Object.entries(m.live || {});
  document.getElementById("live-section").hidden = streams.length === 0;
  const live = document.querySelector("#live tbody");
  live.replaceChildren();
  for (const [name, st] of streams) {
    const per = st.origin_requests_per_object || {}, seen = st.objects_fetched || {};
    const f = (k) => (per[k] === undefined || !seen[k] ? "-" : Number(per[k]).toFixed(2));
    row(live, [[name, "key"], [String(st.viewers), "n"], [String(st.webrtc_viewers || 0), "n"], [bytes(st.egress_bytes), "n"],
               [f("segment"), "n"], [f("part"), "n"], [f("playlist"), "n"]]);
  }
  document.getElementById("state").textContent =
    "updated " + new Date(m.time * 1000).toLocaleTimeString() + " \\u00b7 " + total + " requests since start";
}

async function poll() {
  try {
    const r = await fetch("metrics.json", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) {
    document.getElementById("state").textContent = "cannot reach the edge: " + e.message;
  }
  setTimeout(poll, POLL_MS);
}
poll();
</script>
</body></html>
"""
