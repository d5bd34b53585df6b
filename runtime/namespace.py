"""The namespace: every instance of one workflow, routed by id. Plain asyncio; no Ray.

It owns the instances that hold no actor (creating, queueing, pausing, terminating them in storage)
and hands runnable ones to workers, at most `concurrency` activations at a time. Instances waking
from a sleep or an event go ahead of new ones. A worker runs activations and reports an Outcome
per instance, applied by one `_apply_<kind>` method per OutcomeKind.

An instance's state is its stored status plus where the namespace holds it in memory:

    stored status    held in             meaning                            leaves by
    queued           _new                created, waits for a worker        dispatch (_pump)
    running          _wakeups            runnable: woken, resumed,          dispatch (_pump)
                                         recovered or handed back
    running          _active[id]         an activation runs it              its Outcome (_apply_*)
    running          _active + _pausing   pause asked while it runs          Outcome paused/waiting
                                         (reported as waitingForPause)
    waiting          a timer or events   hibernated: holds no actor         wake() / send_event
    paused           -                   frozen in storage                  resume -> _wakeups
    complete,        -                   finished; waiters are woken        restart -> _new
    errored,                                                                delete
    terminated
    (unfinished)     _faults             an activation could not even       restart, delete
                                         write (storage full); reported
                                         as errored
    (any running)    _suspects           was in a batch whose worker died:  its next Outcome
                                         runs alone next time

Taking an instance away (terminate, restart, delete) bumps its lease in storage: whatever still
runs it can write nothing more, and reports `stopped`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import (
    InvalidStateError,
    InvalidStepError,
    StorageError,
    WaitTimeoutError,
)
from ..storage.kv import Writer
from ..storage.records import InstanceRecord, InstanceStatus, StepKind, StepRecord, StepState
from .clock import Clock
from .engine import BatchResult, Outcome, OutcomeKind
from .rollback import cut_short
from .rules import brief, show_seconds
from .store import Store

log = logging.getLogger("raydo")

# An instance whose process dies this many activations in a row is errored, not retried forever.
MAX_LOST_ACTIVATIONS = 20
# At most this many queued instances go to a worker in one call.
MAX_BATCH = 16
# Batches are tried twice as big after this many whole batches in a row (see _learn_fit).
_PROBE_AFTER = 4
# A timer due this soon is handled here instead of going through the timer service.
_IMMEDIATE = 0.005


class Worker(Protocol):
    async def run_batch(self, items: list[tuple[str, int]]) -> BatchResult: ...
    async def join(self, iid: str) -> Outcome: ...
    def pause(self, iid: str) -> None: ...
    def stop(self, iid: str) -> None: ...
    def event(self, iid: str, type_: str) -> None: ...


class WorkerPool(Protocol):
    async def acquire(self) -> Worker: ...
    def release(self, worker: Worker, broken: bool = False) -> None: ...


class WorkerLost(Exception):
    """Raised by a Worker whose process died during an activation."""


class _Held:
    """One activation call's hold on its worker. `_active` maps an instance to the hold of the
    call running it, not to the worker, because a worker may be shared by several calls at once
    (WorkflowOptions.actors): one call must never release an instance another call now runs."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def pause(self, iid: str) -> None:
        self.worker.pause(iid)

    def stop(self, iid: str) -> None:
        self.worker.stop(iid)

    def event(self, iid: str, type_: str) -> None:
        self.worker.event(iid, type_)


@dataclass
class Snapshot:
    """Everything `status()` reports, still encoded; the client decodes it with its own classes."""

    record: InstanceRecord
    output: bytes | None
    steps: list[tuple[str, int, StepRecord]] | None
    pausing: bool


class Namespace:
    def __init__(
        self,
        store: Store,
        pool: WorkerPool,
        clock: Clock,
        schedule_timer: Callable[[str, float], None],
        concurrency: int,
        wake_lead: float = 0.0,
    ) -> None:
        self.store, self.pool, self.clock = store, pool, clock
        self.schedule_timer = schedule_timer
        # Timers fire this much before their time (the timer service applies it): dispatch and
        # replay happen early and the engine sleeps the rest in memory.
        self.wake_lead = wake_lead
        self.concurrency = concurrency  # activations (instances running) at once
        self._active: dict[str, _Held] = {}
        # Ordered sets, waking instances first. OrderedDict, not dict: taking the first of a dict
        # whose front was popped rescans the holes (quadratic over a backlog of 100,000), and it
        # puts handed-back instances back at the front in O(1).
        self._wakeups: OrderedDict[str, None] = OrderedDict()
        self._new: OrderedDict[str, None] = OrderedDict()
        self._pausing: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tasks_aside: set[asyncio.Future[None]] = set()  # background work (recovery)
        # Errors an activation could not even write down (storage full or broken): reported by
        # status() until the instance is restarted or deleted; storage still says it is unfinished.
        self._faults: dict[str, dict[str, str]] = {}
        # Instances that were in a batch whose worker died: each runs alone until it settles.
        self._suspects: set[str] = set()
        # How many instances a worker last started within its batch budget: batches are cut to
        # it, so instances are not acquired (a write each) only to be handed back unstarted.
        self._fits, self._whole = MAX_BATCH, 0
        self.expired = 0  # instances deleted for retention since start (metrics)

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> int:
        """Pick up every unfinished instance found in storage. Reads only those (the status
        index), however many finished ones storage holds. Queued and running ones are queued
        here, oldest first; waiting ones are looked at by a background pass, a chunk per loop
        turn (a million of them must not hold up the first call: their timers are in the
        durable index the timer actor reads). Returns how many there are."""
        self.store.fold_dead_attempts()  # attempts that processes gone since had in flight
        found = [rec for status in _DISPATCHED for rec in _all_listed(self.store, status.value)]
        for rec in sorted(found, key=lambda r: (r.created_at, r.id)):
            self._continue_from_storage(rec)
        self._pump()
        waiting = int(self.store.counts().get(InstanceStatus.WAITING.value, 0))
        if waiting:
            task = asyncio.ensure_future(self._recover_waiting())
            self._tasks_aside.add(task)
            task.add_done_callback(self._tasks_aside.discard)
        return len(found) + waiting

    async def _recover_waiting(self) -> None:
        """Arm (or fire) the wake-up of every waiting instance, a chunk at a time. Each chunk is
        read and acted on in one go, so what it says is what storage says at that moment."""
        after: tuple[float, str] | None = None
        while True:
            chunk = self.store.listed(InstanceStatus.WAITING.value, True, _CHUNK, after)
            for rec in chunk:
                if rec.id not in self._active:
                    self._await_wake(rec.id, rec.wake_at, rec.waiting_types)
            self._pump()
            if len(chunk) < _CHUNK:
                return
            after = (chunk[-1].created_at, chunk[-1].id)
            await asyncio.sleep(0)

    def _continue_from_storage(self, rec: InstanceRecord) -> None:
        """Go on from what storage says about an instance nobody runs (recovery, or a worker that
        died before reporting). Call _pump afterwards."""
        if rec.finished:
            self._finish(rec.id)
        elif rec.status is InstanceStatus.RUNNING:
            self._wakeups[rec.id] = None
        elif rec.status is InstanceStatus.QUEUED:
            self._new[rec.id] = None
        elif rec.status is InstanceStatus.WAITING:
            self._await_wake(rec.id, rec.wake_at, rec.waiting_types)

    # -- instance operations -------------------------------------------------------------------

    def create(
        self,
        items: list[tuple[str, bytes]],
        skip_existing: bool,
        retention: dict[str, float] | None = None,
        schedule: dict[str, Any] | None = None,
        also: Callable[[Writer], None] | None = None,
    ) -> list[str]:
        """Create and queue instances (storage.instances.InstanceStore.create says what the
        options keep; `schedule` and `also` serve runtime/schedules.py)."""
        now = self.clock.now()
        created = self.store.create(items, now, skip_existing, retention, schedule, also)
        for rec in created:
            self._new[rec.id] = None
        self._pump()
        return [rec.id for rec in created]

    def snapshot(self, iid: str, steps: bool = False) -> Snapshot:
        rec = self._as_reported(self.store.require(iid))
        output = self.store.output(iid) if rec.has_output else None
        step_list = None
        if steps:
            found = self.store.steps(iid)
            step_list = [(n, c, s) for (n, c), s in sorted(found.items(), key=lambda i: i[1].seq)]
        return Snapshot(rec, output, step_list, iid in self._pausing)

    def reported(self, rec: InstanceRecord) -> Snapshot:
        """A stored record as status() reports it, without output or steps (for listings)."""
        return Snapshot(self._as_reported(rec), None, None, rec.id in self._pausing)

    def overlaid(self) -> set[str]:
        """The few instances whose reported status may differ from their stored one."""
        return self._pausing | set(self._faults)

    def fault(self, iid: str) -> dict[str, str] | None:
        """The error of an instance errored only in memory (storage full), if it is one."""
        return self._faults.get(iid)

    def _as_reported(self, rec: InstanceRecord) -> InstanceRecord:
        """An instance whose activation could not even write down its end (storage full) is
        reported errored, with that error, while storage still says it is unfinished."""
        fault = self._faults.get(rec.id)
        if fault is not None and not rec.finished:
            rec.status, rec.error = InstanceStatus.ERRORED, fault
        return rec

    def pause(self, iid: str) -> None:
        rec = self._unfinished(iid, "pause")
        if rec.status is InstanceStatus.PAUSED or iid in self._pausing:
            return
        worker = self._active.get(iid)
        if worker is not None:
            self._pausing.add(iid)
            worker.pause(iid)
            return
        self._dequeue(iid)
        rec.status, rec.wake_at, rec.paused_at = InstanceStatus.PAUSED, None, self.clock.now()
        self.store.save(rec)

    def resume(self, iid: str) -> None:
        rec = self.store.require(iid)
        if rec.status is not InstanceStatus.PAUSED:
            self._pausing.discard(iid)  # a pending pause is withdrawn; otherwise no effect
            return
        now = self.clock.now()
        if rec.paused_at is not None:
            self.store.shift_pending(iid, rec.paused_at, now - rec.paused_at)
        rec.status, rec.paused_at = InstanceStatus.RUNNING, None
        self.store.save(rec)
        self._wakeups[iid] = None
        self._pump()

    def terminate(self, iid: str, rollback: bool = False) -> None:
        if rollback:
            self._terminate_with_rollback(iid)
            return
        rec = self._unfinished(iid, "terminate")
        self._take_away(iid)
        rec.status, rec.wake_at, rec.ended_at = InstanceStatus.TERMINATED, None, self.clock.now()
        rec.rollback = cut_short(rec.rollback)
        self.store.save(rec)
        self._finish(iid)

    def _terminate_with_rollback(self, iid: str) -> None:
        """Stop the instance, then activate it once more to run its rollback handlers: the
        replay of run() registers them and stops at the first unfinished step; the activation
        then stores `terminated` (runtime/rollback.py). A waking instance goes first."""
        rec = self._unfinished(iid, "terminate")
        self._take_away(iid)
        rec.status, rec.wake_at, rec.waiting_types, rec.paused_at = (
            InstanceStatus.RUNNING,
            None,
            [],
            None,
        )
        rec.rollback = {"outcome": "running", "error": None, "terminate": True}
        self.store.save(rec)
        self._wakeups[iid] = None
        self._pump()

    def restart(self, iid: str, from_step: RestartPoint | None = None) -> None:
        """Run again from scratch, or keep the steps that ran before `from_step`: a name, or
        (name, count) or (name, count, type): the count-th step of that type and name, counted
        per type as Cloudflare does. Type "do", "sleep" or "waitForEvent"; when not given, the
        do-step of that name, or the one type that has the name."""
        rec = self.store.require(iid)
        from_seq = self._step_seq(iid, from_step) if from_step is not None else None
        self._take_away(iid)
        self.store.erase_steps(iid, from_seq)
        rec.status, rec.wake_at, rec.waiting_types = InstanceStatus.QUEUED, None, []
        rec.error, rec.ended_at, rec.paused_at, rec.has_output = None, None, None, False
        rec.rollback = None
        self.store.save(rec)
        self._new[iid] = None
        self._pump()

    def delete(self, iid: str) -> None:
        self.store.require(iid)
        self._take_away(iid)
        self.store.delete(iid)
        self._finish(iid)

    def send_event(self, iid: str, type_: str, payload: bytes) -> None:
        self._unfinished(iid, "send an event to")
        rec = self.store.add_event(iid, type_, payload, self.clock.now())
        worker = self._active.get(iid)
        if worker is not None:
            worker.event(iid, type_)
        elif rec.status is InstanceStatus.WAITING and type_ in rec.waiting_types:
            self._wake(iid)

    def wake(self, iids: list[str]) -> None:
        """Timers fired. Stale ones (the instance moved on) are ignored; the rest are queued
        together so they go out in batches."""
        horizon = self.clock.now() + self.wake_lead + _IMMEDIATE
        # Queued or running already (a timer and a recovery pass can both find it): no read.
        iids = [i for i in iids if i not in self._wakeups and i not in self._active]
        for iid, rec in zip(iids, self.store.get_many(iids), strict=True):
            if rec is not None and rec.finished:
                self._expire_if_due(rec)
                continue
            if rec is None or rec.status is not InstanceStatus.WAITING or rec.wake_at is None:
                continue
            if rec.wake_at <= horizon and iid not in self._active:
                self._wakeups[iid] = None
        self._pump()

    def wake_now(self, iid: str) -> bool:
        """Wake a waiting instance before its wake-up time: the attempt it hibernated on ended
        (runtime/compute.py). False while an activation still runs it (its outcome is not in
        yet): ask again."""
        if iid in self._active:
            return False
        rec = self.store.get(iid)
        if rec is not None and rec.status is InstanceStatus.WAITING:
            self._wake(iid)
        return True

    async def wait(self, iid: str, timeout: float | None) -> None:
        rec = self.store.require(iid)
        if rec.finished or iid in self._faults:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(iid, []).append(fut)
        try:
            await self.clock.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise WaitTimeoutError(
                f"instance {iid!r} did not finish within {show_seconds(timeout or 0.0)} seconds",
                id=iid,
            ) from None
        finally:
            waiters = self._waiters.get(iid, [])
            if fut in waiters:
                waiters.remove(fut)

    async def wait_all(self, iids: list[str], timeout: float | None) -> None:
        """Wait until every instance of `iids` is finished (one deadline for all)."""
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        for iid in iids:
            left = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
            await self.wait(iid, left)

    def _expire_if_due(self, rec: InstanceRecord) -> None:
        """A finished instance past its retention is deleted with all its keys (by the same
        store.delete as an explicit delete); its id can be used again."""
        due = rec.expires_at
        # Timers fire wake_lead early; deleting that early is harmless, missing it costs a rescan.
        horizon = self.clock.now() + self.wake_lead + _IMMEDIATE
        if due is not None and due <= horizon and rec.id not in self._active:
            self.store.delete(rec.id)
            self._finish(rec.id)
            self.expired += 1

    # -- dispatch ------------------------------------------------------------------------------

    def _pump(self) -> None:
        while len(self._tasks) < self.concurrency:
            # With a backlog, hand each worker several instances per call: a Ray call costs
            # more CPU than a short activation. Without one, one instance per call.
            backlog = len(self._wakeups) + len(self._new)
            size = min(self._fits, max(1, backlog // self.concurrency))
            batch: list[str] = []
            while len(batch) < size and (iid := _first(self._wakeups) or _first(self._new)):
                if iid in self._suspects and batch:
                    break  # a suspect runs alone
                self._dequeue(iid)
                batch.append(iid)
                if iid in self._suspects:
                    break
            if not batch:
                return
            task = asyncio.ensure_future(self._activate(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _activate(self, batch: list[str]) -> None:
        me = asyncio.current_task()
        worker = await self.pool.acquire()
        held = _Held(worker)  # this call's hold: a shared worker may run other batches too
        leases: dict[str, int] = {}
        recycle, lost = False, None
        try:
            leases = self.store.acquire(batch, self.clock.now())
            for iid in leases:
                self._active[iid] = held
            result = await worker.run_batch(list(leases.items()))
            self._learn_fit(len(leases), len(result.unstarted))
            self._requeue_first(self._release_from(held, result.unstarted))
            for iid, exc in result.failed.items():
                self._apply_failure(iid, exc)
            recycle = self._apply_outcomes(result.outcomes, held)
            if result.running:
                joined = [self._join(held, iid) for iid in result.running]
                recycle = any(await asyncio.gather(*joined)) or recycle
        except WorkerLost as exc:
            lost = str(exc) or "worker process died"
        except Exception as exc:
            log.error("activation of %s failed: %s", batch, brief(exc))
            log.debug("activation of %s failed", batch, exc_info=True)
        finally:
            orphans = self._release_from(held, list(leases))
            self.pool.release(worker, recycle or lost is not None)
            if lost is not None:
                self.store.fold_dead_attempts()  # what the dead worker had in flight
            if me is not None:
                self._tasks.discard(me)
            for iid in orphans:
                self._recover_orphan(iid, lost, alone=len(leases) == 1)
            self._pump()

    async def _join(self, held: _Held, iid: str) -> bool:
        """Apply the outcome of an activation its batch left running, as soon as it ends."""
        return self._apply_outcomes({iid: await held.worker.join(iid)}, held)

    def _learn_fit(self, sent: int, unstarted: int) -> None:
        """Cut batches to what a worker started last time it had more than it could; try twice
        as many after _PROBE_AFTER whole batches in a row (so a probe that fails costs a few
        handed-back instances once in a while, not every other batch)."""
        if unstarted:
            self._fits, self._whole = max(1, sent - unstarted), 0
        elif sent >= self._fits:
            self._whole += 1
            if self._whole >= _PROBE_AFTER:
                self._fits, self._whole = min(MAX_BATCH, 2 * self._fits), 0

    def _release_from(self, held: _Held, iids: list[str]) -> list[str]:
        """Forget that this call runs these; returns those it still ran (not taken away, nor
        handed to another call since)."""
        ours = [iid for iid in iids if self._active.get(iid) is held]
        for iid in ours:
            del self._active[iid]
        return ours

    # -- outcomes: one _apply_<kind> per way an activation ends ---------------------------------

    def _apply_outcomes(self, outcomes: dict[str, Outcome], held: _Held) -> bool:
        """Apply finished activations' outcomes; True if the worker should be replaced."""
        self._release_from(held, list(outcomes))
        self._suspects.difference_update(outcomes)
        for iid, outcome in outcomes.items():
            pausing = iid in self._pausing
            self._pausing.discard(iid)
            _APPLY[outcome.kind](self, iid, outcome, pausing)
        return any(o.recycle for o in outcomes.values())

    def _apply_complete(self, iid: str, outcome: Outcome, pausing: bool) -> None:
        self._finish(iid)

    def _apply_errored(self, iid: str, outcome: Outcome, pausing: bool) -> None:
        self._finish(iid)

    def _apply_paused(self, iid: str, outcome: Outcome, pausing: bool) -> None:
        if not pausing:
            self.resume(iid)  # the pause was withdrawn (resumed) while the step finished

    def _apply_waiting(self, iid: str, outcome: Outcome, pausing: bool) -> None:
        if pausing:
            self.pause(iid)
        else:
            self._await_wake(iid, outcome.wake_at, outcome.waiting_types)

    def _apply_stopped(self, iid: str, outcome: Outcome, pausing: bool) -> None:
        """Taken away while it ran: whoever took it (terminate, restart, delete) wrote its state."""

    def _apply_failure(self, iid: str, exc: Exception) -> None:
        """The worker could not run the activation at all (it raised instead of an Outcome)."""
        if isinstance(exc, StorageError):
            log.error("instance %s cannot be stored: %s", iid, exc)
            self._faults[iid] = {"name": type(exc).__name__, "message": str(exc)}
            self._finish(iid)
        else:
            log.error("activation of instance %s failed: %s", iid, brief(exc))

    def _requeue_first(self, iids: list[str]) -> None:
        """Handed back unstarted: back to the front of the queue (or paused, if asked to)."""
        paused = [i for i in iids if i in self._pausing]
        for iid in paused:
            self._pausing.discard(iid)
            self.pause(iid)  # no longer with a worker: paused in storage at once
        for iid in reversed([i for i in iids if i not in paused]):
            self._wakeups[iid] = None
            self._wakeups.move_to_end(iid, last=False)

    def _recover_orphan(self, iid: str, lost: str | None, alone: bool) -> None:
        """A worker ended (or died) without reporting on `iid`. What storage says decides: an
        instance that settled before the death goes on from there; one still running may be
        the one that killed the worker. Alone in its batch, that is certain and counts as a lost
        activation; in a batch it becomes a suspect and next runs alone, so others that merely
        shared the batch are never blamed."""
        self._pausing.discard(iid)
        rec = self.store.get(iid)
        if rec is None:
            return
        if rec.status is not InstanceStatus.RUNNING or lost is None:
            self._continue_from_storage(rec)
        elif alone:
            self._count_lost_activation(iid, lost)
        else:
            self._suspects.add(iid)
            self._wakeups[iid] = None

    def _count_lost_activation(self, iid: str, detail: str) -> None:
        """The process running `iid` died. Resume the instance, unless that keeps happening
        outside any step: a death during a step attempt is counted by that step's retry policy."""
        rec = self.store.get(iid)
        if rec is None or rec.finished:
            return
        steps = self.store.steps(iid).values()
        in_attempt = any(s.state is StepState.RUNNING for s in steps)
        rec.lost = 0 if in_attempt else rec.lost + 1
        if rec.lost < MAX_LOST_ACTIVATIONS:
            log.warning("worker running instance %s died (%d in a row); resuming", iid, rec.lost)
            self.store.save(rec, durable=False)
            self._wakeups[iid] = None
            return
        rec.status, rec.ended_at = InstanceStatus.ERRORED, self.clock.now()
        rec.error = {
            "name": "WorkerLostError",
            "message": f"the process running instance {iid!r} died {rec.lost} times in a row "
            f"without the instance reaching a wait or an end; last: {detail[:300]}",
        }
        self.store.save(rec)
        self._finish(iid)

    def _await_wake(self, iid: str, wake_at: float | None, types: list[str]) -> None:
        """A waiting instance: wake it now if its event is already buffered or its time is
        (nearly) here, else arm its timer."""
        if types and self.store.has_events(iid, types):
            self._wake(iid)
        elif wake_at is not None:
            if wake_at - self.clock.now() <= self.wake_lead + _IMMEDIATE:
                self._wake(iid)
            else:
                self.schedule_timer(iid, wake_at)

    def _wake(self, iid: str) -> None:
        if iid not in self._active:
            self._wakeups[iid] = None
            self._pump()

    # -- helpers -------------------------------------------------------------------------------

    def _unfinished(self, iid: str, op: str) -> InstanceRecord:
        rec = self.store.require(iid)
        if rec.finished:
            raise InvalidStateError(
                f"cannot {op} instance {iid!r}: it is already {rec.status}",
                id=iid,
                status=rec.status,
            )
        return rec

    def _take_away(self, iid: str) -> None:
        """Stop whatever runs the instance; its lease is bumped so a late write cannot land."""
        self._faults.pop(iid, None)
        self._suspects.discard(iid)
        self._dequeue(iid)
        self._pausing.discard(iid)
        worker = self._active.pop(iid, None)
        self.store.fence(iid)
        if worker is not None:
            worker.stop(iid)

    def _dequeue(self, iid: str) -> None:
        self._wakeups.pop(iid, None)
        self._new.pop(iid, None)

    def _finish(self, iid: str) -> None:
        """The instance is finished (or gone): wake everyone waiting for it, and arm its expiry
        if it has a retention."""
        self._suspects.discard(iid)
        for fut in self._waiters.pop(iid, []):
            if not fut.done():
                fut.set_result(None)
        self._arm_expiry(iid)

    def _arm_expiry(self, iid: str) -> None:
        """The expiry is already in the storage's timer index (written with the record); telling
        the timer service makes a short retention fire on time rather than at its next rescan.
        Only a hint: a record that cannot be read now expires at a later rescan."""
        try:
            rec = self.store.get(iid)
        except StorageError:  # corrupt or unreadable
            return
        due = None if rec is None else rec.expires_at
        if due is not None:
            self.schedule_timer(iid, due)

    def _step_seq(self, iid: str, from_step: RestartPoint) -> int:
        name, count, kind = _restart_point(from_step)
        found = self.store.steps(iid)
        if kind is None:  # no type given: the do-step of that name, else the one kind it has
            kinds = {s.kind for (n, _), s in found.items() if n == name}
            kind = StepKind.DO if StepKind.DO in kinds or len(kinds) != 1 else kinds.pop()
        same = sorted((s.seq for (n, _), s in found.items() if n == name and s.kind is kind))
        if not 1 <= count <= len(same):
            raise InvalidStepError(
                f"restart from {kind.display} step {name!r} #{count}: instance {iid!r} has no "
                "such step",
                value=repr((name, count, kind.display)),
            )
        return same[count - 1]

    def stats(self) -> dict[str, Any]:
        return {
            "active": len(self._active),
            "queued": len(self._new),
            "waking": len(self._wakeups),
        }


RestartPoint = str | tuple[str, int] | tuple[str, int, str | None]
_KINDS = {kind.display: kind for kind in StepKind}


def _restart_point(point: RestartPoint) -> tuple[str, int, StepKind | None]:
    name, count, type_ = (point, 1, None) if isinstance(point, str) else (*point, None)[:3]
    if (
        isinstance(count, bool)
        or not isinstance(count, int)
        or count < 1
        or (type_ is not None and type_ not in _KINDS)
    ):
        raise InvalidStepError(
            f"restart from step {name!r} #{count!r}: no such step can exist (the count is an "
            f"int >= 1, the type one of {sorted(_KINDS)})",
            value=repr(point),
        )
    return name, count, None if type_ is None else _KINDS[type_]


_DISPATCHED = (InstanceStatus.QUEUED, InstanceStatus.RUNNING)  # recovered before the first call
_CHUNK = 10_000


def _all_listed(store: Store, status: str) -> list[InstanceRecord]:
    """Every instance stored in `status`, oldest first, read through the index in chunks."""
    out: list[InstanceRecord] = []
    while True:
        after = (out[-1].created_at, out[-1].id) if out else None
        chunk = store.listed(status, True, _CHUNK, after)
        out += chunk
        if len(chunk) < _CHUNK:
            return out


def _first(ordered: OrderedDict[str, None]) -> str | None:
    return next(iter(ordered), None)


_Apply = Callable[[Namespace, str, Outcome, bool], None]
_APPLY: dict[OutcomeKind, _Apply] = {
    OutcomeKind.COMPLETE: Namespace._apply_complete,
    OutcomeKind.TERMINATED: Namespace._apply_complete,  # after a terminate with rollback
    OutcomeKind.ERRORED: Namespace._apply_errored,
    OutcomeKind.PAUSED: Namespace._apply_paused,
    OutcomeKind.WAITING: Namespace._apply_waiting,
    OutcomeKind.STOPPED: Namespace._apply_stopped,
}
