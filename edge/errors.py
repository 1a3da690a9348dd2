"""The one place where failures become HTTP responses."""

from __future__ import annotations

from edge.upstream import UpstreamError

# kind of UpstreamError -> (status, what the viewer is told)
UPSTREAM_STATUS = {
    "connect": (502, "the origin could not be reached"),
    "timeout": (504, "the origin did not answer in time"),
    "protocol": (502, "the origin sent a broken response"),
}


class EdgeError(Exception):
    """A request the edge refuses; carries the status and message the client gets."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


def from_upstream(exc: UpstreamError) -> EdgeError:
    status, message = UPSTREAM_STATUS.get(exc.kind, (502, "origin error"))
    return EdgeError(status, f"{message} ({exc.origin})")


def error_body(status: int, message: str, edge: str) -> bytes:
    return f"{status} {message}\nserved by {edge}\n".encode()
