"""The namespace: every instance of one workflow, routed by id. Plain asyncio; no Ray.

It owns the instances that hold no actor (creating, queueing, pausing, terminating them in storage)
and hands runnable ones to workers, at most `concurrency` at a time. Instances waking from a sleep
or an event go ahead of new ones. A worker runs one activation and reports its Outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import (
    InvalidStateError,
    InvalidStepError,
    StorageError,
    WaitTimeoutError,
)
from ..storage.instances import InstanceRecord, InstanceStore, StepRecord
from .clock import Clock
from .engine import BatchResult, Outcome

log = logging.getLogger("raydo")

# An instance whose process dies this many activations in a row is errored, not retried forever.
MAX_LOST_ACTIVATIONS = 20
# At most this many queued instances go to a worker in one call.
MAX_BATCH = 16
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
        store: InstanceStore,
        pool: WorkerPool,
        clock: Clock,
        schedule_timer: Callable[[str, float], None],
        concurrency: int,
        wake_lead: float = 0.0,
    ) -> None:
        self.store, self.pool, self.clock = store, pool, clock
        self.schedule_timer = schedule_timer
        # Wake instances this much before their time: dispatch and replay happen early and the
        # engine sleeps the rest in memory (it must be below the engine's hibernate_after).
        self.wake_lead = wake_lead
        self.concurrency = concurrency
        self._active: dict[str, Worker] = {}
        self._wakeups: dict[str, None] = {}  # ordered sets: waking instances go first
        self._new: dict[str, None] = {}
        self._pausing: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Errors an activation could not even write down (storage full or broken): reported by
        # status() until the instance is restarted or deleted; storage still says it is unfinished.
        self._faults: dict[str, dict[str, str]] = {}
        # Instances that were in a batch whose worker died: each runs alone until it settles.
        self._suspects: set[str] = set()

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> int:
        """Pick up every unfinished instance found in storage. Returns how many were resumed."""
        count = 0
        for rec in sorted(self.store.records(), key=lambda r: r.created_at):
            if not rec.finished and rec.status != "paused":
                self._take_up(rec)
                count += 1
        self._pump()
        return count

    def _take_up(self, rec: InstanceRecord) -> None:
        """Go on from what storage says about an instance nobody runs (recovery, or a worker that
        died before reporting). Call _pump afterwards."""
        if rec.finished:
            self._finished(rec.id)
        elif rec.status in ("running", "waitingForPause"):
            self._wakeups[rec.id] = None
        elif rec.status == "queued":
            self._new[rec.id] = None
        elif rec.status == "waiting":
            self._after_waiting(rec.id, rec.wake_at, rec.waiting_types)

    # -- instance operations -------------------------------------------------------------------

    def create(self, items: list[tuple[str, bytes]], skip_existing: bool) -> list[str]:
        created = self.store.create(items, self.clock.now(), skip_existing)
        for rec in created:
            self._new[rec.id] = None
        self._pump()
        return [rec.id for rec in created]

    def snapshot(self, iid: str, steps: bool = False) -> Snapshot:
        rec = self.store.require(iid)
        fault = self._faults.get(iid)
        if fault is not None and not rec.finished:
            rec.status, rec.error = "errored", fault
        output = self.store.output(iid) if rec.has_output else None
        step_list = None
        if steps:
            found = self.store.steps(iid)
            step_list = [(n, c, s) for (n, c), s in sorted(found.items(), key=lambda i: i[1].seq)]
        return Snapshot(rec, output, step_list, iid in self._pausing)

    def summaries(self) -> list[Snapshot]:
        """Every instance as status() reports it, without output or steps (for listings)."""
        found = []
        for rec in self.store.records():
            fault = self._faults.get(rec.id)
            if fault is not None and not rec.finished:
                rec.status, rec.error = "errored", fault
            found.append(Snapshot(rec, None, None, rec.id in self._pausing))
        return found

    def pause(self, iid: str) -> None:
        rec = self._unfinished(iid, "pause")
        if rec.status == "paused" or iid in self._pausing:
            return
        worker = self._active.get(iid)
        if worker is not None:
            self._pausing.add(iid)
            worker.pause(iid)
            return
        self._dequeue(iid)
        rec.status, rec.wake_at, rec.paused_at = "paused", None, self.clock.now()
        self.store.save(rec)

    def resume(self, iid: str) -> None:
        rec = self.store.require(iid)
        if rec.status != "paused":
            self._pausing.discard(iid)  # a pending pause is withdrawn; otherwise no effect
            return
        now = self.clock.now()
        if rec.paused_at is not None:
            self.store.shift_pending(iid, rec.paused_at, now - rec.paused_at)
        rec.status, rec.paused_at = "running", None
        self.store.save(rec)
        self._wakeups[iid] = None
        self._pump()

    def terminate(self, iid: str) -> None:
        rec = self._unfinished(iid, "terminate")
        self._take_away(iid)
        rec.status, rec.wake_at, rec.ended_at = "terminated", None, self.clock.now()
        self.store.save(rec)
        self._finished(iid)

    def restart(self, iid: str, from_step: str | tuple[str, int] | None = None) -> None:
        rec = self.store.require(iid)
        from_seq = self._step_seq(iid, from_step) if from_step is not None else None
        self._take_away(iid)
        self.store.erase_steps(iid, from_seq)
        rec.status, rec.wake_at, rec.waiting_types = "queued", None, []
        rec.error, rec.ended_at, rec.paused_at, rec.has_output = None, None, None, False
        self.store.save(rec)
        self._new[iid] = None
        self._pump()

    def delete(self, iid: str) -> None:
        self.store.require(iid)
        self._take_away(iid)
        self.store.delete(iid)
        self._finished(iid)

    def send_event(self, iid: str, type_: str, payload: bytes) -> None:
        rec = self.store.add_event(iid, type_, payload, self.clock.now())
        worker = self._active.get(iid)
        if worker is not None:
            worker.event(iid, type_)
        elif rec.status == "waiting" and type_ in rec.waiting_types:
            self._wake(iid)

    def wake(self, iids: list[str]) -> None:
        """Timers fired. Stale ones (the instance moved on) are ignored; the rest are queued
        together so they go out in batches."""
        horizon = self.clock.now() + self.wake_lead + _IMMEDIATE
        for iid in iids:
            rec = self.store.get(iid)
            if rec is None or rec.status != "waiting" or rec.wake_at is None:
                continue
            if rec.wake_at <= horizon and iid not in self._active:
                self._wakeups[iid] = None
        self._pump()

    async def wait(self, iid: str, timeout: float | None) -> None:
        rec = self.store.require(iid)
        if rec.finished or iid in self._faults:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(iid, []).append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise WaitTimeoutError(
                f"instance {iid!r} did not finish within {timeout} seconds", id=iid
            ) from None
        finally:
            waiters = self._waiters.get(iid, [])
            if fut in waiters:
                waiters.remove(fut)

    async def wait_all(self, iids: list[str], timeout: float | None) -> None:
        """Wait until every instance of `iids` is finished (one deadline for all)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for iid in iids:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            await self.wait(iid, left)

    # -- dispatch ------------------------------------------------------------------------------

    def _pump(self) -> None:
        while len(self._tasks) < self.concurrency:
            # With a backlog, hand each worker several instances per call: a Ray call costs
            # more CPU than a short activation. Without one, one instance per call.
            backlog = len(self._wakeups) + len(self._new)
            size = min(MAX_BATCH, max(1, backlog // self.concurrency))
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
        leases: dict[str, int] = {}
        recycle, lost = False, None
        try:
            leases = self.store.acquire(batch, self.clock.now())
            for iid in leases:
                self._active[iid] = worker
            result = await worker.run_batch(list(leases.items()))
            self._requeue_first(self._released(result.unstarted, worker))
            for iid, exc in result.failed.items():
                self._failed(iid, exc)
            recycle = self._settled(result.outcomes, worker)
            if result.running is not None:
                outcome = await worker.join(result.running)
                recycle = self._settled({result.running: outcome}, worker) or recycle
        except WorkerLost as exc:
            lost = str(exc) or "worker process died"
        except Exception:
            log.exception("activation of %s failed", batch)
        finally:
            orphans = self._released(list(leases), worker)
            self.pool.release(worker, recycle or lost is not None)
            if me is not None:
                self._tasks.discard(me)
            for iid in orphans:
                self._orphaned(iid, lost, alone=len(leases) == 1)
            self._pump()

    def _released(self, iids: list[str], worker: Worker) -> list[str]:
        """Forget that `worker` runs these; returns those it still ran (not taken away)."""
        ours = [iid for iid in iids if self._active.get(iid) is worker]
        for iid in ours:
            del self._active[iid]
        return ours

    def _settled(self, outcomes: dict[str, Outcome], worker: Worker) -> bool:
        """Apply finished activations' outcomes; True if the worker should be replaced."""
        self._released(list(outcomes), worker)
        self._suspects.difference_update(outcomes)
        for iid, outcome in outcomes.items():
            self._after(iid, outcome)
        return any(o.recycle for o in outcomes.values())

    def _failed(self, iid: str, exc: Exception) -> None:
        if isinstance(exc, StorageError):
            log.error("instance %s cannot be stored: %s", iid, exc)
            self._faults[iid] = {"name": type(exc).__name__, "message": str(exc)}
            self._finished(iid)
        else:
            log.error("activation of instance %s failed: %r", iid, exc)

    def _requeue_first(self, iids: list[str]) -> None:
        """Handed back unstarted: back to the front of the queue (or paused, if asked to)."""
        paused = [i for i in iids if i in self._pausing]
        for iid in paused:
            self._pausing.discard(iid)
            self.pause(iid)  # no longer with a worker: paused in storage at once
        rest = [i for i in iids if i not in paused]
        if rest:
            self._wakeups = {**dict.fromkeys(rest), **self._wakeups}

    def _orphaned(self, iid: str, lost: str | None, alone: bool) -> None:
        """A worker ended (or died) without reporting on `iid`. What storage says decides: an
        instance that settled before the death goes on from there; one still 'running' may be
        the one that killed the worker. Alone in its batch, that is certain and counts as a lost
        activation; in a batch it becomes a suspect and next runs alone, so others that merely
        shared the batch are never blamed."""
        self._pausing.discard(iid)
        rec = self.store.get(iid)
        if rec is None:
            return
        if rec.status not in ("running", "waitingForPause") or lost is None:
            self._take_up(rec)
        elif alone:
            self._worker_lost(iid, lost)
        else:
            self._suspects.add(iid)
            self._wakeups[iid] = None

    def _worker_lost(self, iid: str, detail: str) -> None:
        """The process running `iid` died. Resume the instance, unless that keeps happening
        outside any step: a death during a step attempt is counted by that step's retry policy."""
        rec = self.store.get(iid)
        if rec is None or rec.finished:
            return
        in_attempt = any(s.state == "running" for s in self.store.steps(iid).values())
        rec.lost = 0 if in_attempt else rec.lost + 1
        if rec.lost < MAX_LOST_ACTIVATIONS:
            log.warning("worker running instance %s died (%d in a row); resuming", iid, rec.lost)
            self.store.save(rec, durable=False)
            self._wakeups[iid] = None
            return
        rec.status, rec.ended_at = "errored", self.clock.now()
        rec.error = {
            "name": "WorkerLostError",
            "message": f"the process running instance {iid!r} died {rec.lost} times in a row "
            f"without the instance reaching a wait or an end; last: {detail[:300]}",
        }
        self.store.save(rec)
        self._finished(iid)

    def _after(self, iid: str, outcome: Outcome) -> None:
        pausing = iid in self._pausing
        self._pausing.discard(iid)
        if outcome.status in ("complete", "errored"):
            self._finished(iid)
        elif outcome.status == "paused" and not pausing:
            self.resume(iid)  # the pause was withdrawn (resumed) while the step finished
        elif outcome.status == "waiting":
            if pausing:
                self.pause(iid)
            else:
                self._after_waiting(iid, outcome.wake_at, outcome.waiting_types)

    def _after_waiting(self, iid: str, wake_at: float | None, types: list[str]) -> None:
        if types and self.store.has_events(iid, types):
            self._wake(iid)
        elif wake_at is not None:
            if wake_at - self.clock.now() <= self.wake_lead + _IMMEDIATE:
                self._wake(iid)
            else:
                self.schedule_timer(iid, wake_at - self.wake_lead)

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

    def _finished(self, iid: str) -> None:
        self._suspects.discard(iid)
        for fut in self._waiters.pop(iid, []):
            if not fut.done():
                fut.set_result(None)

    def _step_seq(self, iid: str, from_step: str | tuple[str, int]) -> int:
        name, count = (from_step, 1) if isinstance(from_step, str) else from_step
        step = self.store.steps(iid).get((name, count))
        if step is None:
            raise InvalidStepError(
                f"restart from step {name!r} #{count}: instance {iid!r} has no such step",
                value=repr((name, count)),
            )
        return step.seq

    def stats(self) -> dict[str, Any]:
        return {
            "active": len(self._active),
            "queued": len(self._new),
            "waking": len(self._wakeups),
        }


def _first(ordered: dict[str, None]) -> str | None:
    return next(iter(ordered), None)
