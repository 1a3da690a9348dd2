"""A load test's figures (`summarize`), its JSON result and its self-contained HTML report.

The HTML has no script and names no other host: charts are inline SVG (streaming.charts).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from streaming import charts
from streaming.loadtest import Run
from streaming.loadtest_cli import dig
from streaming.playlist import Variant
from streaming.tally import percentile

KEEP_POINTS = 1500


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _thin(items: Sequence[Any], keep: int = KEEP_POINTS) -> list[Any]:
    return list(items) if len(items) <= keep else random.Random(7).sample(list(items), keep)


def edge_figures(run: Run) -> list[dict[str, Any]]:
    """Per edge: requests, hits, hit ratio and origin requests during the run (after - before)."""
    rows = []
    for url, after in run.metrics_after.items():
        before = run.metrics_before.get(url, {})
        if "error" in after or "error" in before:
            rows.append(
                {"url": url, "edge": before.get("edge", url), "error": after.get("error") or before.get("error")}
            )
            continue
        requests = after["requests_total"] - before.get("requests_total", 0)
        hits = _hits(after) - _hits(before)
        rows.append(
            {
                "url": url,
                "edge": after.get("edge", url),
                "requests": requests,
                "hits": hits,
                "hit_ratio": _r(hits / requests if requests else None),
                "origin_requests": after["origin_requests"] - before.get("origin_requests", 0),
            }
        )
    return rows


def _hits(metrics: dict[str, Any]) -> int:
    return sum(int(by_cache.get("hit", 0)) for by_cache in metrics.get("requests", {}).values())


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p95, p99 and max of `values` (None each for none)."""
    return {**{f"p{q}": _r(percentile(values, q)) for q in (50, 90, 95, 99)}, "max": _r(max(values, default=None))}


def summarize(run: Run) -> dict[str, Any]:
    tally, end, plan = run.tally, run.ended_at, run.plan
    figures: dict[str, Any] = {
        "label": run.plan.label,
        "mode": run.plan.mode,
        "targets": list(run.plan.targets),
        "plan": {
            "targets": list(plan.targets),
            "path": plan.path if plan.mode == "hls" else None,
            "host": plan.host,
            "viewers": plan.viewers,
            "ramp_per_second": plan.ramp,
            "duration_seconds": plan.duration,
            "timeout_seconds": plan.timeout,
            "mode": plan.mode,
            "objects": len(plan.objects) if plan.mode == "web" else None,
            "started": datetime.fromtimestamp(run.started_at, UTC).isoformat(timespec="seconds"),
        },
        "seconds": _r(run.seconds, 2),
        "viewers_planned": run.plan.viewers,
        "viewers_started": len(run.viewers),
        "requests": tally.requests,
        "request_rate": _r(tally.requests / run.seconds if run.seconds else 0.0, 1),
        "bytes": tally.bytes,
        "errors": dict(tally.errors.most_common()),
        "error_ratio": _r(sum(tally.errors.values()) / tally.requests if tally.requests else 0.0),
    }
    hosts = Counter(getattr(v, "host", "") or "-" for v in run.viewers)
    figures["viewers_by_host"] = dict(hosts.most_common())
    figures.update(_web(run) if run.plan.mode == "web" else _playback(run, end))
    edges = edge_figures(run)
    figures["edges"] = edges
    answered = [e for e in edges if "error" not in e]
    if answered:
        origin = sum(e["origin_requests"] for e in answered)
        served = sum(e["requests"] for e in answered)
        figures["origin_requests"] = origin
        figures["offload"] = _r(1 - origin / served if served else None)
        segment = figures.get("segment_seconds")
        if segment and run.seconds:
            figures["origin_requests_per_segment"] = _r(origin / (run.seconds / segment), 2)
    figures["series"] = [vars(s) for s in run.samples]
    return figures


def _playback(run: Run, end: float) -> dict[str, Any]:
    viewers = run.viewers
    startups = [v.startup for v in viewers if v.startup is not None]
    watched = sum(v.buffer.watched(end) for v in viewers)
    stalled = sum(v.buffer.total_stall(end) for v in viewers)
    fetches = run.tally.fetches.items
    latencies = [x for (x,) in run.tally.latencies.items]
    renditions = Counter(_rendition_name(v) for v in viewers if v.variants)
    durations = [d for _, d in fetches]
    return {
        "startup": {
            "viewers": len(startups),
            "never_started": len(viewers) - len(startups),
            "p50": _r(percentile(startups, 50)),
            "p95": _r(percentile(startups, 95)),
            "max": _r(max(startups, default=None)),
        },
        "stalls": sum(v.buffer.stalls for v in viewers),
        "stall_seconds": _r(stalled, 2),
        "watch_seconds": _r(watched, 1),
        "stall_ratio": _r(stalled / watched if watched else 0.0),
        "media_fetches": run.tally.media_fetches,
        "late_fetch_ratio": _r(run.tally.late_fetches / run.tally.media_fetches if run.tally.media_fetches else 0.0),
        "fetch": spread([s for s, _ in fetches]),
        "latency": spread(latencies),
        "startup_spread": spread(startups),
        "fetch_p50": _r(percentile([s for s, _ in fetches], 50)),
        "fetch_p95": _r(percentile([s for s, _ in fetches], 95)),
        "segment_seconds": _r(_segment_seconds(viewers), 3),
        "media_seconds_p50": _r(percentile(durations, 50)),
        "latency_p50": _r(percentile(latencies, 50)),
        "latency_p95": _r(percentile(latencies, 95)),
        "renditions": dict(renditions.most_common()),
        "switches": sum(v.switches for v in viewers),
        "samples": {
            "startup": [_r(s) for s in _thin(startups, 5000)],
            "fetch": [[_r(s), _r(d)] for s, d in _thin(fetches)],
            "latency": [_r(x) for x in _thin(latencies)],
        },
    }


def _segment_seconds(viewers: Sequence[Any]) -> float | None:
    for viewer in viewers:
        if viewer.playlist is not None and viewer.playlist.segments:
            complete = [s.duration for s in viewer.playlist.segments if s.uri is not None]
            return sum(complete) / len(complete) if complete else None
    return None


def _rendition_name(viewer: Any) -> str:
    variant: Variant = viewer.variants[viewer.rendition]
    if variant.resolution:
        return variant.resolution
    return f"{variant.bandwidth // 1000} kbit/s" if variant.bandwidth else "single"


def _web(run: Run) -> dict[str, Any]:
    times = [x for (x,) in run.tally.request_times.items]
    statuses = run.tally.statuses
    answered = sum(statuses.values())
    return {
        "cache_statuses": dict(statuses.most_common()),
        "client_hit_ratio": _r(statuses["hit"] / answered if answered else None),
        "request_p50": _r(percentile(times, 50)),
        "request_p95": _r(percentile(times, 95)),
        "request": spread(times),
        "samples": {"request": [_r(x) for x in _thin(times)]},
    }


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=1) + "\n")


# -- HTML -------------------------------------------------------------------------------------
STYLE = """body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 20px}h1{font-size:19px;margin:0}
main{padding:16px 20px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(520px,1fr))}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px}.wide{grid-column:1/-1}
h2{font-size:13px;margin:0 0 8px;color:#5a6478;text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}th,td{text-align:left;padding:3px 10px;
border-bottom:1px solid #eceff3}svg{width:100%;height:auto;font-size:11px;fill:#1d2330}
.axis{stroke:#5a6478}.grid{stroke:#eceff3}.fail{color:#c92a2a;font-weight:600}.pass{color:#2b8a3e}"""

ROWS = (
    ("viewers started", "viewers_started"),
    ("seconds", "seconds"),
    ("requests / s", "request_rate"),
    ("errors / requests", "error_ratio"),
    ("startup p50 (s)", "startup.p50"),
    ("startup p95 (s)", "startup.p95"),
    ("never started", "startup.never_started"),
    ("stalls", "stalls"),
    ("stall ratio", "stall_ratio"),
    ("fetch p95 (s)", "fetch_p95"),
    ("latency behind live p50 (s)", "latency_p50"),
    ("latency p95 (s)", "latency_p95"),
    ("rendition switches", "switches"),
    ("client hit ratio", "client_hit_ratio"),
    ("request p95 (s)", "request_p95"),
    ("origin requests", "origin_requests"),
    ("origin offload", "offload"),
    ("origin requests per segment", "origin_requests_per_segment"),
)


def _summary_table(runs: Sequence[dict[str, Any]]) -> str:
    head = "".join(f"<th>{escape(r['label'])}</th>" for r in runs)
    rows = []
    for name, key in ROWS:
        values = [dig(r, key) for r in runs]
        if all(v is None for v in values):
            continue
        cells = "".join(f"<td>{escape('-' if v is None else str(v))}</td>" for v in values)
        rows.append(f"<tr><th>{escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _edge_table(run: dict[str, Any]) -> str:
    if run["label"] == "origin":
        return "<p>Straight at the origin: every request is an origin request.</p>"
    if not run["edges"]:
        return "<p>No edge metrics were read (give --metrics URLs of the edges' /metrics.json).</p>"
    rows = "".join(
        f"<tr><td>{escape(str(e['edge']))}</td>"
        + (
            f"<td colspan=3>metrics unreadable: {escape(str(e['error']))}</td>"
            if "error" in e
            else f"<td>{e['requests']}</td><td>{e['hit_ratio']}</td><td>{e['origin_requests']}</td>"
        )
        + "</tr>"
        for e in run["edges"]
    )
    return f"<table><tr><th>edge</th><th>requests</th><th>hit ratio</th><th>origin requests</th></tr>{rows}</table>"


def _details(result: dict[str, Any]) -> str:
    """What was run: when, the command, and each run's targets, stream and load shape."""
    rows = [("date", result.get("date")), ("command", result.get("command"))]
    for run in result["runs"]:
        plan = run.get("plan", {})
        stream = plan.get("path") and (f"{plan['path']} (Host: {plan['host']})" if plan.get("host") else plan["path"])
        shape = (
            (
                f"{plan.get('viewers')} viewers, started {plan.get('ramp_per_second'):g} a second, for "
                f"{plan.get('duration_seconds'):g} s (request timeout {plan.get('timeout_seconds'):g} s)"
            )
            if plan
            else None
        )
        rows += [
            (f"{run['label']}: targets", ", ".join(plan.get("targets", run.get("targets", [])))),
            (
                f"{run['label']}: {'stream' if run['mode'] == 'hls' else 'objects'}",
                stream if run["mode"] == "hls" else plan.get("objects"),
            ),
            (f"{run['label']}: load", shape),
            (f"{run['label']}: ran", f"{run['seconds']} s from {plan.get('started')}"),
        ]
    cells = "".join(f"<tr><th>{escape(name)}</th><td>{escape(str(value))}</td></tr>" for name, value in rows if value)
    return f'<section class="wide"><h2>Run</h2><table>{cells}</table></section>'


def _checks_table(result: dict[str, Any]) -> str:
    checks = result.get("checks") or []
    if not checks:
        return ""
    rows = "".join(
        f"<tr><td>{escape(c['what'])}</td><td><code>{escape(c['option'])}</code></td><td>{c['limit']:g}</td>"
        f"<td>{'-' if c['value'] is None else format(c['value'], 'g')}</td>"
        f"<td class={'pass' if c['passed'] else 'fail'}>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in checks
    )
    return f"<table><tr><th>threshold</th><th>option</th><th>limit</th><th>value</th><th>result</th></tr>{rows}</table>"


SPREADS = (
    ("startup (s)", "startup_spread"),
    ("media fetch (s)", "fetch"),
    ("behind live (s)", "latency"),
    ("request (s)", "request"),
)


def _spread_table(runs: Sequence[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        for name, key in SPREADS:
            values = run.get(key)
            if values:
                cells = "".join(
                    f"<td>{escape('-' if values[q] is None else str(values[q]))}</td>"
                    for q in ("p50", "p90", "p95", "p99", "max")
                )
                rows.append(f"<tr><th>{escape(run['label'])}: {escape(name)}</th>{cells}</tr>")
    return (
        (
            '<section class="wide"><h2>Percentiles</h2><table><tr><th></th><th>p50</th><th>p90</th><th>p95</th>'
            f"<th>p99</th><th>max</th></tr>{''.join(rows)}</table></section>"
        )
        if rows
        else ""
    )


def _run_sections(run: dict[str, Any], wide: bool) -> list[str]:
    label = run["label"]
    series = run["series"]
    stall_ratio = [(s["t"], s["stalled"] / max(s["playing"] + s["stalled"], 1)) for s in series]
    worst = max((r for _, r in stall_ratio), default=0.0)
    out = [f"<section{' class=wide' if wide else ''}><h2>{escape(label)}: edges</h2>{_edge_table(run)}</section>"]
    if run.get("error_sources"):
        out.append(_errors_table(label, run["error_sources"]))
    samples = run.get("samples", {})
    if run["mode"] == "web":
        out.append(
            _section(f"{label}: request time", charts.histogram("request time", samples.get("request", []), "seconds"))
        )
    else:
        out += [
            _section(f"{label}: startup time", charts.histogram("startup time", samples.get("startup", []), "seconds")),
            _section(
                f"{label}: stall ratio over time" + ("" if worst else " (no viewer stalled)"),
                charts.lines(
                    "stalled share of viewers",
                    {"stalled / playing": stall_ratio},
                    "seconds into the run",
                    "share",
                    max(worst, 0.01),
                ),
            ),  # scaled to the worst second, so a few stalls show
            _section(
                f"{label}: latency and p95 fetch time over time",
                charts.lines(
                    "latency behind live and p95 media fetch, per second",
                    {
                        "behind live p50": [(s["t"], s["p50_latency"]) for s in series if s["p50_latency"] is not None],
                        "behind live p95": [
                            (s["t"], s["p95_latency"]) for s in series if s.get("p95_latency") is not None
                        ],
                        "media fetch p95": [(s["t"], s["p95_fetch"]) for s in series if s["p95_fetch"] is not None],
                    },
                    "seconds into the run",
                    "seconds",
                ),
            ),
            _section(
                f"{label}: segment fetch time vs duration",
                charts.scatter(
                    "fetch time vs media duration",
                    [(d, s) for s, d in samples.get("fetch", [])],
                    "media duration (s)",
                    "fetch time (s)",
                    diagonal=True,
                ),
            ),
            _section(
                f"{label}: latency behind live",
                charts.histogram("latency behind live", samples.get("latency", []), "seconds"),
            ),
        ]
    out.append(
        _section(
            f"{label}: viewers and requests",
            charts.two_axes(
                "viewers and requests per second",
                ("viewers", [(s["t"], s["active"]) for s in series]),
                ("requests / s", [(s["t"], s["requests"]) for s in series]),
                "seconds into the run",
            ),
        )
    )
    out.append(_section(f"{label}: errors by kind", charts.bars("errors by kind", run["errors"], "errors")))
    return out


def _comparison(comparison: dict[str, Any]) -> str:
    rows = [
        f"<tr><th>origin requests</th><td>{comparison['origin_requests_direct']}</td>"
        f"<td>{comparison['origin_requests_through_edges']}</td><td>offload {comparison['offload']}</td></tr>"
    ]
    for key, values in comparison.items():
        if isinstance(values, dict):
            rows.append(
                f"<tr><th>{escape(key)}</th>"
                + "".join(f"<td>{escape(str(values[k]))}</td>" for k in ("origin", "edges", "difference"))
                + "</tr>"
            )
    return (
        '<section class="wide"><h2>Origin vs edges</h2><table><tr><th></th><th>straight at the origin</th>'
        f"<th>through the edges</th><th>difference</th></tr>{''.join(rows)}</table></section>"
    )


def _errors_table(label: str, sources: Sequence[dict[str, Any]]) -> str:
    """Which requests failed: kind, the edge that answered (or was asked) and the URL."""
    rows = "".join(
        f"<tr><td>{escape(str(e['kind']))}</td><td>{escape(str(e['edge']))}</td>"
        f"<td>{escape(str(e['url']))}</td><td>{e['count']}</td></tr>"
        for e in sources
    )
    table = f"<table><tr><th>error</th><th>edge</th><th>URL</th><th>requests</th></tr>{rows}</table>"
    return f'<section class="wide"><h2>{escape(label)}: errors</h2>{table}</section>'


def _section(title: str, body: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


def render_html(result: dict[str, Any]) -> str:
    runs = result["runs"]
    verdict = ""
    if result.get("thresholds"):
        failed = result.get("failed", [])
        verdict = (
            f'<p class="fail">Thresholds exceeded: {escape("; ".join(failed))}</p>'
            if failed
            else '<p class="pass">All thresholds met.</p>'
        )
    sections = [
        _details(result),
        f'<section class="wide"><h2>Summary</h2>{verdict}{_checks_table(result)}{_summary_table(runs)}</section>',
    ]
    if spreads := _spread_table(runs):
        sections.append(spreads)
    if "comparison" in result:
        sections.append(_comparison(result["comparison"]))
    per_run = [_run_sections(run, wide=len(runs) == 1) for run in runs]
    for row in zip(*per_run, strict=True):  # two runs: each chart of one beside the other's
        sections += row
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cdn loadtest</title>'
        f"<style>{STYLE}</style></head><body><header><h1>cdn loadtest: "
        f"{escape(', '.join(r['label'] for r in runs))}</h1></header><main>{''.join(sections)}</main></body></html>\n"
    )


def write_html(result: dict[str, Any], path: Path) -> None:
    path.write_text(render_html(result))
