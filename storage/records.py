"""What storage holds about an instance, as typed records, and the states they can be in.

The enum values are what is written to LMDB: renaming a member is free, changing a value is a
schema change.

Step states, per kind:

    do     running --(attempt fails, retries left)--> retrying --(delay over)--> running
           running --(attempt succeeds, or fails for good)--> done (value or error)
    sleep  pending --(until reached)--> done
    wait   pending --(event taken, or timeout)--> done (event value, or timeout error)

A `do` step found `running` on replay lost its attempt (the process died): that counts as a failed
attempt (runtime/retrying.py decides what follows).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import CorruptRecordError
from .codec import pack, unpack


class InstanceStatus(enum.StrEnum):
    """The nine statuses, with Cloudflare's exact values. `waitingForPause` and `unknown` are
    only ever reported, never stored."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    ERRORED = "errored"
    TERMINATED = "terminated"
    COMPLETE = "complete"
    WAITING = "waiting"
    WAITING_FOR_PAUSE = "waitingForPause"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({InstanceStatus.COMPLETE, InstanceStatus.ERRORED, InstanceStatus.TERMINATED})


class StepKind(enum.StrEnum):
    DO = "do"
    SLEEP = "sleep"
    WAIT = "wait"
    PATCH = "patch"  # a step.patched() answer (count 0), not a step: runtime/replay.py

    @property
    def display(self) -> str:
        """The type name Cloudflare shows: step / sleep / waitForEvent (and raydo's patch)."""
        return {"do": "do", "sleep": "sleep", "wait": "waitForEvent", "patch": "patch"}[self.value]


class StepState(enum.StrEnum):
    RUNNING = "running"
    RETRYING = "retrying"
    PENDING = "pending"
    DONE = "done"


@dataclass
class InstanceRecord:
    id: str
    workflow: str
    status: InstanceStatus = InstanceStatus.QUEUED
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    error: dict[str, str] | None = None
    wake_at: float | None = None
    waiting_types: list[str] = field(default_factory=list)
    paused_at: float | None = None
    has_output: bool = False
    lost: int = 0  # activations in a row whose process died
    code: str | None = None  # fingerprint of the workflow class its last activation ran
    rollback: dict[str, Any] | None = None
    """{outcome, error} of its rollback (runtime/rollback.py); {"outcome": "running",
    "terminate": True} while a terminate with rollback is under way."""
    # seconds a finished instance is kept: {"success": s, "error": s} (runtime/retention.py)
    retention: dict[str, float] | None = None
    # the cron tick that created it: {"cron": str, "scheduled_time": float} (runtime/schedules.py)
    schedule: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.status = InstanceStatus(self.status)

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def expires_at(self) -> float | None:
        """When a finished instance is past its retention (complete: success retention;
        errored, terminated: error retention), or None while it is kept."""
        status = InstanceStatus(self.status)  # callers may have set a plain str
        if not status.finished or self.retention is None or self.ended_at is None:
            return None
        keep = self.retention.get("success" if status is InstanceStatus.COMPLETE else "error")
        return None if keep is None else self.ended_at + keep

    @property
    def timer_due(self) -> float | None:
        """What the storage's timer index holds for this record: its wake-up while it is
        unfinished, its expiry once finished (the namespace deletes it then)."""
        return self.expires_at if InstanceStatus(self.status).finished else self.wake_at


@dataclass
class StepRecord:
    kind: StepKind
    seq: int
    state: StepState = StepState.RUNNING
    attempts: int = 0
    config: dict[str, Any] | None = None
    value: bytes | None = None
    error: dict[str, Any] | None = None
    until: float | None = None  # sleep end, retry time or event-wait deadline
    type: str | None = None  # event type of a wait
    started_at: float | None = None
    ended_at: float | None = None
    blob: str | None = None  # a value over the record limit lives in this file (blobs.py)
    attempt_at: float | None = None  # when its latest attempt started

    def __post_init__(self) -> None:
        self.kind, self.state = StepKind(self.kind), StepState(self.state)

    def copy(self) -> StepRecord:
        """A shallow copy (dataclasses.replace, without its per-field __init__: the step path
        takes one on every attempt)."""
        new = object.__new__(StepRecord)
        new.__dict__.update(self.__dict__)
        return new


StepWrites = list[tuple[tuple[str, int], StepRecord]]
"""Step records to write in one transaction, in order: ((name, count), record)."""


def lost_attempt(attempt: int) -> dict[str, Any]:
    """The error of an attempt whose process stopped before it ended."""
    return {
        "name": "AttemptLostError",
        "message": f"attempt {attempt} did not finish: the process running it stopped",
        "retryable": True,
    }


@dataclass(frozen=True)
class EventRecord:
    """An event: buffered for an instance, or taken by a wait step (then its value)."""

    type: str
    payload: bytes  # the user's payload, encoded by codec.encode
    timestamp: float


class Fenced(Exception):
    """A write carried a lease that is no longer the instance's current one: the activation that
    made it was taken away (terminated, restarted, deleted) and must stop."""


_INSTANCE_FIELDS = tuple(f.name for f in dataclasses.fields(InstanceRecord))
_STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepRecord))

R = TypeVar("R", InstanceRecord, StepRecord)


def _pack(rec: InstanceRecord | StepRecord, fields: tuple[str, ...]) -> bytes:
    # StrEnum members are str: msgpack writes their value.
    return pack({name: getattr(rec, name) for name in fields})


def _unpack(cls: type[R], fields: tuple[str, ...], raw: bytes, what: str) -> R:
    # Unknown fields are ignored so a record written by a newer minor version still reads.
    data = unpack(raw, what)
    try:
        return cls(**{k: v for k, v in data.items() if k in fields})
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(f"{what} is corrupt: {exc}", what=what) from None


def pack_instance(rec: InstanceRecord) -> bytes:
    return _pack(rec, _INSTANCE_FIELDS)


def unpack_instance(raw: bytes, what: str) -> InstanceRecord:
    return _unpack(InstanceRecord, _INSTANCE_FIELDS, raw, what)


def pack_step(rec: StepRecord) -> bytes:
    return _pack(rec, _STEP_FIELDS)


def unpack_step(raw: bytes, what: str) -> StepRecord:
    return _unpack(StepRecord, _STEP_FIELDS, raw, what)


# An event is stored with one-letter keys (it is written once per event): p payload, t time,
# y type. Only this module reads or writes that shape.


def pack_event(event: EventRecord) -> bytes:
    return pack({"p": event.payload, "t": event.timestamp, "y": event.type})


def unpack_event(raw: bytes, what: str, type_: str | None = None) -> EventRecord:
    """`type_` is given for a buffered event, whose type is in its key rather than its body."""
    body = unpack(raw, what)
    try:
        return EventRecord(str(body.get("y", type_)), body["p"], float(body["t"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecordError(f"{what} is corrupt: {exc}", what=what) from None
