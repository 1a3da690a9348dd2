"""Locations as Linux network namespaces joined by veth links (needs root), and the relay that
gives each link its one-way delay (this kernel has no netem; tc's tbf limits bandwidth).

`Geography` builds a `Topology`, starts processes in its namespaces and removes everything it
made on exit, processes first, then namespaces (which take their links along); namespaces left
by a process that died are removed at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from web_dist.geo.topology import Link, Topology

NS_PREFIX = "cdn-g"  # every namespace is cdn-g<pid>-<n>-<location>; stale ones are removed
_STALE = re.compile(rf"^{NS_PREFIX}(\d+)-")
READY_TIMEOUT = 30.0
RELAY_CHUNK = 64 * 1024
RELAY_QUEUE = 64  # chunks held per direction (4 MiB): a slow reader stops the relay reading


# -- the delay relay --------------------------------------------------------------------------------
class DelayRelay:
    """A TCP relay that delivers every chunk `delay` seconds after it arrived, both ways.

    `handshake`: a new connection's first bytes toward the target wait until 1.5 round trips
    after the accept, the time the first data takes over a real link (SYN, SYN-ACK, data).
    `delay` may be changed while connections are open: later chunks take the new one.
    """

    def __init__(
        self, listen: tuple[str, int], target: tuple[str, int], delay: float, *, handshake: bool = True
    ) -> None:
        self.listen, self.target, self.delay, self.handshake = listen, target, delay, handshake
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], list[asyncio.WriteTransport]] = {}

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen)

    async def close(self) -> None:
        """Stop accepting and reset open connections (aborted, not cancelled: their tasks end)."""
        if self._server is not None:
            self._server.close()
        for transports in self._connections.values():
            for transport in transports:
                transport.abort()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = transports = [writer.transport]
        accepted = asyncio.get_running_loop().time()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            transports.append(up_writer.transport)
            first = accepted + 3 * self.delay if self.handshake else 0.0
            await asyncio.gather(self._pipe(reader, up_writer, first), self._pipe(up_reader, writer, 0.0))
        except (OSError, asyncio.IncompleteReadError):
            pass  # a refused target or a reset: the other side sees a reset too
        finally:
            for transport in transports:
                transport.abort()
            del self._connections[task]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, not_before: float) -> None:
        """Copy one direction, each chunk leaving `delay` after it came (never before `not_before`)."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(RELAY_QUEUE)
        sender = asyncio.create_task(_deliver(line, writer))
        try:
            while not sender.done():
                chunk = await reader.read(RELAY_CHUNK)
                await line.put((max(loop.time() + self.delay, not_before), chunk))
                if not chunk:
                    break
            await sender
        finally:
            sender.cancel()


async def _deliver(line: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due, chunk = await line.get()
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        if not chunk:  # the sender finished: pass the half-close on
            if writer.can_write_eof():
                writer.write_eof()
            return
        writer.write(chunk)
        await writer.drain()


# -- namespaces, links and processes ------------------------------------------------------------
def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def netns_available() -> str | None:
    """Why namespaces cannot be built here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    try:
        done = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` is not available: {exc}"
    return None if done.returncode == 0 else f"`ip netns list` failed: {done.stderr.decode().strip()}"


def _namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _remove_namespace(ns: str) -> None:
    """Kill what still runs in `ns` (only ours live there), then delete it and its links."""
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10, check=False)
    for pid in done.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


def remove_stale_namespaces() -> list[str]:
    """Delete geography namespaces left by processes that no longer run (a killed test run)."""
    removed = []
    for ns in _namespaces():
        match = _STALE.match(ns)
        if match and not _alive(int(match.group(1))):
            _remove_namespace(ns)
            removed.append(ns)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SEQUENCE = iter(range(1, 1_000_000))


def _log_file(path: Path) -> BinaryIO:
    return path.open("wb")


class Geography:
    """The topology built as namespaces and veth links; an async context manager that removes
    everything it made (processes first, then namespaces, which take their links along)."""

    def __init__(self, topology: Topology, workdir: Path) -> None:
        self.topology = topology
        self.workdir = workdir
        self.prefix = f"{NS_PREFIX}{os.getpid()}-{next(_SEQUENCE)}-"
        self._addresses: dict[tuple[str, str], str] = {}
        self._processes: list[asyncio.subprocess.Process] = []
        self._made: list[str] = []

    def namespace(self, location: str) -> str:
        return self.prefix + location

    def address(self, of: str, toward: str) -> str:
        """The address `of` has on its link to `toward`: what `toward` connects to."""
        return self._addresses[of, toward]

    async def __aenter__(self) -> Geography:
        try:
            await asyncio.to_thread(self._build)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _build(self) -> None:
        remove_stale_namespaces()
        for loc in self.topology.locations:
            ns = self.namespace(loc.name)
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        for i, link in enumerate(self.topology.links):
            self._build_link(i, link)

    def _build_link(self, i: int, link: Link) -> None:
        ends = ((link.a, link.b, f"10.99.{i}.1"), (link.b, link.a, f"10.99.{i}.2"))
        dev = {loc: f"v{i}-{peer}" for loc, peer, _ in ends}
        _ip(
            "link",
            "add",
            dev[link.a],
            "netns",
            self.namespace(link.a),
            "type",
            "veth",
            "peer",
            "name",
            dev[link.b],
            "netns",
            self.namespace(link.b),
        )
        for loc, peer, address in ends:
            ns = self.namespace(loc)
            _ip("-n", ns, "addr", "add", f"{address}/30", "dev", dev[loc])
            _ip("-n", ns, "link", "set", dev[loc], "up")
            self._addresses[loc, peer] = address
            if link.rate_mbit:
                rate_bytes = link.rate_mbit * 1e6 / 8
                burst = max(64 * 1024, int(rate_bytes / 250))  # >= one GSO super-packet
                subprocess.run(
                    [
                        "tc",
                        "-n",
                        ns,
                        "qdisc",
                        "add",
                        "dev",
                        dev[loc],
                        "root",
                        "tbf",
                        "rate",
                        f"{link.rate_mbit}mbit",
                        "burst",
                        str(burst),
                        "latency",
                        "100ms",
                    ],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )

    async def spawn(self, location: str, argv: Sequence[str], what: str) -> asyncio.subprocess.Process:
        """Start `python -m ...argv` in `location`'s namespace; return once it prints "ready"."""
        log = _log_file(self.workdir / f"{what.replace(' ', '-')}.log")
        with log:
            proc = await asyncio.create_subprocess_exec(
                "ip",
                "netns",
                "exec",
                self.namespace(location),
                sys.executable,
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self._processes.append(proc)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                while not (line := await proc.stdout.readline()).startswith(b"ready"):
                    if not line:
                        raise OSError(f"{what} exited before it was ready; see {log.name}")
        except TimeoutError:
            raise OSError(f"{what} was not ready within {READY_TIMEOUT:.0f} s; see {log.name}") from None
        return proc

    async def run(self, location: str, argv: Sequence[str], time_limit: float) -> str:
        """Run `python -m ...argv` to its end in `location`'s namespace; its standard output."""
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            self.namespace(location),
            sys.executable,
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._processes.append(proc)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), time_limit)
        except TimeoutError:
            raise OSError(f"{' '.join(argv)} took more than {time_limit:.0f} s") from None
        if proc.returncode != 0:
            raise OSError(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode()[-2000:]}")
        return out.decode()

    async def close(self) -> None:
        for proc in self._processes:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._processes:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        for ns in reversed(self._made):
            await asyncio.to_thread(_remove_namespace, ns)
        self._made.clear()
