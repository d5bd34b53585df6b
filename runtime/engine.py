"""One activation of one instance: replay run() from the top against storage until it finishes,
hibernates (nothing left to do but wait), pauses or is stopped. Plain asyncio; no Ray.

How an activation ends (its OutcomeKind) and what it leaves in storage:

    complete   run() returned; output stored           status complete
    errored    run() raised (or its output/records cannot be stored)   status errored
               (rollback handlers ran first: runtime/rollback.py)
    terminated a terminate with rollback replayed run() and ran its handlers  status terminated
    waiting    nothing runs, a wait is further off than hibernate_after  status waiting + wake_at
    paused     a pause was asked and no attempt runs   status paused
    stopped    taken away (terminate, restart, delete; lease fenced)  nothing: the taker wrote

The activation keeps two counts: steps running an attempt (`busy`) and waits parked on a deadline
or an event (`park`). When nothing is busy and the nearest deadline is further off than
`hibernate_after`, the run() task is cancelled and the activation returns a `waiting` outcome with
the wake-up time; the next activation replays to the same point from storage, for free.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import enum
import inspect
import logging
from collections import defaultdict
from collections.abc import Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..errors import (
    CorruptRecordError,
    NonRetryableError,
    PayloadError,
    UnawaitedStepError,
    WorkflowStepError,
)
from ..storage.codec import decode, encode
from ..storage.kv import Staged
from ..storage.records import (
    Fenced,
    InstanceRecord,
    InstanceStatus,
    StepKind,
    StepRecord,
    StepState,
    StepWrites,
)
from .clock import Clock
from .compute import ComputeExecutor
from .emits import Emitter
from .metrics import Tally
from .model import Env, WorkflowEntrypoint, WorkflowEvent
from .modifiers import ModifiedStep, Modifiers
from .options import HIBERNATE_AFTER
from .params import typed_payload
from .replay import ReplayGuard, call_kind, is_internal, kind_mismatch
from .rollback import TERMINATED, Rollbacks
from .rules import check_step_name
from .step import WorkflowStep
from .store import Store

log = logging.getLogger("raydo")
T = TypeVar("T")


class OutcomeKind(enum.StrEnum):
    COMPLETE = "complete"
    ERRORED = "errored"
    WAITING = "waiting"
    PAUSED = "paused"
    STOPPED = "stopped"
    TERMINATED = "terminated"

    @property
    def status(self) -> InstanceStatus | None:
        """The status the activation stored (None: stopped, it stores nothing)."""
        return None if self is OutcomeKind.STOPPED else InstanceStatus(self.value)


_LEAVING = frozenset({OutcomeKind.WAITING, OutcomeKind.PAUSED})


@dataclass
class Outcome:
    """How an activation ended."""

    kind: OutcomeKind
    wake_at: float | None = None
    waiting_types: list[str] = field(default_factory=list)
    recycle: bool = False
    """True when a timed-out sync step still runs in a thread: replace the worker process."""


@dataclass
class BatchResult:
    """What a worker reports for a batch of activations (see InstanceRunner.run_batch)."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    failed: dict[str, Exception] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)  # still running: collect each with join()
    unstarted: list[str] = field(default_factory=list)
    metrics: Tally | None = None  # the worker's step metrics since its last report


@dataclass(eq=False)
class _Park:
    until: float | None
    type: str | None
    future: asyncio.Future[None]


class _Escaped(Exception):
    """SystemExit or KeyboardInterrupt raised by run(): asyncio would let them escape the event
    loop (and take the worker down, again at every retry); carried as an ordinary error."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class _Unwind(BaseException):
    """Raised through run() by a terminate with rollback when the replay reaches a step that
    has not finished: run() goes no further, the rollback handlers run. BaseException, so a
    user's `except Exception` cannot swallow it."""


class _Fence(BaseException):
    """Raised through user code when this activation lost its lease: BaseException, so a user's
    `except Exception` cannot swallow it."""


@dataclass
class _Started:
    """An attempt whose start is in a slot (storage/inflight.py), until its outcome is written."""

    sid: tuple[str, int]
    running: StepRecord  # the record as its start would have written it
    slot: int | None
    timer: asyncio.TimerHandle = field(init=False)
    handed: bool = False  # its outcome went to a shared round (Activation._save_together)


@dataclass
class _Round:
    """One shared commit of a process's activations: their writes (step saves, settles) in one
    transaction, then one sync for all (group commit)."""

    done: asyncio.Future[None]
    writes: list[Staged] = field(default_factory=list)
    errors: list[Exception | None] = field(default_factory=list)  # by write: None = written


class _Busy:
    """Activation.busy: one running attempt, counted while inside."""

    __slots__ = ("_act", "_timeout")

    def __init__(self, act: Activation, timeout: float | None) -> None:
        self._act, self._timeout = act, timeout

    async def __aenter__(self) -> None:
        act = self._act
        act._busy += 1
        if self._timeout is not None:
            act._deadlines[self] = act.clock.monotonic() + self._timeout

    async def __aexit__(self, *exc: object) -> None:
        act = self._act
        act._busy -= 1
        act._deadlines.pop(self, None)
        act._poke()


class _Live:
    """The activations running in this process: they share its event loop and its fsyncs."""

    count = 0
    _rounds: dict[int, _Round] = {}  # by store: the round about to run
    _committing: dict[int, asyncio.Future[None]] = {}  # by store: the newest round closed
    _runners: set[asyncio.Future[None]] = set()  # their tasks (asyncio keeps weak references)

    async def sync_together(self, store: Store) -> None:
        """Make `store`'s commits durable with one sync shared by every caller that arrives
        before it runs (it runs after _SYNC_TURNS loop turns)."""
        await asyncio.shield(self._round(store).done)

    def write_together(self, store: Store, staged: list[Staged]) -> tuple[_Round, int]:
        """Have `staged` committed by the next round, in one transaction with the other writes
        that arrive before it runs, and made durable. Returns the round and the index of the
        first of them in it (see _written)."""
        round_ = self._round(store)
        round_.writes.extend(staged)
        return round_, len(round_.writes) - len(staged)

    def _round(self, store: Store) -> _Round:
        round_ = self._rounds.get(id(store))
        if round_ is None:
            round_ = _Round(asyncio.get_running_loop().create_future())
            self._rounds[id(store)] = round_
            runner = asyncio.ensure_future(self._run_soon(store, round_))
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
        return round_

    async def _run_soon(self, store: Store, round_: _Round) -> None:
        for _ in range(_SYNC_TURNS):
            await asyncio.sleep(0)
        # While the round before is still committing, this one takes every write that arrives:
        # the busier the disk, the more writes each commit carries (group commit).
        before = self._committing.get(id(store))
        if (
            before is not None
            and not before.done()
            and before.get_loop() is asyncio.get_running_loop()
        ):
            await asyncio.wait([before])
        del self._rounds[id(store)]  # writes from now on go to the next round
        self._committing[id(store)] = round_.done
        try:
            if store.syncs_to_disk:
                # In the sync thread: the loop goes on meanwhile (timers, other activations'
                # steps, which gather for the next round) instead of stalling on the fsyncs.
                loop = asyncio.get_running_loop()
                round_.errors = await loop.run_in_executor(_SYNCER, _commit, store, round_.writes)
            else:
                round_.errors = _commit(store, round_.writes)  # nothing to wait for
        except BaseException as exc:
            round_.done.set_exception(exc)
        else:
            round_.done.set_result(None)


async def _written(round_: _Round, first: int, count: int) -> bool:
    """Wait for the round that took `count` writes from index `first`: _applied of theirs."""
    await asyncio.shield(round_.done)
    return _applied(round_.errors[first : first + count])


def _applied(errors: list[Exception | None]) -> bool:
    """The errors of staged writes (InstanceStore.write_staged): True when all were written,
    False when one was fenced; any other error is raised."""
    for error in errors:
        if isinstance(error, Fenced):
            return False
        if error is not None:
            raise error
    return True


def _commit(store: Store, writes: list[Staged]) -> list[Exception | None]:
    errors = store.write_staged(writes) if writes else []
    store.sync()
    return errors


_LIVE = _Live()


async def sync_shared(store: Store) -> None:
    """Make this process's commits to `store` durable, sharing one fsync with every caller
    that arrives within a few loop turns (activations, or the namespace's concurrent calls)."""
    await _LIVE.sync_together(store)


# One thread per process runs the shared syncs, in order (GroupSync serializes them anyway).
_SYNCER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raydo-sync")
# An attempt running this long gets its running record written (status and the stream show it);
# a shorter one's start is written only with its outcome.
SHOW_RUNNING_AFTER = 0.1
# A lone activation's step result is committed with its next write (the next step's, its end,
# its sleep), and at the latest this many event loop turns after step.do returned
# (Activation.save_durable): turns, not time, so a loaded machine does not lose the sharing (an
# activation's end comes 2 turns after its last step returned).
WRITE_BEHIND_TURNS = 4
_SYNC_TURNS = 3  # loop turns a shared sync waits for other activations to reach their commits

_RUNNING: contextvars.ContextVar[Activation | None] = contextvars.ContextVar(
    "raydo_activation", default=None
)


def stop_if_running(workflow: str, iid: str) -> None:
    """After an operation that took an instance away (delete, terminate, restart): when the
    calling task is that instance's own run(), stop it right there, before more of its code
    runs (its next write would be fenced, but plain code in between would still run)."""
    act = _RUNNING.get()
    if act is not None and (act.record.workflow, act.record.id) == (workflow, iid):
        act.stop()
        raise _Fence()


class Activation:
    def __init__(
        self,
        store: Store,
        workflow_cls: type[WorkflowEntrypoint],
        record: InstanceRecord,
        lease: int,
        clock: Clock,
        env: Env | None = None,
        executor: Executor | None = None,
        hibernate_after: float = HIBERNATE_AFTER,
        code: str | None = None,
        compute: ComputeExecutor | None = None,
    ) -> None:
        self.store, self.cls, self.record, self.lease = store, workflow_cls, record, lease
        self.compute = compute  # runs steps given resources= elsewhere (runtime/compute.py)
        self.code = code  # the class's fingerprint, recorded with the instance
        self.clock, self.env, self.executor = clock, env or Env(), executor
        self.hibernate_after = hibernate_after
        self.steps: dict[tuple[str, int], StepRecord] = {}
        self._counts: defaultdict[str, int] = defaultdict(int)
        self._seq = 0
        self._busy = 0
        self._deadlines: dict[_Busy, float] = {}  # by running attempt
        self.strays: list[concurrent.futures.Future[Any]] = []
        self._parks: list[_Park] = []
        self._pausing = False
        self._stopped = False
        self.leaving = False  # it ends waiting or paused: attempts placed elsewhere go on
        self._changed = asyncio.Event()
        self._preloaded: tuple[dict[tuple[str, int], StepRecord], bytes | None] | None = None
        self._params: bytes | None = None
        self._modifiers: bytes | None = None  # raydo.testing's, read with the instance
        self._calls: list[tuple[tuple[str, int], Coroutine[Any, Any, Any]]] = []
        self.guard = ReplayGuard({})
        self.rollbacks = Rollbacks()
        self._unwinding = bool(record.rollback and record.rollback.get("terminate"))
        self._halting = False  # the rollback phase began: no user step starts any more
        self._rolled_back: dict[str, Any] | None = None
        self._behind: StepWrites = []  # see save_behind
        self._settling: list[Staged] = []  # its end, when written with a round (_settle)
        self._owed = False  # a step result is not durable yet: see save_durable
        # Whoever reports the outcome syncs first, so the end may be left unsynced (a batch of
        # activations run one after another: each one's first commit covers the end of the one
        # before, and one sync at the batch's end covers the last; InstanceRunner.run_batch).
        # `end_unsynced` says it was.
        self.end_sync_left = False
        self.end_unsynced = False
        self._freeing: list[_Started] = []  # attempts whose slots go once _behind is written
        self._failed = False  # a write of this activation failed (storage error)
        self._soon: asyncio.Handle | None = None  # see _write_soon

    # -- the loop ------------------------------------------------------------------------------

    def preload(
        self,
        steps: dict[tuple[str, int], StepRecord] | None,
        params: bytes | None,
        modifiers: bytes | None = None,
    ) -> None:
        """Start from data already read (one read for record, steps, params and modifiers)."""
        if steps is not None:
            self._preloaded = (steps, params)
            self._modifiers = modifiers

    async def run(self) -> Outcome:
        try:
            outcome = await self._run()
            settling, self._settling = self._settling, []
            if not settling:
                if outcome.kind is not OutcomeKind.STOPPED:  # (stopped: nothing more is ours)
                    # the results its end wrote (or a commit since has): synced here, or by
                    # whoever reports the outcome (InstanceRunner.run_batch)
                    self.end_unsynced = not self.ensure_durable(sync=not self.end_sync_left)
                return outcome
            # Its end goes with the other activations' writes of this round (_settle).
            round_, first = _LIVE.write_together(self.store, settling)
            try:
                if not await _written(round_, first, len(settling)):
                    return Outcome(OutcomeKind.STOPPED)
            except Exception:
                self._failed = True
                raise
            return outcome
        finally:
            if self._soon is not None:
                self._soon.cancel()
            # Attempts whose results were written, or never will be by this activation (it
            # was stopped: the instance is no longer its own), count no more. After a storage
            # failure they stay: they count should the process die.
            if self._failed:
                self._freeing.clear()
            self._written_behind()

    async def _run(self) -> Outcome:
        if self._preloaded is not None:
            self.steps, self._params = self._preloaded
        else:
            try:
                self.steps = self.store.steps(self.record.id)
                self._params = self.store.params(self.record.id)
            except CorruptRecordError as err:
                return self._settle(Outcome(OutcomeKind.ERRORED), error=_error(err))
        self._seq = max((s.seq for s in self.steps.values()), default=-1) + 1
        self.guard = ReplayGuard(self.steps)
        task = asyncio.ensure_future(self._run_user())
        _LIVE.count += 1
        try:
            while not task.done():
                if self._stopped:
                    return Outcome(OutcomeKind.STOPPED)
                hibernation = self._hibernation()
                if hibernation is not None:
                    self.leaving = hibernation.kind in _LEAVING
                    return hibernation
                self._changed.clear()
                waiter = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            return self._settle_result(task)
        except _Fence:
            return Outcome(OutcomeKind.STOPPED)
        finally:
            _LIVE.count -= 1
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            for park in self._parks:
                park.future.cancel()

    async def _run_user(self) -> Any:
        _RUNNING.set(self)  # this task's context only
        instance = self.cls()
        instance.env = self.env
        payload = decode(self._params) if self._params is not None else None
        event = WorkflowEvent(
            payload=typed_payload(self.cls, self.record.workflow, "params", payload),
            timestamp=datetime.fromtimestamp(self.record.created_at, tz=UTC),
            instance_id=self.record.id,
            workflow_name=self.record.workflow,
            schedule=_event_schedule(self.record.schedule),
        )
        try:
            result = await self._run_then_roll_back(instance, event, self._step_api())
        except (SystemExit, KeyboardInterrupt) as exc:
            raise _Escaped(exc) from exc
        finally:
            forgotten = self._close_unawaited()
        if forgotten:
            names = ", ".join(f"{name!r} #{count}" for name, count in forgotten)
            raise UnawaitedStepError(
                f"run() called step {names} but never awaited it, so it never ran; write "
                "`await step.do(...)` (or pass the call to asyncio.gather)",
                steps=[name for name, _ in forgotten],
            )
        return result

    async def _run_then_roll_back(
        self, instance: WorkflowEntrypoint, event: WorkflowEvent, api: WorkflowStep
    ) -> Any:
        """run(); when it fails for good (or a terminate with rollback unwinds it), the
        rollback handlers run here, inside the same task, so their retries, hibernation and
        pauses work as for any step. Not after a NonDeterminismError: the code no longer
        matches the history, so what its handlers would undo is unknown."""
        try:
            result = await instance.run(event, api)
        except _Unwind:
            result = None
        except Exception as exc:
            if self.guard.error is None:
                await self._roll_back(api, TERMINATED if self._unwinding else _error(exc))
            raise
        if self._unwinding:
            await self._roll_back(api, TERMINATED)
        return result

    async def _roll_back(self, api: WorkflowStep, error: dict[str, Any]) -> None:
        """Other branches of run() (asyncio.gather) may not have replayed their finished steps
        yet, so their handlers are not registered: let them replay, starting no new step."""
        self._halting = True
        await self.guard.settle()
        self._rolled_back = await self.rollbacks.run(api, self.steps, error)

    def _step_api(self) -> WorkflowStep:
        """The `step` run() gets. THE hook of raydo.testing's modifiers (runtime/modifiers.py):
        an instance that has some gets a WorkflowStep subclass applying them; every other
        instance (all of them, outside tests) gets the plain WorkflowStep, so the step path has
        no test code and no check on it. Chosen once per activation."""
        if self._modifiers is None:
            return WorkflowStep(self)
        return ModifiedStep(self, Modifiers.unpack(self._modifiers))

    def track(
        self, sid: tuple[str, int], coro: Coroutine[Any, Any, T], checked: bool = True
    ) -> Coroutine[Any, Any, T]:
        """Remember a step call, to report it if run() never awaits it. While a replay has
        recorded steps still to meet, the call is checked against them first (replay.py);
        `checked=False`: the caller checks the step itself when it starts (a DAG step, once its
        dependencies have run)."""
        if checked:
            coro = self.checked(sid, coro)
        self._calls.append((sid, coro))
        if len(self._calls) > 1000:  # long loops: forget the calls already started
            self._calls = [(i, c) for i, c in self._calls if _never_started(c)]
        return coro

    def checked(self, sid: tuple[str, int], coro: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        """The step call `coro`, checked against the recorded order while a replay has recorded
        steps still to meet (at no cost otherwise)."""
        return self._checked(sid, coro) if self.guard.replaying else coro

    async def _checked(self, sid: tuple[str, int], coro: Coroutine[Any, Any, T]) -> T:
        guard = self.guard
        if guard.error is None and not guard.in_order(sid):
            await guard.settle()  # other branches of run() may still be replaying
            if not guard.in_order(sid):
                guard.mismatch(sid, call_kind(coro))
        if guard.error is not None:  # sticky: no later step runs either
            coro.close()
            raise guard.error
        guard.meet(sid)
        return await coro

    def _close_unawaited(self) -> list[tuple[str, int]]:
        forgotten = [sid for sid, coro in self._calls if _never_started(coro)]
        for _, coro in self._calls:
            if _never_started(coro):
                coro.close()  # no "never awaited" RuntimeWarning: it is reported instead
        self._calls.clear()
        return forgotten

    def _hibernation(self) -> Outcome | None:
        if self._busy:
            return None
        if self._pausing:
            return self._settle(Outcome(OutcomeKind.PAUSED), paused_at=self.clock.now())
        if not self._parks:
            return None
        deadlines = [p.until for p in self._parks if p.until is not None]
        wake_at = min(deadlines) if deadlines else None
        if wake_at is not None and wake_at - self.clock.now() <= self.hibernate_after:
            return None
        types = sorted({p.type for p in self._parks if p.type is not None})
        return self._settle(Outcome(OutcomeKind.WAITING, wake_at, types))

    def _settle_result(self, task: asyncio.Future[Any]) -> Outcome:
        exc = task.exception()
        if isinstance(exc, _Fence):
            return Outcome(OutcomeKind.STOPPED)
        if self.guard.error is not None:  # even if run() caught it
            log.info("instance %s errored: NonDeterminismError", self.record.id)
            return self._settle(Outcome(OutcomeKind.ERRORED), error=_error(self.guard.error))
        if self._unwinding:
            return self._settle(Outcome(OutcomeKind.TERMINATED))
        if exc is None:
            try:
                output = encode(task.result(), "workflow output")
            except PayloadError as err:
                return self._settle(Outcome(OutcomeKind.ERRORED), error=_error(err))
            return self._settle(Outcome(OutcomeKind.COMPLETE), output=output)
        # SystemExit, KeyboardInterrupt & co. raised by run() end the instance like any error
        # instead of taking its worker down, again at every retry.
        # The error's type only: its message may quote params or results (SECURITY.md).
        log.info("instance %s errored: %s", self.record.id, type(exc).__name__)
        return self._settle(Outcome(OutcomeKind.ERRORED), error=_error(exc))

    def _settle(
        self,
        outcome: Outcome,
        output: bytes | None = None,
        error: dict[str, str] | None = None,
        paused_at: float | None = None,
    ) -> Outcome:
        rec = self.record
        assert outcome.kind.status is not None
        rec.status, rec.wake_at, rec.waiting_types = (
            outcome.kind.status,
            outcome.wake_at,
            outcome.waiting_types,
        )
        rec.error, rec.paused_at, rec.has_output = error, paused_at, output is not None
        rec.lost, rec.code = 0, self.code or rec.code
        if rec.status.finished:
            rec.ended_at = self.clock.now()
            rec.rollback = self._rolled_back
        if _LIVE.count > 1:  # other activations run here: written with theirs (run())
            if self._behind:
                self._settling.append(self.store.stage_steps(rec.id, self.lease, self._behind))
                self._behind = []
            self._settling.append(self.store.stage_settle(rec.id, self.lease, rec, output))
            return outcome
        # One commit with what is behind (the last step's result, often), not synced: run()
        # syncs it if a step result is in it; an end alone is re-derived by replay.
        writes = [self.store.stage_settle(rec.id, self.lease, rec, output)]
        if self._behind:
            writes.insert(0, self.store.stage_steps(rec.id, self.lease, self._behind))
        try:
            if not _applied(self.store.write_staged(writes)):
                return Outcome(OutcomeKind.STOPPED)
        except Exception:
            self._failed = True
            raise
        self._behind = []
        self._written_behind()
        return outcome

    # -- control from outside (the actor) ------------------------------------------------------

    def request_pause(self) -> None:
        self._pausing = True
        self._poke()

    def stop(self) -> None:
        self._stopped = True
        self._poke()

    def event_arrived(self, type_: str) -> None:
        for park in self._parks:
            if park.type == type_ and not park.future.done():
                park.future.set_result(None)

    @property
    def pausing(self) -> bool:
        return self._pausing

    # -- services for WorkflowStep -------------------------------------------------------------

    def next_id(self, name: str) -> tuple[str, int]:
        check_step_name(name)
        self._counts[name] += 1
        return name, self._counts[name]

    def lookup(self, sid: tuple[str, int], kind: StepKind) -> StepRecord | None:
        rec = self.steps.get(sid)
        if rec is not None and rec.kind != kind:
            self.guard.error = kind_mismatch(sid, rec, kind)
            raise self.guard.error
        if self._stops_here(sid, rec):
            raise _Unwind()
        return rec

    def _stops_here(self, sid: tuple[str, int], rec: StepRecord | None) -> bool:
        """A terminate with rollback, or the rollback phase, lets run() replay its finished
        steps but start no other; the rollback handlers' own records run."""
        unfinished = rec is None or rec.state is not StepState.DONE
        return (self._unwinding or self._halting) and unfinished and not is_internal(sid[0])

    def patched(self, patch_id: str) -> bool:
        """step.patched(): the recorded answer, or, asked for the first time, True unless this
        instance's history already went past this point on older code (replay.py)."""
        check_step_name(patch_id)
        sid = (patch_id, 0)  # counts of steps start at 1: no step shares this key
        rec = self.steps.get(sid)
        if rec is not None and rec.kind is StepKind.PATCH and rec.value is not None:
            return bool(decode(rec.value))
        answer = not self.guard.replaying
        now = self.clock.now()
        rec = self.new_record(
            sid, StepKind.PATCH, state=StepState.DONE, value=encode(answer), ended_at=now
        )
        # Not synced: lost in a crash only if no synced write came after it, and then nothing
        # recorded follows it either, so the same question gets the same answer again.
        self.save(sid, rec, durable=False)
        return answer

    def new_record(self, sid: tuple[str, int], kind: StepKind, **fields: Any) -> StepRecord:
        rec = StepRecord(kind=kind, seq=self._seq, started_at=self.clock.now(), **fields)
        self._seq += 1
        self.steps[sid] = rec
        return rec

    def save(self, sid: tuple[str, int], rec: StepRecord, durable: bool) -> None:
        writes = [*self._behind, (sid, rec)]
        try:
            self.store.save_steps(self.record.id, self.lease, writes, durable)
        except Fenced:
            raise _Fence() from None
        except Exception:
            self._failed = True
            raise
        self._behind.clear()
        self._written_behind()

    def _written_behind(self) -> None:
        """The step results carried behind are written: their attempts' slots go."""
        for started in self._freeing:
            self._free_slot(started)
        self._freeing.clear()

    def begin_attempt(self, sid: tuple[str, int], rec: StepRecord, eager: bool) -> _Started | None:
        """Record that an attempt of `rec` starts, before its body runs: in this process's slot
        file (storage/inflight.py), or, when that cannot be or `eager`, by writing its running
        record. An attempt still running after SHOW_RUNNING_AFTER gets its running record
        written as well, for status and the stream. Returns what end_attempt takes."""
        rec.attempt_at = self.clock.now()
        slot = None
        if not eager:
            try:
                slot = self.store.begin_attempt(self.record.id, self.lease, sid, rec)
            except Fenced:
                raise _Fence() from None
        if slot is None:
            self.save(sid, rec, durable=False)
            return None
        started = _Started(sid, rec.copy(), slot)
        started.timer = asyncio.get_running_loop().call_later(
            SHOW_RUNNING_AFTER, self._show_running, started
        )
        return started

    def _show_running(self, started: _Started) -> None:
        if started.slot is not None and self._write_start(started):
            self._free_slot(started)

    def end_attempt(self, started: _Started | None) -> None:
        """After an attempt, whatever became of it. One whose outcome was not written (the
        activation stopped or failed meanwhile) gets its running record written, so it counts
        as started: what its slot said, had the process died. One handed to a shared round is
        left to it (its slot is freed once its outcome is written)."""
        if started is None or started.handed:
            return
        if started.slot is not None and self._write_start(started):
            self._free_slot(started)

    def _write_start(self, started: _Started) -> bool:
        """Write the attempt's running record; False when storage fails (the slot stays: it
        still counts the attempt should the process die). Fenced: nothing left to count."""
        try:
            self.save(started.sid, started.running, durable=False)
        except _Fence:
            return True
        except Exception as exc:  # the caller's own error, if any, is the one that matters
            log.warning(
                "instance %s: the start of a step attempt not written: %s", self.record.id, exc
            )
            return False
        return True

    def _free_slot(self, started: _Started) -> None:
        if started.slot is not None:
            started.timer.cancel()
            self.store.end_attempt(started.slot)
            started.slot = None

    def save_behind(self, sid: tuple[str, int], rec: StepRecord) -> None:
        """Write a change that replay finds again by itself (a sleep that is over) with this
        activation's next write, in its transaction, instead of in one of its own. Lost with
        the process, it is found again the same way; a wake activation (sleep over, next step,
        end) commits one transaction fewer."""
        self._behind.append((sid, rec))

    def _write_behind(self) -> None:
        if self._behind:
            self.save(*self._behind.pop(), durable=False)

    def _write_soon(self, turns: int) -> None:
        """Step results carried behind are committed within WRITE_BEHIND_TURNS loop turns even
        when nothing depends on them yet (code between steps that awaits something else, a
        wait in this process): a process killed meanwhile loses at most that moment's."""
        if turns > 1:
            self._soon = asyncio.get_running_loop().call_soon(self._write_soon, turns - 1)
            return
        self._soon = None
        if self._stopped or not self._behind:
            return
        try:
            self._write_behind()
        except _Fence:
            self.stop()
        except Exception as exc:  # written at its next write, which raises if storage still fails
            log.warning("instance %s: step results not written yet: %s", self.record.id, exc)

    async def save_durable(
        self, sid: tuple[str, int], rec: StepRecord, started: _Started | None = None
    ) -> None:
        """Save a step record durably. A lone step carries it with its next write and goes
        on: it is written and synced when something may depend on it (ensure_durable: the
        next step's body; or the activation's end, which writes it in its own transaction).
        When other activations (or other attempts of this one) run in this process, it joins
        the next shared round and returns once that is durable: one transaction and one sync
        for them all (group commit).
        `started`: the attempt whose outcome this is (its slot is freed once it is written)."""
        if _LIVE.count > 1 or self._busy > 1:
            await self._save_together(sid, rec, started)
            return
        self._behind.append((sid, rec.copy()))
        self._owed = True
        if self._soon is None:
            self._soon = asyncio.get_running_loop().call_soon(self._write_soon, WRITE_BEHIND_TURNS)
        if started is not None:
            started.timer.cancel()  # its running record must not be written after its outcome
            started.handed = True  # its slot goes once the outcome is written (_written_behind)
            self._freeing.append(started)

    def ensure_durable(self, sync: bool = True) -> bool:
        """Make this activation's step results durable before anything that may depend on them
        runs: a step body (its side effects may use them) or the end of the activation.
        Writes what is carried behind, then syncs; a commit made since by any process made
        them durable already (storage/kv.py): then this costs no fsync. `sync=False` (the
        end, end_sync_left): written, the sync left to the caller. False when a sync is owed."""
        if not self._owed:
            return True
        self._owed = False
        self._write_behind()
        if sync:
            self.store.sync()  # free when a commit since (by anyone) covered it
        return sync

    async def _save_together(
        self, sid: tuple[str, int], rec: StepRecord, started: _Started | None
    ) -> None:
        """save_durable in the next shared round (_Live). The attempt's slot is freed once the
        round wrote its outcome, even when this activation is stopped while it waits."""
        behind = len(self._behind)  # (a parallel branch may add more while this one waits)
        round_, index = _LIVE.write_together(
            self.store,
            [self.store.stage_steps(self.record.id, self.lease, [*self._behind, (sid, rec)])],
        )
        if started is not None:
            started.timer.cancel()
            started.handed = True  # its outcome is the round's to write, not end_attempt's
            slot, store = started.slot, self.store

            def free(done: asyncio.Future[None]) -> None:
                # Not written because storage failed: the slot stays, it counts the attempt.
                # Fenced: the instance is no longer this activation's (see _write_start).
                if done.exception() is None and slot is not None:
                    error = round_.errors[index]
                    if error is None or isinstance(error, Fenced):
                        store.end_attempt(slot)

            round_.done.add_done_callback(free)
        if not await _written(round_, index, 1):
            raise _Fence()
        del self._behind[:behind]
        if not self._behind:
            self._written_behind()

    def emitter(self, sid: tuple[str, int], attempt: int, started: _Started | None) -> Emitter:
        """The sink of `ctx.emit` for one attempt of step `sid` (runtime/emits.py); its records
        follow the attempt's start in the history."""
        before = None if started is None else lambda: self._show_running(started)
        return Emitter(self.store, self.record.id, self.lease, sid, attempt, self.clock, before)

    def take_event(self, sid: tuple[str, int], rec: StepRecord) -> bool:
        # The history tells what happened in order; the taking's commit (its own fsync) makes
        # the results before it durable before it is.
        self._write_behind()
        try:
            return self.store.take_event(self.record.id, self.lease, sid, rec) is not None
        except Fenced:
            raise _Fence() from None

    def busy(self, timeout: float | None = None) -> _Busy:
        """`async with`: count a running attempt; with `timeout`, also its deadline for the
        actor's watchdog. (A class, not a generator: it is entered on every attempt.)"""
        return _Busy(self, timeout)

    async def idle_while(self, running: asyncio.Future[Any], until: float) -> None:
        """Wait for an attempt that runs elsewhere (runtime/compute.py) as a park until
        `until`, not as busy work: the activation may hibernate meanwhile (this await is then
        cancelled with `leaving` set)."""
        self._busy -= 1
        parked = asyncio.ensure_future(self.park(until))
        try:
            await asyncio.wait({running, parked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            parked.cancel()
            self._busy += 1

    def submit(self, fn: Any, *args: Any) -> concurrent.futures.Future[Any]:
        if self.executor is None:
            self.executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="raydo-step")
        return self.executor.submit(fn, *args)

    def earliest_deadline(self) -> float | None:
        """clock.monotonic() by which the earliest running attempt must end, if any runs."""
        return min(self._deadlines.values(), default=None)

    async def park(self, until: float | None, type_: str | None = None) -> None:
        """Wait until `until` (or an event of `type_`, or the end of a pause)."""
        park = _Park(until, type_, asyncio.get_running_loop().create_future())
        self._parks.append(park)
        timer = asyncio.ensure_future(self._ring(park)) if until is not None else None
        self._poke()
        try:
            await park.future
        finally:
            self._parks.remove(park)
            if timer is not None:
                timer.cancel()

    async def pause_gate(self) -> None:
        """No new attempt starts while a pause is pending: it parks until the activation ends."""
        while self._pausing:
            await self.park(None)

    async def _ring(self, park: _Park) -> None:
        assert park.until is not None
        await self.clock.sleep(park.until - self.clock.now())
        if not park.future.done():
            park.future.set_result(None)

    def _poke(self) -> None:
        self._changed.set()


def _never_started(coro: Coroutine[Any, Any, Any]) -> bool:
    return inspect.getcoroutinestate(coro) == inspect.CORO_CREATED


def _error(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, _Escaped):
        exc = exc.original
    if isinstance(exc, WorkflowStepError):
        return {"name": exc.name, "message": exc.error_message}
    if isinstance(exc, NonRetryableError):
        return {"name": exc.name, "message": exc.message}
    return {"name": type(exc).__name__, "message": str(exc)}


def _event_schedule(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record's cron tick as `event.schedule` shows it (the time as a UTC datetime)."""
    if stored is None:
        return None
    when = datetime.fromtimestamp(float(stored["scheduled_time"]), tz=UTC)
    return {"cron": stored["cron"], "scheduled_time": when}
