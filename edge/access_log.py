"""The edge's access log: one line per request, written in batches.

A logging.LogRecord per request costs about as much as serving a cache hit, so lines are
formatted as requests end (each with its own timestamp) and handed to the `cdn.access` logger
a batch at a time: every `interval` seconds, when `max_lines` wait, and at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time

logger = logging.getLogger("cdn.access")


class AccessLog:
    def __init__(self, *, interval: float = 0.25, max_lines: int = 1024) -> None:
        self.interval = interval
        self.max_lines = max_lines
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""
        self._task: asyncio.Task[None] | None = None

    def write(self, line: str) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # format the date once a second, not once a request
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._lines.append(f"{self._stamp}.{int(now * 1000) % 1000:03d}Z {line}")
        if len(self._lines) >= self.max_lines:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            logger.info("%s", "\n".join(lines))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="access-log")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()
