"""Rollbacks (sagas): `step.do(name, fn, rollback=undo, rollback_config={...})`.

When an instance fails for good (run() raises) or is terminated with `rollback=True`, the
handlers of its finished steps run in reverse start order, before the terminal status is written.
A step that failed for good takes part too, with output None (as Cloudflare documents it): it
may have done part of its work before failing. Each handler runs as a durable step of its own
(recorded under an internal name, with its own retries and timeout), so a crash mid-rollback
resumes the rollback from storage: finished handlers never run again, an interrupted one is
retried. Handlers are the live code's: a replay of run() registers them again as it meets each
step.

A handler takes one argument, a RollbackContext (Cloudflare passes `{ctx, output, error}`), or
none; it may be sync (run in a thread) or async. A handler that still fails after its retries
does not stop the others: the rollback outcome is then "failed" with the first such error.

`status().rollback` is {outcome, error}: outcome "running" (a terminate with rollback is under
way), "completed" or "failed"; None when there was nothing to roll back.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import WorkflowStepError
from ..storage.codec import decode
from ..storage.records import StepKind, StepRecord, StepState
from .model import ErrorInfo, StepContext, StepIdentity
from .replay import INTERNAL
from .rules import DEFAULT_CONFIG, RollbackFn, StepConfig

if TYPE_CHECKING:
    from .step import WorkflowStep

StepKey = tuple[str, int]
PREFIX = f"{INTERNAL}rollback{INTERNAL}"
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
TERMINATED = {"name": "Terminated", "message": "the instance was terminated with rollback"}


@dataclass(frozen=True)
class RollbackContext:
    """What a rollback handler receives."""

    ctx: StepContext
    """The context of the step being undone: ctx.step.name/.count, ctx.attempt (the attempt
    that succeeded), ctx.config."""
    output: Any
    """The value the step returned; None when the step failed for good."""
    error: ErrorInfo
    """Why the instance is rolled back: its error, or Terminated."""


def cut_short(rollback: dict[str, Any] | None) -> dict[str, Any] | None:
    """A plain terminate during a terminate with rollback: that rollback ends failed."""
    if rollback is None or rollback.get("outcome") != RUNNING:
        return rollback
    error = {"name": "Terminated", "message": "terminated before its rollback finished"}
    return {"outcome": FAILED, "error": error}


def record_name(name: str) -> str:
    """The internal name of the record of `name`'s rollback handler."""
    return PREFIX + name


def shown(name: str, kind: StepKind) -> tuple[str, str]:
    """(name, type) as status() shows a step: a rollback record is type "rollback" under the
    name of the step it undid."""
    if name.startswith(PREFIX):
        return name[len(PREFIX) :], "rollback"
    return name, kind.display


class Rollbacks:
    """The handlers run() registered in this activation, and running them."""

    def __init__(self) -> None:
        self._handlers: dict[StepKey, StepConfig] = {}

    def register(self, sid: StepKey, config: StepConfig) -> None:
        self._handlers[sid] = config

    async def run(
        self, step: WorkflowStep, steps: dict[StepKey, StepRecord], error: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Run the handlers of the finished steps, latest start first; the outcome for
        status().rollback (None: no finished step had a handler)."""
        done = [(rec.seq, sid) for sid, rec in steps.items() if self._eligible(sid, rec)]
        if not done:
            return None
        reason = ErrorInfo(name=error["name"], message=error["message"])
        first_error: dict[str, str] | None = None
        for _, sid in sorted(done, reverse=True):
            try:
                await self._undo(step, sid, steps[sid], reason)
            except WorkflowStepError as exc:
                first_error = first_error or {"name": exc.name, "message": exc.error_message}
            except _Missing as exc:
                first_error = first_error or {"name": "RollbackHandlerMissing", "message": str(exc)}
        return {"outcome": FAILED if first_error else COMPLETED, "error": first_error}

    def _eligible(self, sid: StepKey, rec: StepRecord) -> bool:
        """A finished do step that registered a handler now, or did when it ran."""
        finished = rec.kind is StepKind.DO and rec.state is StepState.DONE
        return finished and (sid in self._handlers or bool((rec.config or {}).get("rollback")))

    async def _undo(
        self, step: WorkflowStep, sid: StepKey, rec: StepRecord, reason: ErrorInfo
    ) -> None:
        config = self._handlers.get(sid)
        if config is None or config.rollback is None:
            raise _Missing(
                f"step {sid[0]!r} #{sid[1]} ran with a rollback handler, but this replay of "
                "run() did not reach it again, so it could not be undone"
            )
        ctx = StepContext(StepIdentity(*sid), rec.attempts, config)
        output = decode(rec.value) if rec.value is not None and rec.error is None else None
        call = RollbackContext(ctx, output, reason)
        undo_config = config.rollback_config or DEFAULT_CONFIG
        await step._do((record_name(sid[0]), sid[1]), _bound(config.rollback, call), undo_config)


class _Missing(Exception):
    """A finished step recorded a rollback handler that the live code did not register."""


def _bound(handler: RollbackFn, call: RollbackContext) -> Callable[[], Any]:
    """The handler as a step function taking nothing and returning nothing (its return value
    is not kept: a handler need not return storable data)."""
    args = (call,) if _takes_argument(handler) else ()
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
    ):

        async def undo_async() -> None:
            await handler(*args)

        return undo_async

    def undo() -> Any:
        result = handler(*args)
        return _discarded(result) if inspect.isawaitable(result) else None

    return undo


async def _discarded(result: Any) -> None:
    await result


def _takes_argument(handler: RollbackFn) -> bool:
    try:
        inspect.signature(handler).bind(None)
    except TypeError:
        return False
    except ValueError:
        return True  # not introspectable: Cloudflare's form, one argument
    return True
