"""An instance's history as users see it: `InstanceEvent`s, `subscribe()` and the per-attempt
view (`attempts_of`) that describe, the CLI, the HTTP API and the dashboard show.

A subscriber long-polls the namespace actor (runtime/stream.py), which answers from the durable
history in storage: it survives instance-actor deaths, hibernation and namespace-actor restarts
(a call that fails while the actor restarts is made again from the same cursor, so nothing is
lost or repeated).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import ClusterError, InvalidInputError
from ..runtime.model import ErrorInfo
from ..runtime.rules import show
from ..runtime.stream import Batch
from ..storage.codec import decode
from ..storage.history import EVENT_TYPES, Event
from .pending import Pending, submit

LONG_POLL = 10.0  # seconds one subscriber call waits for news before asking again
RECONNECTS = 30  # failed calls in a row (an actor restarting) before subscribe gives up
_RECONNECT_MAX = 2.0


class InstanceEvent(BaseModel):
    """One event of an instance's history. `cursor` resumes a subscription right after it."""

    model_config = ConfigDict(frozen=True)
    cursor: int
    type: str
    at: datetime
    step: str | None = None
    count: int | None = None
    attempt: int | None = None
    error: ErrorInfo | None = None
    output: str | None = None  # a preview of at most 200 characters
    until: datetime | None = None  # a sleep's end, a wait's timeout
    retry_at: datetime | None = None
    wake_at: datetime | None = None
    event_type: str | None = None
    event_types: list[str] | None = None
    data: Any = None  # what ctx.emit gave (step_emitted)


class AttemptInfo(BaseModel):
    """One attempt of a do-step, from the history."""

    model_config = ConfigDict(frozen=True)
    step: str
    count: int
    attempt: int
    started_at: datetime | None = None
    ended_at: datetime | None = None
    success: bool | None = None  # None: still running (or lost without a trace)
    error: ErrorInfo | None = None
    retry_at: datetime | None = None
    emitted: int = 0
    last_emitted: Any = None


def to_event(raw: Event) -> InstanceEvent:
    fields = dict(raw)
    for name in ("at", "until", "retry_at", "wake_at"):
        if fields.get(name) is not None:
            fields[name] = datetime.fromtimestamp(fields[name], tz=UTC)
    if fields.get("data") is not None:
        fields["data"] = decode(fields["data"])
    return InstanceEvent(**fields)


def check_cursor(cursor: Any) -> int | None:
    """None (from the start), an event's cursor, or its decimal string (an SSE Last-Event-ID)."""
    if isinstance(cursor, str) and cursor.isdigit() and len(cursor) <= 20:
        cursor = int(cursor)
    if cursor is None or (isinstance(cursor, int) and not isinstance(cursor, bool) and cursor >= 0):
        return cursor
    raise InvalidInputError(
        f"cursor {show(cursor)} is invalid; give None or an event's cursor (an int >= 0)",
        value=show(cursor),
    )


def check_filter(types: Iterable[str] | str | None) -> frozenset[str] | None:
    """None (every event) or event types; a prefix ending in "_" stands for every type it
    starts, e.g. "step_" or "attempt_"."""
    if types is None:
        return None
    given = [types] if isinstance(types, str) else types
    chosen: set[str] = set()
    for item in given if isinstance(given, (list, tuple, set, frozenset)) else [given]:
        matches = _types_named(item)
        if not matches:
            raise InvalidInputError(
                f"event filter {show(item)} names no event type; the types are "
                f"{', '.join(sorted(EVENT_TYPES))} (or a prefix such as 'step_')",
                value=show(item),
            )
        chosen |= matches
    return frozenset(chosen)


def _types_named(item: Any) -> set[str]:
    if not isinstance(item, str) or not item:
        return set()
    if item.endswith("_"):
        return {t for t in EVENT_TYPES if t.startswith(item)}
    return {item} & EVENT_TYPES


async def poll_once(actor: Any, iid: str, after: int | None, types: Any, wait: float) -> Batch:
    batch: Batch = await Pending(submit(actor.history.remote, iid, after, types, wait))
    return batch


async def subscribe(
    binding: Any, iid: str, cursor: int | None, types: frozenset[str] | None
) -> AsyncIterator[InstanceEvent]:
    """Replay from `cursor`, then follow live, until the terminal event."""
    failures = 0
    while True:
        try:
            batch = await poll_once(binding.actor, iid, cursor, types, LONG_POLL)
        except ClusterError:
            failures += 1
            if failures > RECONNECTS:
                raise
            await asyncio.sleep(min(0.05 * 2**failures, _RECONNECT_MAX))
            continue
        failures = 0
        for raw in batch.events:
            yield to_event(raw)
        cursor = batch.cursor
        if batch.ended:
            return


async def read_history(
    binding: Any, iid: str, cursor: int | None, types: frozenset[str] | None, limit: int
) -> list[InstanceEvent]:
    """What the history holds now after `cursor` (at most `limit` events), without waiting."""
    out: list[InstanceEvent] = []
    while len(out) < limit:
        batch = await poll_once(binding.actor, iid, cursor, types, 0.0)
        out.extend(to_event(raw) for raw in batch.events)
        if batch.ended or batch.cursor == cursor:
            break
        cursor = batch.cursor
    return out[:limit]


def attempts_of(events: Iterable[InstanceEvent]) -> list[AttemptInfo]:
    """Every attempt of every do-step, in the order they started, with its error and emits."""
    found: dict[tuple[str, int, int], dict[str, Any]] = {}
    for ev in events:
        if ev.attempt is None or ev.step is None or ev.count is None:
            continue
        key = (ev.step, ev.count, ev.attempt)
        row = found.setdefault(key, {"step": ev.step, "count": ev.count, "attempt": ev.attempt})
        _apply_attempt_event(row, ev)
    return [AttemptInfo(**row) for row in found.values()]


def _apply_attempt_event(row: dict[str, Any], ev: InstanceEvent) -> None:
    if ev.type == "attempt_started":
        row["started_at"] = ev.at
    elif ev.type == "attempt_completed":
        row["ended_at"], row["success"] = ev.at, True
    elif ev.type == "attempt_errored":
        row["ended_at"], row["success"], row["error"] = ev.at, False, ev.error
        row["retry_at"] = ev.retry_at
    elif ev.type == "step_emitted":
        row["emitted"] = row.get("emitted", 0) + 1
        row["last_emitted"] = ev.data
