"""Replay safety: notice when run() no longer matches the history an instance recorded.

Identity is (name, count), as Cloudflare has it, so a replay finds a step's record by name. That
alone misses code that changed under an instance in flight: a renamed step would run its side
effect again, and a reordered one would hand back another step's result. The guard keeps the
recorded steps not yet met in this activation, in the order they first ran. A step call that
meets a record out of that order, or that is new while recorded steps are still unmet, is
suspicious; it is a NonDeterminismError only if it stays so once every other branch of run()
has replayed as far as it can (concurrent branches replay in any order). A sequential run()
that changed is caught at the first step that differs, before that step runs anything.

What is not checked: recorded steps that the new code never reaches (they are simply unused),
and run() code that awaits real I/O between steps while other branches replay (keep I/O in
steps, as Cloudflare's rules ask).

Evolving a workflow with instances in flight: `if step.patched("new-pricing"):` answers True
for an instance that reaches that point for the first time, and False for one whose history
already went past it on the old code; the answer is recorded, so every replay branches alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from ..errors import NonDeterminismError, StepRef
from ..storage.records import StepKind, StepRecord

StepKey = tuple[str, int]

INTERNAL = "\x1f"
"""First character of the names raydo records for itself (rollback records): a user's step name
cannot hold a control character, so these never collide with one."""

_KIND_OF = {"_do": "do", "_sleep": "sleep", "_sleep_until": "sleep", "_wait": "waitForEvent"}
_QUIET_ROUNDS = 5  # loop turns with no step met: every replaying branch has gone as far as it can
_MAX_ROUNDS = 10_000


def is_internal(name: str) -> bool:
    return name.startswith(INTERNAL)


def counted(sid: StepKey, rec: StepRecord) -> bool:
    """Steps whose order the guard checks: the user's do, sleep and wait steps."""
    return rec.kind is not StepKind.PATCH and not is_internal(sid[0])


def call_kind(coro: Coroutine[Any, Any, Any]) -> str:
    """The kind of a step call, from the WorkflowStep method its coroutine runs ("" if none)."""
    return _KIND_OF.get(getattr(getattr(coro, "cr_code", None), "co_name", ""), "")


class ReplayGuard:
    def __init__(self, steps: dict[StepKey, StepRecord]) -> None:
        self._steps = steps  # the activation's records, growing as new steps run
        self._unmet = {sid: rec.seq for sid, rec in steps.items() if counted(sid, rec)}
        self._order = sorted(self._unmet, key=self._unmet.__getitem__)
        self._head = 0
        self.met = 0
        self.error: NonDeterminismError | None = None

    @property
    def replaying(self) -> bool:
        """True while recorded steps are unmet (or a mismatch was found): step calls are then
        checked; otherwise they run unchecked, at no cost."""
        return bool(self._unmet) or self.error is not None

    def in_order(self, sid: StepKey) -> bool:
        if not self._unmet:
            return True
        if sid not in self._steps:
            return False  # a new step while recorded ones are still unmet
        return sid not in self._unmet or self._earliest() == sid

    def meet(self, sid: StepKey) -> None:
        self._unmet.pop(sid, None)
        self.met += 1

    def mismatch(self, sid: StepKey, kind: str) -> NonDeterminismError:
        recorded_sid = self._earliest()
        rec = self._steps[recorded_sid]
        recorded = StepRef(rec.kind.display, *recorded_sid)
        found = StepRef(kind, *sid)
        self.error = NonDeterminismError(
            f"replay met {found!r} where this instance's history has {recorded!r} next; the "
            "workflow's code changed under an instance in flight (a step renamed, reordered or "
            "replaced). run() must call the same steps in the same order on every replay; to "
            "change a workflow with instances in flight, branch on step.patched(...)",
            step=sid[0],
            count=sid[1],
            recorded=recorded,
            found=found,
        )
        return self.error

    def _earliest(self) -> StepKey:
        while self._order[self._head] not in self._unmet:
            self._head += 1
        return self._order[self._head]

    async def settle(self) -> None:
        """Let every other branch of run() replay as far as it can: until no step is met for
        a few loop turns (bounded)."""
        quiet = 0
        for _ in range(_MAX_ROUNDS):
            before = self.met
            await asyncio.sleep(0)
            quiet = quiet + 1 if self.met == before else 0
            if quiet >= _QUIET_ROUNDS:
                return


def kind_mismatch(sid: StepKey, rec: StepRecord, kind: StepKind) -> NonDeterminismError:
    """Replay met a recorded (name, count) as another kind (a sleep where a step was)."""
    return NonDeterminismError(
        f"step {sid[0]!r} #{sid[1]} was recorded as {rec.kind.display!r} but is now "
        f"called as {kind.display!r}; check that your workflow is deterministic",
        step=sid[0],
        count=sid[1],
        recorded=StepRef(rec.kind.display, *sid),
        found=StepRef(kind.display, *sid),
    )
