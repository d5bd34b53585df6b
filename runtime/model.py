"""The types a workflow author meets: the entrypoint, the event, step context, statuses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from .rules import StepConfig

if TYPE_CHECKING:
    from .step import WorkflowStep


class InstanceStatus(enum.StrEnum):
    """The nine statuses, with Cloudflare's exact values."""

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
        return self in (InstanceStatus.COMPLETE, InstanceStatus.ERRORED, InstanceStatus.TERMINATED)


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    message: str


class StatusInfo(BaseModel):
    """What `instance.status()` returns."""

    model_config = ConfigDict(frozen=True)
    id: str
    workflow: str
    status: InstanceStatus
    output: Any = None
    error: ErrorInfo | None = None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    wake_at: datetime | None = None
    steps: list[StepInfo] = []


class StepInfo(BaseModel):
    """One step in `status().steps`, in the order the steps first ran."""

    model_config = ConfigDict(frozen=True)
    name: str
    count: int
    type: str  # "do" | "sleep" | "waitForEvent"
    state: str
    attempts: int
    output: Any = None
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    until: datetime | None = None
    event_type: str | None = None  # the type a waitForEvent step waits for


StatusInfo.model_rebuild()


@dataclass(frozen=True)
class WorkflowEvent:
    """What `run` receives: the create params as `payload`, and where it came from."""

    payload: Any
    timestamp: datetime
    instance_id: str
    workflow_name: str


@dataclass(frozen=True)
class ReceivedEvent:
    """What `step.wait_for_event` returns."""

    type: str
    payload: Any
    timestamp: datetime


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


class WorkflowEntrypoint:
    """Subclass this and write `async def run(self, event, step)`.

    Everything outside `step.*` calls may run again on replay: keep it deterministic and free of
    side effects. The class must be constructible with no arguments; `self.env` is set by raydo.
    """

    env: Env

    def __init__(self) -> None:
        self.env = Env()

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        raise NotImplementedError("a workflow class must define async def run(self, event, step)")
