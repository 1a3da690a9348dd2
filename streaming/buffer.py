"""The playback buffer of one virtual viewer: what is downloaded ahead of the playhead."""

from __future__ import annotations

EPSILON = 1e-9  # seconds: (t + left) - t is not always `left` in floating point


class PlaybackBuffer:
    """Media buffered ahead of the playhead, and the stalls when it runs dry. Pure: times in.

    Play starts with the first media appended; a stall begins the moment the playhead reaches
    the end of what was downloaded (worked out afterwards, so nobody needs to wake up then)
    and ends when more media arrives.
    """

    def __init__(self) -> None:
        self.media_end = 0.0  # seconds of media downloaded
        self.position = 0.0  # playhead, as of `since`
        self.since: float | None = None
        self.started_at: float | None = None
        self.stall_started: float | None = None
        self.stalls = 0
        self.stall_seconds = 0.0
        self.finished_at: float | None = None  # the stream ended: play stops here, no stall

    def finish(self, at: float) -> None:
        """The stream ended and everything is downloaded: playback stops at `at`."""
        self.finished_at = at

    def _clamp(self, now: float) -> float:
        return now if self.finished_at is None else min(now, self.finished_at)

    def advance(self, now: float) -> None:
        now = self._clamp(now)
        if self.since is None or self.stall_started is not None:
            return
        position = self.position + (now - self.since)
        # arriving just as it runs out is no stall, nor is float rounding at the stream's end
        if position > self.media_end + EPSILON:
            self.stall_started = self.since + (self.media_end - self.position)
            self.position = self.media_end
            self.stalls += 1
        else:
            self.position = position
        self.since = now

    def append(self, seconds: float, now: float) -> None:
        self.advance(now)
        self.media_end += seconds
        if self.started_at is None:
            self.started_at = self.since = now
        elif self.stall_started is not None:
            self.stall_seconds += now - self.stall_started
            self.stall_started, self.since = None, now

    def buffered(self, now: float) -> float:
        self.advance(now)
        return self.media_end - self.position

    def stalled(self, now: float) -> bool:
        self.advance(now)
        return self.stall_started is not None

    def total_stall(self, now: float) -> float:
        """Stalled seconds so far, a stall still going on included."""
        self.advance(now)
        ongoing = self._clamp(now) - self.stall_started if self.stall_started is not None else 0.0
        return self.stall_seconds + ongoing

    def watched(self, now: float) -> float:
        return 0.0 if self.started_at is None else self._clamp(now) - self.started_at
