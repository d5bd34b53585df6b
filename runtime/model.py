"""The types a workflow author meets: the entrypoint, the event, step context, statuses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from ..errors import StepCancelledError
from ..storage import codec
from ..storage.records import InstanceStatus, StepState
from .rules import StepConfig

if TYPE_CHECKING:
    from .step import WorkflowStep

__all__ = [
    "Env",
    "ErrorInfo",
    "InstanceStatus",
    "ReceivedEvent",
    "RollbackInfo",
    "StatusInfo",
    "StepContext",
    "StepIdentity",
    "StepInfo",
    "StepState",
    "WorkflowEntrypoint",
    "WorkflowEvent",
]


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    message: str


REDACTED = "<redacted>"
"""What status() and every view built on it show for the output of a step run with
`sensitive=True`."""


class RollbackInfo(BaseModel):
    """`status().rollback`: how the rollback handlers went (runtime/rollback.py)."""

    model_config = ConfigDict(frozen=True)
    outcome: str
    """"running" (a terminate with rollback is under way), "completed" or "failed"."""
    error: ErrorInfo | None = None
    """The first handler error that remained after its retries, when outcome is "failed"."""


class StatusInfo(BaseModel):
    """What `instance.status()` returns."""

    model_config = ConfigDict(frozen=True)
    id: str
    workflow: str
    status: InstanceStatus
    output: Any = None
    error: ErrorInfo | None = None
    created_at: datetime | None = None
    """None when it is not known: an instance homed on a node that cannot be reached now
    (status `unknown`)."""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    wake_at: datetime | None = None
    code: str | None = None
    """Fingerprint of the workflow class the instance's last activation ran (see the binding's
    `code`): after a class is redefined, new activations run the new code."""
    steps: list[StepInfo] = []
    rollback: RollbackInfo | None = None
    """Set once rollback handlers ran (or run) for this instance; None when it had none."""

    def _repr_html_(self) -> str:
        """A notebook shows a status as its summary and step table."""
        from .report import status_html  # report renders StatusInfo: imported when used

        return status_html(self)


class StepInfo(BaseModel):
    """One step in `status().steps`, in the order the steps first ran."""

    model_config = ConfigDict(frozen=True)
    name: str
    count: int
    type: str  # "do" | "sleep" | "waitForEvent" | "patch" | "rollback"
    state: StepState
    attempts: int
    output: Any = None
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    until: datetime | None = None
    event_type: str | None = None  # the type a waitForEvent step waits for


StatusInfo.model_rebuild()


P = TypeVar("P", default=Any)
"""The params type of a workflow: `WorkflowEntrypoint[Order]` (a pydantic model) makes create()
validate params against `Order` and `event.payload` an `Order` (runtime/params.py)."""


@dataclass(frozen=True)
class WorkflowEvent(Generic[P]):
    """What `run` receives: the create params as `payload`, and where it came from."""

    payload: P
    timestamp: datetime
    instance_id: str
    workflow_name: str
    schedule: dict[str, Any] | None = None
    """For an instance a cron schedule created: {"cron": the expression, "scheduled_time": the
    tick it fired for (datetime, UTC)}; None for every other instance."""


@dataclass(frozen=True)
class ReceivedEvent:
    """What `step.wait_for_event` returns. Storable as a step result or output (as Cloudflare
    stores `{type, payload, timestamp}`), and read back as a ReceivedEvent."""

    type: str
    payload: Any
    timestamp: datetime


codec.register_record_type(
    "raydo.ReceivedEvent",
    ReceivedEvent,
    lambda ev: {"type": ev.type, "payload": ev.payload, "timestamp": ev.timestamp},
    lambda fields: ReceivedEvent(fields["type"], fields["payload"], fields["timestamp"]),
)


@dataclass(frozen=True)
class StepIdentity:
    name: str
    count: int


@dataclass(frozen=True)
class StepContext:
    """Passed to a step function that takes one argument."""

    step: StepIdentity
    attempt: int
    config: StepConfig
    _abandoned: list[bool] = field(default_factory=lambda: [False], repr=False, compare=False)
    _emit: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)
    # A one-item list, not a threading.Event: set once by the loop, read by the step's thread
    # (single reads and writes are atomic under the GIL), at no cost on the path of every step.

    @property
    def cancelled(self) -> bool:
        """True once this attempt's result can no longer be used: the instance was terminated,
        restarted or deleted, or the attempt timed out. A sync step runs in a thread that cannot
        be killed: a long one should check this (or call `check_cancelled`) and stop early."""
        return self._abandoned[0]

    def check_cancelled(self) -> None:
        """Raise StepCancelledError if `cancelled`."""
        if self._abandoned[0]:
            raise StepCancelledError(
                f"attempt {self.attempt} of step {self.step.name!r} was abandoned; its result "
                "would be discarded",
                step=self.step.name,
                attempt=self.attempt,
            )

    def __getstate__(self) -> dict[str, Any]:
        """A context sent to another process (a `resources=` step's Ray task) leaves its emitter
        home: it writes to this process's storage and loop. There, `emit` does nothing."""
        return {**self.__dict__, "_emit": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def emit(self, data: Any) -> None:
        """Report progress (a small JSON-like record, e.g. a percentage or an agent's tokens):
        subscribers to the instance get it live, and the history keeps it with this attempt.
        Callable from a sync step's thread. PayloadError if it cannot be stored or is over
        16 KiB encoded."""
        if self._emit is not None:
            self._emit(data)

    def abandon(self) -> None:
        """Internal: the engine marks the attempt over (any result is discarded from now on)."""
        self._abandoned[0] = True


@dataclass
class Env:
    """`self.env` inside a workflow: the bindings it was given, by attribute or by key."""

    bindings: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["bindings"][name]
        except KeyError:
            raise AttributeError(f"env has no binding {name!r}") from None

    def __getitem__(self, name: str) -> Any:
        return self.bindings[name]


class WorkflowEntrypoint(Generic[P]):
    """Subclass this and write `async def run(self, event, step)`. Subclass
    `WorkflowEntrypoint[Model]` (a pydantic model) for typed, validated params.

    Everything outside `step.*` calls may run again on replay: keep it deterministic and free of
    side effects. The class must be constructible with no arguments; `self.env` is set by raydo.
    """

    env: Env

    def __init__(self) -> None:
        self.env = Env()

    async def run(self, event: WorkflowEvent[P], step: WorkflowStep) -> Any:
        raise NotImplementedError("a workflow class must define async def run(self, event, step)")
