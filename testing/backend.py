"""What an introspector needs from the mode it runs in (in-process LocalEnv, or Ray): where the
modifiers are written, an instance's status, and a wait that lets time skip."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..bindings.pending import Pending
from ..bindings.workflow import Workflow
from ..runtime.model import StatusInfo, WorkflowEntrypoint
from ..runtime.options import HIBERNATE_AFTER, WorkflowOptions
from ..storage.instances import InstanceStore


class NotYet:
    """What a probe returns to keep waiting."""

    def __repr__(self) -> str:
        return "NOT_YET"


NOT_YET = NotYet()

Probe = Callable[[], Any]
"""Called repeatedly by `Backend.poll`: returns the wait's value, NOT_YET, or raises."""


class Backend(Protocol):
    def store(self, workflow: str) -> InstanceStore:
        """The workflow's instances in the storage the instances run on (modifiers go there)."""
        ...

    def status(self, workflow: Workflow, iid: str) -> StatusInfo | None:
        """The instance's status with its steps; None while it does not exist. Called by
        probes, wherever `poll` runs them."""
        ...

    def poll(self, probe: Probe, timeout: float | None) -> Pending[Any]:
        """Run `probe` until it returns something else than NOT_YET (or raises), letting the
        instances run, and skipping time when every instance waits on it (if the mode skips).
        WaitTimeoutError after `timeout` real seconds."""
        ...


class Binds(abc.ABC):
    """The one `workflow(...)` signature of LocalEnv and RayEnv: each env says how it binds."""

    def workflow(
        self,
        cls: type[WorkflowEntrypoint],
        name: str | None = None,
        *,
        concurrency: int = 4,
        env: Mapping[str, Any] | None = None,
        hibernate_after: float = HIBERNATE_AFTER,
        schedules: list[str] | None = None,
    ) -> Workflow:
        """A binding of `cls` in this env, like raydo.workflow(...). Pass the bindings its run()
        uses as `self.env` in `env` (make them with this method too). Another binding of the
        same name shares the first one's workers and options, and runs `cls` from now on.
        `schedules`: cron expressions run on the env's clock, as the namespace actor runs them
        (runtime/schedules.py: same ticks, same instance ids, `event.schedule`); advance time to
        see their instances appear."""
        options = WorkflowOptions(
            concurrency=concurrency,
            env=env or {},
            hibernate_after=hibernate_after,
            schedules=None if schedules is None else tuple(schedules),
        )
        return self._bind(cls, name, options)

    @abc.abstractmethod
    def _bind(
        self, cls: type[WorkflowEntrypoint], name: str | None, options: WorkflowOptions
    ) -> Workflow:
        """Bind `cls` with these options in this env (LocalEnv: in-process; RayEnv: Ray)."""
