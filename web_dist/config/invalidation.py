"""Invalidations and purges as CloudFront models them: records, path rules, matching. Pure.

An invalidation names paths of one distribution (exact, or a prefix with a trailing `*`); a
purge names cache tags. Either may be soft (mark stale, keep the copy for stale-if-error).
Each becomes an `Event` the control plane hands to every edge of the distribution; the
record is `InProgress` until every one of those edges has applied it, then `Completed`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from web_dist.config import CACHE_TAG

EventKind = Literal["invalidation", "purge", "config"]
MAX_PATH_LENGTH = 4096
MAX_TAGS = 100
_CONTROL_CHARS = re.compile(r"[\x00-\x20\x7f]")


class InvalidRequest(ValueError):
    """An invalidation or purge the control plane refuses; the message says why."""


def check_paths(paths: Any, max_paths: int) -> tuple[str, ...]:
    """The paths of an invalidation, checked as CloudFront does, duplicates dropped."""
    if not isinstance(paths, list) or not paths:
        raise InvalidRequest("paths must be a non-empty list of paths")
    if len(paths) > max_paths:
        raise InvalidRequest(f"too many paths: {len(paths)} (at most {max_paths} in one invalidation)")
    for path in paths:
        problem = path_problem(path)
        if problem:
            raise InvalidRequest(f"invalid path {path!r}: {problem}")
    return tuple(dict.fromkeys(paths))


def path_problem(path: Any) -> str | None:
    """Why `path` is not an invalidation path, or None."""
    if not isinstance(path, str):
        return "must be a string"
    if not path.startswith("/"):
        return "must start with '/'"
    if len(path) > MAX_PATH_LENGTH:
        return f"longer than {MAX_PATH_LENGTH} characters"
    if "*" in path[:-1]:
        return "'*' is only allowed as the last character (as in /images/*)"
    if _CONTROL_CHARS.search(path):
        return "contains a space or a control character"
    return None


def check_tags(tags: Any) -> tuple[str, ...]:
    if not isinstance(tags, list) or not tags:
        raise InvalidRequest("tags must be a non-empty list of cache tags")
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"too many tags: {len(tags)} (at most {MAX_TAGS} in one purge)")
    for tag in tags:
        if not isinstance(tag, str) or not CACHE_TAG.match(tag):
            raise InvalidRequest(f"invalid tag {tag!r}: 1 to 256 characters, no spaces or commas")
    return tuple(dict.fromkeys(tags))


def path_matches(pattern: str, path: str) -> bool:
    """An invalidation path matches a decoded URL path exactly, or as a prefix before `*`."""
    return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern


@dataclass(frozen=True)
class Event:
    """What the control plane sends every edge: an invalidation, a purge or a new config."""

    id: str
    kind: EventKind
    distribution: str = ""
    paths: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    soft: bool = False
    created: float = 0.0
    config: str = field(default="", repr=False)  # TOML text, for kind "config"
    origin_edge: str | None = None  # the edge that caused it (a PUT through it) and applied it already

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "kind": self.kind,
                "distribution": self.distribution,
                "paths": list(self.paths),
                "tags": list(self.tags),
                "soft": self.soft,
                "created": self.created,
                "config": self.config,
                "origin_edge": self.origin_edge,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        raw = json.loads(text)
        return cls(
            id=str(raw["id"]),
            kind=raw["kind"],
            distribution=raw.get("distribution", ""),
            paths=tuple(raw.get("paths", ())),
            tags=tuple(raw.get("tags", ())),
            soft=bool(raw.get("soft")),
            created=float(raw.get("created", 0.0)),
            config=raw.get("config", ""),
            origin_edge=raw.get("origin_edge"),
        )


@dataclass(frozen=True)
class Invalidation:
    """An invalidation or purge with its progress: which edges must apply it, which have."""

    event: Event
    edges: tuple[str, ...]
    applied: Mapping[str, float] = field(default_factory=dict)

    @property
    def status(self) -> Literal["InProgress", "Completed"]:
        return "Completed" if all(e in self.applied for e in self.edges) else "InProgress"

    @property
    def completed_at(self) -> float | None:
        """When the last edge applied it, or None while one has not."""
        if self.status != "Completed":
            return None
        return max(self.applied.values(), default=self.event.created)

    def to_api(self) -> dict[str, Any]:
        """The JSON body the control API answers with."""
        event = self.event
        body: dict[str, Any] = {
            "id": event.id,
            "distribution": event.distribution,
            "status": self.status,
            "soft": event.soft,
            "created": event.created,
            "completed": self.completed_at,
            "edges": {e: {"applied": self.applied.get(e)} for e in self.edges},
        }
        body["paths" if event.kind == "invalidation" else "tags"] = list(event.paths or event.tags)
        return body


def applied_by(edges: Sequence[str], applied: Mapping[str, float]) -> dict[str, float]:
    """Only the applied times of edges the record waits for (others may have seen it too)."""
    return {e: applied[e] for e in edges if e in applied}


@dataclass(frozen=True)
class RedisKeys:
    """Where the control plane keeps its state in Redis, under one prefix."""

    prefix: str

    @property
    def events(self) -> str:  # the stream every edge reads
        return f"{self.prefix}:events"

    @property
    def config(self) -> str:  # the last published config (TOML text)
        return f"{self.prefix}:config"

    def record(self, event_id: str) -> str:  # the event and the edges it waits for (JSON)
        return f"{self.prefix}:inv:{event_id}"

    def applied(self, event_id: str) -> str:  # hash: edge -> applied time
        return f"{self.prefix}:applied:{event_id}"

    def cursor(self, edge: str) -> str:  # the last stream id the edge has applied
        return f"{self.prefix}:cursor:{edge}"


def resolve_token(token: str | None, token_env: str, environ: Mapping[str, str]) -> str | None:
    """The control API token: from the config, else from the named environment variable."""
    return token or environ.get(token_env) or None


ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def new_id(prefix: str) -> str:
    """An invalidation's id: the prefix (I, P, C, or E for one an edge published) and 13 letters."""
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(13))


# The Redis layout of the event log, shared by the control plane and the edges (an edge passing
# on a PUT publishes as the control API does).
STREAM_LENGTH = 100_000  # Redis: about this many events stay on the stream for edges that were down
RECORD_TTL = 30 * 86400  # Redis: seconds an invalidation's record and applied times are kept


async def publish_to_redis(client: Any, keys: RedisKeys, event: Event, edges: tuple[str, ...]) -> None:
    """Record an event (with the edges it waits for) and append it to the stream, atomically.
    The control API and an edge passing on a PUT both publish this way."""
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.record(event.id), json.dumps({"event": event.to_json(), "edges": list(edges)}), ex=RECORD_TTL)
    if event.origin_edge:
        pipe.hset(keys.applied(event.id), event.origin_edge, repr(event.created))
    pipe.hsetnx(keys.applied(event.id), "-", "0")  # so the hash exists, and expires with the record
    pipe.expire(keys.applied(event.id), RECORD_TTL)
    if event.kind == "config":
        pipe.set(keys.config, event.config)
    pipe.xadd(keys.events, {"event": event.to_json()}, maxlen=STREAM_LENGTH, approximate=True)
    await pipe.execute()
