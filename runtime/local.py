"""Workers that run activations in this process: the unit-test double of the Ray instance actors,
built from the same Activation, so the namespace logic is tested without Ray."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

from ..errors import CorruptRecordError
from ..storage.codec import register_models
from .clock import Clock
from .compute import ComputeExecutor
from .engine import Activation, BatchResult, Outcome, OutcomeKind
from .model import Env, WorkflowEntrypoint
from .options import HIBERNATE_AFTER
from .store import Store

BATCH_BUDGET = 0.1


class InstanceRunner:
    """Runs one activation at a time for one workflow class; what an InstanceActor wraps."""

    def __init__(
        self,
        store: Store,
        workflow_cls: type[WorkflowEntrypoint],
        clock: Clock,
        env: Env | None = None,
        hibernate_after: float = HIBERNATE_AFTER,
        batch_budget: float = BATCH_BUDGET,
        code: str | None = None,
        compute: ComputeExecutor | None = None,
    ) -> None:
        self.store, self.cls, self.clock, self.env = store, workflow_cls, clock, env
        self.code, self.compute = code, compute
        self.batch_budget = batch_budget
        register_models(getattr(workflow_cls.run, "__globals__", {}))
        self.hibernate_after = hibernate_after
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="raydo-step")
        self.current: dict[str, Activation] = {}  # the activations running now, by instance
        self._joinable: dict[str, asyncio.Future[Outcome]] = {}
        self._pause_at_start: set[str] = set()  # paused while waiting their turn in a batch
        self._batched: set[str] = set()  # run by run_batch, which syncs their ends
        self._end_unsynced = False  # an activation's end left for run_batch to sync

    async def run_batch(self, items: list[tuple[str, int]]) -> BatchResult:
        """Run activations one after another. Past `budget` seconds no further one starts; one
        still running then is left running for `join`, and the rest go back unstarted. A batch
        of one simply runs to its end. Several batches may run at once (a worker shared by
        `slots` activations, WorkflowOptions.actors): their durable commits share fsyncs."""
        result, budget = BatchResult(), self.batch_budget
        start = self.clock.monotonic()
        try:
            for k, (iid, lease) in enumerate(items):
                left = budget - (self.clock.monotonic() - start)
                if k and left <= 0:
                    result.unstarted = [i for i, _ in items[k:]]
                    break
                # Its end is synced below, with the others' (each one's first commit covers
                # the one before): one fsync per batch, not one per activation.
                self._batched.add(iid)
                task = asyncio.ensure_future(self.run(iid, lease))
                # a timeout, or the activation's own error (read from the task below)
                with contextlib.suppress(Exception):
                    await self.clock.wait_for(
                        asyncio.shield(task), max(left, 0) if len(items) > 1 else None
                    )
                if not task.done():
                    self._leave_batch(iid)  # left running: it syncs its own end
                    self._joinable[iid] = task
                    result.running = [iid]
                    result.unstarted = [i for i, _ in items[k + 1 :]]
                    break
                try:
                    result.outcomes[iid] = task.result()
                except Exception as exc:  # reported per instance; the rest of the batch goes on
                    result.failed[iid] = exc
        finally:
            self._batched.difference_update(iid for iid, _ in items)
        if self._end_unsynced:  # (a sync covers every commit of this process so far)
            self._end_unsynced = False
            self.store.sync()  # every end above is durable before the namespace learns of it
        self._pause_at_start.difference_update(result.unstarted)
        return result

    def _leave_batch(self, iid: str) -> None:
        self._batched.discard(iid)
        act = self.current.get(iid)
        if act is not None:
            act.end_sync_left = False

    async def join(self, iid: str) -> Outcome:
        """The outcome of an activation a batch left running."""
        task = self._joinable[iid]
        try:
            return await task
        finally:
            self._joinable.pop(iid, None)

    async def run(self, iid: str, lease: int) -> Outcome:
        try:
            loaded = self.store.load(iid)
            record, steps, params = loaded.record, loaded.steps, loaded.params
            modifiers = loaded.modifiers
            if loaded.lease != lease:  # taken away before it started: run no user code
                return Outcome(OutcomeKind.STOPPED)
        except CorruptRecordError:  # the activation reports it as the instance's error
            record, steps, params, modifiers = self.store.require(iid), None, None, None
        act = Activation(
            self.store,
            self.cls,
            record,
            lease,
            self.clock,
            self.env,
            self.executor,
            self.hibernate_after,
            self.code,
            self.compute,
        )
        act.preload(steps, params, modifiers)
        act.end_sync_left = iid in self._batched
        if iid in self._pause_at_start:
            self._pause_at_start.discard(iid)
            act.request_pause()
        self.current[iid] = act
        try:
            outcome = await act.run()
        finally:
            if self.current.get(iid) is act:  # not a newer activation of the same instance
                del self.current[iid]
        self._end_unsynced = self._end_unsynced or act.end_unsynced
        outcome.recycle = any(not stray.done() for stray in act.strays)
        return outcome

    def _matching(self, iid: str) -> Activation | None:
        return self.current.get(iid)

    def earliest_deadline(self) -> float | None:
        """clock.monotonic() by which the earliest running attempt of any activation must end."""
        found = [d for a in self.current.values() if (d := a.earliest_deadline()) is not None]
        return min(found, default=None)

    def pause(self, iid: str) -> None:
        if (act := self._matching(iid)) is not None:
            act.request_pause()
        else:
            self._pause_at_start.add(iid)

    def stop(self, iid: str) -> None:
        if (act := self._matching(iid)) is not None:
            act.stop()

    def event(self, iid: str, type_: str) -> None:
        if (act := self._matching(iid)) is not None:
            act.event_arrived(type_)


class LocalPool:
    """In-process runners, each handed out to at most `slots` activations at a time (the least
    busy first)."""

    def __init__(self, runners: list[InstanceRunner], slots: int = 1) -> None:
        self._leases = dict.fromkeys(runners, 0)
        self._slots = slots
        self._freed = asyncio.Event()

    async def acquire(self) -> InstanceRunner:
        while True:
            runner = min(self._leases, key=self._leases.__getitem__)
            if self._leases[runner] < self._slots:
                self._leases[runner] += 1
                return runner
            self._freed.clear()
            await self._freed.wait()

    def release(self, worker: InstanceRunner, broken: bool = False) -> None:
        self._leases[worker] -= 1
        self._freed.set()
