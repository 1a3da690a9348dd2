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
            response: Response = PlainTextResponse(
                "Unauthorized: send Authorization: Bearer TOKEN (or open /?token=TOKEN)\n",
                401,
                {"www-authenticate": "Bearer", **NO_STORE},
            )
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
        raise ValueError(
            f"edge {flow.name}: the admin listener needs an admin_token of at least {MIN_SECRET_LENGTH} characters"
        )

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

    return Starlette(
        routes=[
            Route("/", dashboard),
            Route("/metrics", metrics),
            Route("/metrics.json", metrics_json),
            Route("/health", health),
        ],
        middleware=[Middleware(AdminGuard, token=token)],
    )


# One static page: it polls /metrics.json every 2 s and draws its own SVG charts from the
# history the edge keeps (edge/history.py), so a page opened now shows the last minutes.
DASHBOARD_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge {{EDGE}}</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0} #state,#uptime{color:#9aa4b8;font-size:12px}
main{padding:16px 20px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(340px,1fr))}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px}
h2{font-size:13px;margin:0 0 4px;color:#5a6478;text-transform:uppercase;letter-spacing:.04em}
.big{font-size:26px;font-weight:600} .sub{color:#5a6478;font-size:12px} svg{width:100%;height:auto;display:block;font-size:10px}
svg .line{fill:none;stroke-width:1.6} #viewers-chart{max-width:640px} svg .grid{stroke:#eceff3} svg .axis{stroke:#9aa4b8} svg text{fill:#5a6478}
.legend span{font-size:12px;margin-right:10px} .legend i{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}
.wide{grid-column:1/-1} table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff3} td.n,th.n{text-align:right}
td.key{font-family:ui-monospace,monospace;word-break:break-all} .bad{color:#c92a2a}
</style></head><body>
<header><h1>edge {{EDGE}}</h1><span id="uptime">-</span><span id="state">connecting...</span></header>
<main>
<section><h2>Requests / s</h2><div class="big" id="rps">-</div><div class="sub" id="rps-sub">-</div>
<svg id="rps-chart" viewBox="0 0 340 150"></svg><div class="legend" id="rps-legend"></div></section>
<section><h2>Hit ratio</h2><div class="big" id="ratio">-</div><div id="offload" class="sub">-</div>
<svg id="ratio-chart" viewBox="0 0 340 150"></svg></section>
<section><h2>Bandwidth to viewers</h2><div class="big" id="bw">-</div><div class="sub" id="bw-sub">-</div>
<svg id="bw-chart" viewBox="0 0 340 150"></svg></section>
<section><h2>Errors (5xx) / s</h2><div class="big" id="errors">-</div><div class="sub" id="errors-sub">-</div>
<svg id="errors-chart" viewBox="0 0 340 150"></svg></section>
<section><h2>Edge response time</h2><div class="big" id="resp">-</div><div class="sub" id="resp-sub">-</div>
<svg id="resp-chart" viewBox="0 0 340 150"></svg><div class="legend" id="resp-legend"></div></section>
<section><h2>Origin latency</h2><div class="big" id="origin">-</div><div class="sub" id="origin-sub">-</div>
<svg id="origin-chart" viewBox="0 0 340 150"></svg><div class="legend" id="origin-legend"></div></section>
<section><h2>Cache</h2><table id="tiers"><tbody></tbody></table></section>
<section><h2>Origins</h2><table id="origins"><thead><tr><th>origin</th><th class="n">requests</th><th class="n">failed</th>
<th class="n">p50</th><th class="n">p95</th></tr></thead><tbody></tbody></table></section>
<section><h2>Responses by status (since start)</h2><table id="statuses"><tbody></tbody></table></section>
<section class="wide" id="live-section" hidden><h2>Live streams</h2>
<table id="live"><thead><tr><th>stream</th><th class="n">viewers (sessions)</th><th class="n">WebRTC</th><th class="n">egress</th>
<th class="n">origin requests per segment</th><th class="n">per part</th><th class="n">per playlist</th></tr></thead>
<tbody></tbody></table><svg id="viewers-chart" viewBox="0 0 340 110"></svg></section>
<section class="wide"><h2>Top objects, grouped by path pattern</h2>
<div class="sub">numbers in file names and the query are shown as * and dropped: one row per kind of object</div>
<table id="top"><thead><tr><th>#</th><th>pattern</th><th class="n">requests</th><th class="n">share</th><th class="n">bytes</th></tr></thead>
<tbody></tbody></table></section>
</main>
<script>
"use strict";
const POLL_MS = 2000, W = 340, L = 62, R = 8, T = 8, B = 20;
const COLOURS = ["#2f6fde", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#5a6478"];
const SVG = document.querySelector("svg").namespaceURI;  // the SVG namespace, named nowhere else

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
}
const rate = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const ms = (s) => (s == null ? "-" : s >= 1 ? s.toFixed(2) + " s" : (s * 1000).toFixed(s < 0.01 ? 2 : 0) + " ms");
const pct = (r) => (r == null ? "-" : (r * 100).toFixed(1) + " %");
function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d ? d + " d " + h + " h" : h ? h + " h " + m + " min" : m ? m + " min " + Math.floor(s % 60) + " s" : Math.floor(s) + " s";
}

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

// Lines of [time, value] on axes: time across (clock labels), `fmt` labels the values.
function chart(id, series, fmt, opts = {}) {
  const svg = document.getElementById(id), H = Number(svg.getAttribute("viewBox").split(" ")[3]);
  svg.replaceChildren();
  const all = Object.values(series).flat().filter((p) => p[1] != null);
  if (!all.length) { svg.appendChild(el("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no data yet")); return; }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const top = opts.max ?? Math.max(...all.map((p) => p[1]), 1e-9) * 1.1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R), y = (v) => H - B - (v / top) * (H - T - B);
  for (let i = 0; i <= 3; i++) {
    const v = (top * i) / 3, yy = y(v).toFixed(1);
    svg.appendChild(el("line", {x1: L, x2: W - R, y1: yy, y2: yy, class: i ? "grid" : "axis"}));
    svg.appendChild(el("text", {x: L - 4, y: Number(yy) + 3, "text-anchor": "end"}, fmt(v)));
  }
  for (const t of [t0, (t0 + t1) / 2, t1]) {
    const label = new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
    svg.appendChild(el("text", {x: x(t).toFixed(1), y: H - 6, "text-anchor": t === t0 ? "start" : t === t1 ? "end" : "middle"}, label));
  }
  Object.entries(series).forEach(([name, points], i) => {
    const shown = points.filter((p) => p[1] != null).map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1));
    svg.appendChild(el("polyline", {points: shown.join(" "), class: "line", stroke: COLOURS[i % COLOURS.length]}));
  });
  if (opts.legend) {
    const legend = document.getElementById(opts.legend);
    legend.replaceChildren();
    Object.keys(series).forEach((name, i) => {
      const span = document.createElement("span"), mark = document.createElement("i");
      mark.style.background = COLOURS[i % COLOURS.length];
      span.append(mark, name);
      legend.appendChild(span);
    });
  }
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

function text(id, value) { document.getElementById(id).textContent = value; }

function render(m) {
  const h = m.history || [];
  // the figures "now": the latest interval that has them (the one still running may be empty)
  const now = {};
  for (const r of h) for (const [k, v] of Object.entries(r)) if (v != null) now[k] = v;
  const span = h.length ? duration(h.at(-1).time - h[0].time + h[0].seconds) : "0 s";
  const series = (key) => h.map((r) => [r.time, r[key]]);
  text("uptime", "up " + duration(m.uptime_seconds) + " \\u00b7 history of the last " + span + " kept by the edge, every "
       + m.history_interval_seconds + " s");
  text("rps", rate(now.requests_per_second || 0));
  text("rps-sub", m.requests_total + " requests since start");
  const classes = [...new Set(h.flatMap((r) => Object.keys(r.statuses_per_second)))].sort();
  const byStatus = {};
  for (const c of classes) byStatus[c] = h.map((r) => [r.time, r.statuses_per_second[c] || 0]);
  chart("rps-chart", classes.length ? byStatus : {all: series("requests_per_second")}, (v) => rate(v) + "/s", {legend: "rps-legend"});
  text("ratio", pct(m.hit_ratio));
  text("offload", "since start; origin offload " + pct(m.offload_ratio || 0) + " (hits and collapsed misses)");
  chart("ratio-chart", {"hit ratio": series("hit_ratio")}, (v) => Math.round(v * 100) + " %", {max: 1});
  text("bw", bytes(now.bytes_per_second || 0) + "/s");
  text("bw-sub", bytes(m.bytes_out_total) + " sent since start");
  chart("bw-chart", {bandwidth: series("bytes_per_second")}, (v) => bytes(v) + "/s");
  const errorsNow = now.errors_per_second || 0;
  text("errors", rate(errorsNow));
  document.getElementById("errors").className = "big" + (errorsNow > 0 ? " bad" : "");
  text("errors-sub", m.errors_total + " 5xx responses since start");
  chart("errors-chart", {"5xx/s": series("errors_per_second")}, (v) => rate(v) + "/s");
  const rs = m.response_seconds;
  text("resp", "p95 " + ms(now.response_seconds_p95 ?? rs.p95));
  text("resp-sub", "arrival to last byte; since start p50 " + ms(rs.p50) + ", p90 " + ms(rs.p90) + ", p99 " + ms(rs.p99)
       + " (an LL-HLS blocking reload waits for its part)");
  chart("resp-chart", {p50: series("response_seconds_p50"), p95: series("response_seconds_p95"), p99: series("response_seconds_p99")},
        ms, {legend: "resp-legend"});
  text("origin", "mean " + ms(now.origin_seconds_mean));
  text("origin-sub", m.origin_requests + " origin requests since start; to the response head");
  chart("origin-chart", {mean: series("origin_seconds_mean"), p95: series("origin_seconds_p95")}, ms, {legend: "origin-legend"});
  const tiers = document.querySelector("#tiers tbody");
  tiers.replaceChildren();
  for (const [tier, t] of Object.entries(m.cache)) {
    row(tiers, [[tier], [t.entries + " objects", "n"], [bytes(t.bytes) + " / " + bytes(t.capacity_bytes), "n"],
                [t.evictions + " evicted", "n"]]);
  }
  row(tiers, [["origin requests"], [String(m.origin_requests), "n"], [(m.collapsed || 0) + " collapsed", "n"], [""]]);
  const origins = document.querySelector("#origins tbody");
  origins.replaceChildren();
  for (const [name, o] of Object.entries(m.origins)) {
    const n = Object.values(o.outcomes).reduce((a, b) => a + b, 0);
    row(origins, [[name, "key"], [String(n), "n"], [String(o.outcomes.failed || 0), "n"], [ms(o.seconds_p50), "n"], [ms(o.seconds_p95), "n"]]);
  }
  const statuses = document.querySelector("#statuses tbody");
  statuses.replaceChildren();
  for (const [code, n] of Object.entries(m.statuses)) {
    row(statuses, [[code], [String(n), "n"], [pct(n / Math.max(m.requests_total, 1)), "n"]]);
  }
  const top = document.querySelector("#top tbody");
  top.replaceChildren();
  const counted = m.top_patterns.reduce((a, o) => a + o.requests, 0);
  m.top_patterns.forEach((o, i) => row(top, [[String(i + 1)], [o.pattern, "key"], [String(o.requests), "n"],
                                             [pct(o.requests / Math.max(counted, 1)), "n"], [bytes(o.bytes), "n"]]));
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
  if (streams.length) chart("viewers-chart", {"HLS/DASH viewers": series("live_viewers")}, (v) => v.toFixed(v < 10 ? 1 : 0));
  text("state", "updated " + new Date(m.time * 1000).toLocaleTimeString() + " \\u00b7 " + m.requests_total + " requests since start");
}

async function poll() {
  try {
    const r = await fetch("metrics.json", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) {
    text("state", "cannot reach the edge: " + e.message);
  }
  setTimeout(poll, POLL_MS);
}
poll();
</script>
</body></html>
"""
