"""An instance's durable history: one record per event, in the instance's private namespace
(`N wf id H seq`), appended in the same write transaction as the state change it records.

The events are derived here from the change itself (the record before and after the write), so
the runtime's write paths stay as they were: a write that changes nothing an observer cares about
appends nothing, and a replay (which answers finished steps from storage without writing them)
appends nothing either. That is what makes the history after a crash the same as before it.

Event types (Cloudflare's, plus `step_emitted` for `ctx.emit`):

    workflow_queued  workflow_started  workflow_running  workflow_paused  workflow_waiting
    workflow_completed  workflow_errored  workflow_terminated
    step_started  step_completed  step_errored
    attempt_started  attempt_completed  attempt_errored
    sleep_started  sleep_completed  wait_started  wait_completed  wait_timed_out
    step_emitted

A stored event is a small msgpack map: `type`, `at` (epoch seconds) and, as they apply, `step`,
`count`, `attempt`, `error` ({name, message}), `output` (a preview), `until`, `event_type`,
`wake_at`, `data` (what `ctx.emit` gave, codec-encoded). Its sequence number is its cursor.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

from . import keys
from .codec import decode, encode, pack, unpack
from .kv import Reader, Writer
from .records import (
    InstanceRecord,
    InstanceStatus,
    StepKind,
    StepRecord,
    StepState,
    lost_attempt,
)

Event = dict[str, Any]

WORKFLOW_TYPES = (
    "workflow_queued",
    "workflow_started",
    "workflow_running",
    "workflow_paused",
    "workflow_waiting",
    "workflow_completed",
    "workflow_errored",
    "workflow_terminated",
)
STEP_TYPES = (
    "step_started",
    "step_completed",
    "step_errored",
    "attempt_started",
    "attempt_completed",
    "attempt_errored",
    "sleep_started",
    "sleep_completed",
    "wait_started",
    "wait_completed",
    "wait_timed_out",
    "step_emitted",
)
EVENT_TYPES = frozenset(WORKFLOW_TYPES + STEP_TYPES)
TERMINAL_TYPES = frozenset({"workflow_completed", "workflow_errored", "workflow_terminated"})

PREVIEW_CHARS = 200
# Larger values are not decoded for a preview: the step path must not pay for a big output.
_PREVIEW_MAX_BYTES = 64 << 10
_PLAIN_REPR_BYTES = 256
_MESSAGE_CHARS = 1000
_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple = 3, 8, 8, 8
_repr.maxstring, _repr.maxother = 120, 80

REDACTED = "<redacted>"
_REDACTED_DATA = encode(REDACTED)


def output_preview(raw: bytes | None, config: Mapping[str, Any] | None = None) -> str | None:
    """THE one place an output becomes text in an event (at most PREVIEW_CHARS). `config` is the
    step's stored config, so a step marked sensitive can be redacted here, and only here."""
    if raw is None:
        return None
    if config and config.get("sensitive"):
        return REDACTED  # a step declared with sensitive=True (the same text as every view)
    if len(raw) > _PREVIEW_MAX_BYTES:
        return f"<{len(raw)} bytes>"
    try:
        value = decode(raw)
        # A small value's plain repr is short anyway, and far cheaper than reprlib's.
        text = repr(value) if len(raw) <= _PLAIN_REPR_BYTES else _repr.repr(value)
    except Exception:
        return f"<{len(raw)} bytes>"
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


def _error(error: Mapping[str, Any] | None) -> dict[str, str] | None:
    if error is None:
        return None
    return {"name": str(error.get("name")), "message": str(error.get("message"))[:_MESSAGE_CHARS]}


# -- appending ----------------------------------------------------------------------------------


def append(w: Writer, wf: str, iid: str, events: list[Event]) -> None:
    """Append events (in order) inside the caller's write transaction."""
    if not events:
        return
    seq = _next_seq(w, wf, iid)
    for event in events:
        w.put(keys.history_event(wf, iid, seq), pack(event))
        seq += 1


def _next_seq(r: Reader, wf: str, iid: str) -> int:
    """The next event's sequence number: one past the newest event's (history is appended to,
    and deleted only with its instance). Read off the last key rather than kept in a counter of
    its own: a counter key sits apart from the events' page and cost a step's commit a page
    write more."""
    for key, _ in r.scan_back(keys.history_of(wf, iid)):
        return keys.history_seq_of(key) + 1
    return 0


def instance_events(
    old: InstanceRecord | None, new: InstanceRecord, now: float, output: bytes | None
) -> list[Event]:
    """What a change of the instance record tells an observer: a change of status, or none."""
    if old is not None and old.status is new.status:
        return []
    status = new.status
    if status is InstanceStatus.QUEUED:
        return [{"type": "workflow_queued", "at": new.created_at if old is None else now}]
    if status is InstanceStatus.RUNNING:
        first = old is None or old.status is InstanceStatus.QUEUED
        return [{"type": "workflow_started" if first else "workflow_running", "at": now}]
    if status is InstanceStatus.WAITING:
        event = {"type": "workflow_waiting", "at": now, "wake_at": new.wake_at}
        return [{**event, "event_types": list(new.waiting_types)}]
    if status is InstanceStatus.PAUSED:
        return [{"type": "workflow_paused", "at": new.paused_at or now}]
    return [_finished_event(new, now, output)]


def _finished_event(new: InstanceRecord, now: float, output: bytes | None) -> Event:
    at = new.ended_at or now
    if new.status is InstanceStatus.COMPLETE:
        return {"type": "workflow_completed", "at": at, "output": output_preview(output)}
    if new.status is InstanceStatus.ERRORED:
        return {"type": "workflow_errored", "at": at, "error": _error(new.error)}
    return {"type": "workflow_terminated", "at": at}


def step_events(
    sid: tuple[str, int], old: StepRecord | None, new: StepRecord, now: float
) -> list[Event]:
    """What a change of a step record tells an observer."""
    base: Event = {"step": sid[0], "count": sid[1]}
    if new.kind is StepKind.DO:
        found = _do_events(old, new, now)
    elif new.kind is StepKind.SLEEP:
        found = _sleep_events(old, new, now)
    else:
        found = _wait_events(old, new, now)
    return [{**base, **event} for event in found]


def _do_events(old: StepRecord | None, new: StepRecord, now: float) -> list[Event]:
    out: list[Event] = []
    if old is None:
        out.append({"type": "step_started", "at": new.started_at or now})
    before = 0 if old is None else old.attempts
    if old is not None and old.state is StepState.RUNNING and new.attempts > before:
        # The attempt found running on replay died with its process.
        lost = {"type": "attempt_errored", "at": now, "attempt": before}
        # the next attempt's record holds the loss while it runs, not once it has ended
        error = new.error if new.state is StepState.RUNNING and new.error else None
        out.append({**lost, "error": _error(error or lost_attempt(before))})
    started = new.attempts > before  # its start may be written only with its end (inflight.py)
    if started:
        at = new.attempt_at or now
        out.append({"type": "attempt_started", "at": at, "attempt": new.attempts})
    if new.state is not StepState.RUNNING and (
        started or old is None or old.state is StepState.RUNNING
    ):
        out.extend(_attempt_end(new, now))
    return out


def _attempt_end(new: StepRecord, now: float) -> list[Event]:
    at, attempt = new.ended_at or now, new.attempts
    if new.error is None:
        output = output_preview(new.value, new.config)
        return [
            {"type": "attempt_completed", "at": at, "attempt": attempt},
            {"type": "step_completed", "at": at, "output": output},
        ]
    failed: Event = {"type": "attempt_errored", "at": at, "attempt": attempt}
    failed["error"] = _error(new.error)
    if new.state is StepState.RETRYING:
        return [{**failed, "retry_at": new.until}]
    return [failed, {"type": "step_errored", "at": at, "error": _error(new.error)}]


def _sleep_events(old: StepRecord | None, new: StepRecord, now: float) -> list[Event]:
    out: list[Event] = []
    if old is None:
        out.append({"type": "sleep_started", "at": new.started_at or now, "until": new.until})
    if new.state is StepState.DONE and (old is None or old.state is not StepState.DONE):
        out.append({"type": "sleep_completed", "at": new.ended_at or now})
    return out


def _wait_events(old: StepRecord | None, new: StepRecord, now: float) -> list[Event]:
    out: list[Event] = []
    if old is None:
        started = {"type": "wait_started", "at": new.started_at or now, "until": new.until}
        out.append({**started, "event_type": new.type})
    if new.state is StepState.DONE and (old is None or old.state is not StepState.DONE):
        if new.error is not None:
            out.append({"type": "wait_timed_out", "at": new.ended_at or now})
        else:
            out.append({"type": "wait_completed", "at": now, "event_type": new.type})
    return out


def emitted_events(
    sid: tuple[str, int],
    attempt: int,
    items: list[tuple[float, bytes]],
    config: Mapping[str, Any] | None = None,
) -> list[Event]:
    """`ctx.emit` records of one attempt: (time, codec-encoded data). A sensitive step's data
    is redacted here, before it is stored, as its output's preview is (`output_preview`)."""
    base = {"type": "step_emitted", "step": sid[0], "count": sid[1], "attempt": attempt}
    if config and config.get("sensitive"):
        return [{**base, "at": at, "data": _REDACTED_DATA} for at, _ in items]
    return [{**base, "at": at, "data": data} for at, data in items]


# -- reading ------------------------------------------------------------------------------------


def read(r: Reader, wf: str, iid: str, after: int | None, limit: int) -> list[Event]:
    """Up to `limit` events after cursor `after` (None: from the first), each with its `cursor`."""
    prefix = keys.history_of(wf, iid)
    start = keys.history_event(wf, iid, 0 if after is None else after + 1)
    out: list[Event] = []
    for key, raw in r.scan(prefix, start):
        event = unpack(raw, f"history event of instance {iid!r}")
        event["cursor"] = keys.history_seq_of(key)
        out.append(event)
        if len(out) >= limit:
            break
    return out
