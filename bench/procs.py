"""The processes a benchmark runs: free loopback ports, each child in its own process group,
readiness by polling the socket (never a fixed sleep), and memory read from /proc.

`Children` is a context manager: whatever happens inside it, every child it started is
stopped (SIGTERM to its process group, SIGKILL after a grace period), so a failed or
interrupted benchmark leaves no server behind.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """An ephemeral loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine_load() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')} load {machine_load()}] {message}", flush=True)


@dataclass
class Child:
    """A started server: its name, process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Children:
    """Starts servers and stops every one of them on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._started: list[Child] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()

    def spawn(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Child:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self._started.append(child)
        return child

    def stop(self, child: Child, grace: float = 5.0) -> None:
        if child.process.poll() is None:
            _signal_group(child.pid, signal.SIGTERM)
            try:
                child.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Workers may outlive their parent: the whole group goes.
        _signal_group(child.pid, signal.SIGKILL)
        if child.process.poll() is None:
            child.process.wait()
        if child in self._started:
            self._started.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self._started)):
            self.stop(child)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def wait_http(child: Child, port: int, path: str = "/", *, timeout: float = 30.0) -> None:
    """Return once something answers HTTP on `port` (any status); raise if the child died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with code {child.process.returncode}:\n{child.tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise RuntimeError(f"{child.name} did not answer on port {port} within {timeout:.0f} s ({last}):\n{child.tail()}")


# -- memory ------------------------------------------------------------------------------------
def wait_ready(child: Child, marker: str = "ready ", timeout: float = 90.0) -> None:
    """Until `child` printed `marker` (an edge prints it once every worker listens)."""
    deadline = time.monotonic() + timeout
    while marker not in child.tail(50):
        if time.monotonic() > deadline or child.process.poll() is not None:
            raise RuntimeError(f"{child.name} did not get ready:\n{child.tail()}")
        time.sleep(0.1)


def group_rss_kib(pgid: int) -> int:
    """Summed VmRSS of the live processes of group `pgid`."""
    return sum(status_kib(pid, "VmRSS") for pid in group_pids(pgid))


def status_kib(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM`-style field of /proc/PID/status, in KiB (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def group_pids(pgid: int) -> list[int]:
    """Every live process of process group `pgid` (a server and its workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # Fields after the command name, which may hold spaces: state ppid pgrp ...
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def cpu_seconds(pid: int | None = None) -> float:
    """User plus system CPU seconds process `pid` (None: this one) has used so far, every thread
    included (0.0 once it is gone). The one CPU reader of the benchmarks."""
    try:
        with open(f"/proc/{pid if pid is not None else 'self'}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by the live processes of group `pgid` (a server and its workers)."""
    return sum(cpu_seconds(pid) for pid in group_pids(pgid))


class RssSampler:
    """Samples the summed VmRSS of a process group every `interval` s on a thread; `peak_kib`."""

    def __init__(self, pgid: int, interval: float = 0.05) -> None:
        self.pgid = pgid
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._pids: list[int] = []

    def __enter__(self) -> RssSampler:
        self._pids = group_pids(self.pgid)  # workers are there once the server answers
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(status_kib(pid, "VmRSS") for pid in self._pids)
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(self.interval)
