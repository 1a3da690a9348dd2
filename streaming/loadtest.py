"""The playback load tester: thousands of virtual viewers from one process.

`run_load(plan)` starts `plan.viewers` viewers at `plan.ramp` per second, spread round-robin
over `plan.targets` (edges, a request router whose 302 they follow, or the origin itself),
all sharing one pooled aiohttp client, and stops everything at `plan.duration` seconds
whatever is in flight. About once a second it samples the viewers (playing, stalled, request
rate, errors, p95 media fetch time) for the time series and the progress line on stderr.
Edges' metrics JSON is read before and after, for hit ratio and origin requests.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO
from urllib.parse import urljoin

import aiohttp

from streaming.dash_viewer import DashViewer, is_mpd
from streaming.resolve import LocalhostResolver
from streaming.tally import Tally, Tick, percentile
from streaming.viewer import FetchResult, Viewer
from streaming.webload import WebClient

log = logging.getLogger("cdn.loadtest")

# aiohttp's exceptions, most specific first, as the error kinds the report counts
ERROR_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (asyncio.TimeoutError, "timeout"),
    (aiohttp.ClientConnectorError, "connection refused"),
    (aiohttp.ServerDisconnectedError, "disconnected"),
    (aiohttp.ClientPayloadError, "truncated body"),
    (aiohttp.TooManyRedirects, "redirect loop"),
    (aiohttp.ClientOSError, "connection reset"),
    (aiohttp.ClientError, "client error"),
)


@dataclass(frozen=True)
class LoadPlan:
    targets: tuple[str, ...]  # base URLs the viewers are spread over
    path: str = "/live/demo/master.m3u8"
    viewers: int = 100
    duration: float = 60.0
    ramp: float = 50.0  # viewers started per second
    connections: int = 0  # pooled connections; 0: one per viewer plus a few
    host: str | None = None  # Host header, for a distribution matched by domain
    metrics: tuple[str, ...] = ()  # edges' /metrics.json URLs
    timeout: float = 10.0  # per request
    mode: Literal["hls", "web"] = "hls"
    objects: tuple[str, ...] = ()  # web mode: paths, most popular first
    zipf: float = 1.0
    think: float = 0.5  # web mode: seconds between one client's requests
    label: str = "run"
    cacert: str | None = None  # https:// targets: trust this CA's PEM (else the system's)


@dataclass
class Sample:
    t: float
    active: int
    playing: int
    stalled: int
    requests: int
    errors: int
    p95_fetch: float | None
    p50_latency: float | None
    p95_latency: float | None = None


@dataclass
class Run:
    """Everything one run produced, before `report.summarize` turns it into figures."""

    plan: LoadPlan
    tally: Tally
    viewers: list[Any] = field(default_factory=list)  # Viewer or WebClient
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0
    ended_at: float = 0.0  # by the run's clock: viewers' stall time is read as of then
    started_at: float = field(default_factory=time.time)  # wall clock, for the report's date
    metrics_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    crashes: Counter[str] = field(default_factory=Counter)


def raise_fd_limit() -> None:
    """Thousands of viewers need thousands of sockets: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def make_fetch(
    session: aiohttp.ClientSession, clock: Callable[[], float], headers: dict[str, str] | None = None
) -> Callable[[str], Awaitable[FetchResult]]:
    """GET a URL through `session`, with `headers` (a viewer's own: its CMCD session id)."""

    async def fetch(url: str) -> FetchResult:
        started = clock()
        try:
            async with session.get(url, headers=headers) as response:
                head = clock()
                body = await response.read()
                done = clock()
                return FetchResult(
                    response.status,
                    body,
                    str(response.url),
                    done - started,
                    cache_status=response.headers.get("cache-status", ""),
                    transfer_seconds=done - head,
                )
        except Exception as exc:  # translated here, once, into the kinds the report counts
            return FetchResult(0, b"", url, clock() - started, error=error_kind(exc))

    return fetch


def error_kind(exc: BaseException) -> str:
    """What the report calls a failed request: one of ERROR_KINDS, else the exception's name."""
    return next((k for t, k in ERROR_KINDS if isinstance(exc, t)), type(exc).__name__)


async def read_metrics(session: aiohttp.ClientSession, urls: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each edge's metrics JSON by URL; an edge that does not answer maps to {"error": ...}."""
    out: dict[str, dict[str, Any]] = {}
    for url in urls:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                out[url] = await response.json(content_type=None)
        except Exception as exc:
            out[url] = {"error": error_kind(exc)}
    return out


async def run_load(
    plan: LoadPlan, *, progress: TextIO | None = sys.stderr, clock: Callable[[], float] = time.monotonic
) -> Run:
    """One run of `plan`; returns within `plan.duration` plus a few seconds, whatever happens."""
    if not plan.targets:
        raise ValueError("no target URL to send viewers to")
    raise_fd_limit()
    run = Run(plan, Tally())
    tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=plan.cacert) if plan.cacert else True
    connector = aiohttp.TCPConnector(
        limit=plan.connections or plan.viewers + 16,
        limit_per_host=0,
        ttl_dns_cache=300,
        resolver=LocalhostResolver(),
        ssl=tls,
    )
    timeout = aiohttp.ClientTimeout(total=plan.timeout)
    headers = {"Host": plan.host} if plan.host else {}
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        run.metrics_before = await read_metrics(session, plan.metrics)
        started = clock()
        tasks: list[asyncio.Task[None]] = []
        sampler = asyncio.create_task(_sample(run, tasks, started, clock, progress))
        try:
            async with asyncio.timeout(plan.duration):
                await _ramp(run, session, tasks, started, clock)
                await asyncio.gather(*tasks)  # live viewers play on: the deadline ends them
        except TimeoutError:
            pass
        finally:
            run.ended_at = clock()
            run.seconds = run.ended_at - started
            for task in [*tasks, sampler]:
                task.cancel()
            await asyncio.gather(*tasks, sampler, return_exceptions=True)
        if progress is not None:
            progress.write("\n")
        run.metrics_after = await read_metrics(session, plan.metrics)
    return run


def cmcd_session(session_id: str) -> dict[str, str]:
    """The header naming a playback session (CTA-5004 CMCD, as hls.js sends it): the edges
    count each virtual viewer as one viewer, though all come from one address."""
    return {"CMCD-Session": f'sid="{session_id}"'}


async def _ramp(
    run: Run,
    session: aiohttp.ClientSession,
    tasks: list[asyncio.Task[None]],
    started: float,
    clock: Callable[[], float],
) -> None:
    plan = run.plan
    fetch = make_fetch(session, clock)
    for index in range(plan.viewers):
        delay = started + index / plan.ramp - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        target = plan.targets[index % len(plan.targets)]
        viewer: Any
        if plan.mode == "web":
            viewer = WebClient(target, plan.objects, fetch, run.tally, zipf=plan.zipf, think=plan.think, seed=index)
        else:
            own = make_fetch(session, clock, cmcd_session(str(uuid.uuid4())))
            player = DashViewer if is_mpd(plan.path) else Viewer
            viewer = player(urljoin(target, plan.path), own, run.tally, clock=clock)
        run.viewers.append(viewer)
        tasks.append(asyncio.create_task(_guarded(viewer, run)))


async def _guarded(viewer: Any, run: Run) -> None:
    """A viewer that hits a bug is counted and stops; the others go on."""
    try:
        await viewer.run()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not run.crashes:
            log.exception("a virtual viewer failed")
        run.crashes[type(exc).__name__] += 1
        run.tally.error(f"viewer crashed: {type(exc).__name__}")


async def _sample(
    run: Run, tasks: list[asyncio.Task[None]], started: float, clock: Callable[[], float], progress: TextIO | None
) -> None:
    last = started
    while True:
        await asyncio.sleep(1.0)
        now = clock()
        tick = run.tally.tick()
        sample = _snapshot(run, tasks, tick, now, now - started)
        sample.requests = round(tick.requests / max(now - last, 1e-3))
        last = now
        run.samples.append(sample)
        if progress is not None:
            _show(progress, run, sample)


def _snapshot(run: Run, tasks: list[asyncio.Task[None]], tick: Tick, now: float, elapsed: float) -> Sample:
    active = sum(1 for task in tasks if not task.done())
    playing = stalled = 0
    for viewer in run.viewers:
        buffer = getattr(viewer, "buffer", None)
        if buffer is None or buffer.started_at is None:
            continue
        if buffer.stalled(now):
            stalled += 1
        else:
            playing += 1
    return Sample(
        round(elapsed, 2),
        active,
        playing,
        stalled,
        0,
        sum(run.tally.errors.values()),
        percentile(tick.fetch_seconds, 95),
        percentile(tick.latencies, 50),
        percentile(tick.latencies, 95),
    )


def _show(out: TextIO, run: Run, s: Sample) -> None:
    p95 = "-" if s.p95_fetch is None else f"{s.p95_fetch * 1000:.0f} ms"
    stalls = sum(getattr(v, "buffer", None) and v.buffer.stalls or 0 for v in run.viewers)
    line = (
        f"[{run.plan.label}] t={s.t:5.0f}s viewers {s.active:5d} (stalled now {s.stalled})"
        f"  stalls {stalls}  {s.requests} req/s  errors {s.errors}  p95 fetch {p95}"
    )
    if out.isatty():
        out.write("\r\x1b[K" + line)
    else:
        out.write(line + "\n")
    out.flush()
