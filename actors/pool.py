"""A warm pool of InstanceActors for one namespace, and the Worker adapter the namespace uses.

Starting a Ray actor costs ~330 ms (a new process), so actors are created ahead of need, reused for
activation after activation, and replaced in the background when one dies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from ..runtime.engine import BatchResult, Outcome
from ..runtime.metrics import Tally
from ..runtime.namespace import Worker, WorkerLost

log = logging.getLogger("raydo")


class RayWorker:
    """The namespace's view of one InstanceActor."""

    def __init__(
        self, handle: Any, generation: int = 0, on_metrics: Callable[[Tally], None] | None = None
    ) -> None:
        self.handle = handle
        self.generation = generation  # the pool's generation (workflow code) it was made for
        self.on_metrics = on_metrics

    async def run_batch(self, items: list[tuple[str, int]]) -> BatchResult:
        result: BatchResult = await self._call(self.handle.run_batch.remote(items))
        if result.metrics and self.on_metrics is not None:
            self.on_metrics(result.metrics)
        return result

    async def join(self, iid: str) -> Outcome:
        outcome: Outcome = await self._call(self.handle.join.remote(iid))
        if self.on_metrics is not None:
            await self._collect_metrics()
        return outcome

    async def _collect_metrics(self) -> None:
        """After a join: the activation's step metrics (a lost report only loses counts)."""
        try:
            tally: Tally = await self.handle.take_metrics.remote()
        except Exception:
            return
        if tally and self.on_metrics is not None:
            self.on_metrics(tally)

    async def _call(self, ref: Any) -> Any:
        try:
            return await ref
        except RayActorError as exc:
            raise WorkerLost(str(exc)) from None
        except RayTaskError as exc:
            raise exc.cause if isinstance(exc.cause, Exception) else exc from None

    def pause(self, iid: str) -> None:
        self.handle.pause.remote(iid)

    def stop(self, iid: str) -> None:
        self.handle.stop.remote(iid)

    def event(self, iid: str, type_: str) -> None:
        self.handle.event.remote(iid, type_)


class ActorPool:
    """At most `max_size` instance actors, each handed out to at most `slots` activations at a
    time (WorkflowOptions.actors: fewer actors than `concurrency` share them). The least busy
    actor is chosen; a new one starts only when every actor is busy."""

    def __init__(
        self,
        factory: Callable[[], Any],
        max_size: int,
        warm: int,
        on_metrics: Callable[[Tally], None] | None = None,
        slots: int = 1,
    ) -> None:
        self._factory = factory
        self._on_metrics = on_metrics
        self._max, self._slots = max_size, slots
        self._warm = min(warm, max_size)
        self._leases: dict[RayWorker, int] = {}  # every live actor, with its activations
        self._retiring: set[RayWorker] = set()  # killed once their last activation ends
        self._freed = asyncio.Event()
        self._generation = 0

    def prestart(self) -> None:
        while self.size < self._warm:
            self._spawn()

    def _spawn(self) -> RayWorker:
        worker = RayWorker(self._factory(), self._generation, self._on_metrics)
        self._leases[worker] = 0
        return worker

    def retire_workers(self) -> None:
        """The workflow's code changed: idle workers are replaced now, busy ones when their
        activations end, so every new activation runs the new code."""
        self._generation += 1
        for worker in list(self._leases):
            self._retire(worker)
        self.prestart()

    async def acquire(self) -> RayWorker:
        while True:
            open_ = [w for w, n in self._leases.items() if w not in self._retiring]
            best = min(open_, key=self._leases.__getitem__, default=None)
            if (best is None or self._leases[best] > 0) and self.size < self._max:
                best = self._spawn()
            if best is not None and self._leases[best] < self._slots:
                self._leases[best] += 1
                return best
            self._freed.clear()
            await self._freed.wait()

    def release(self, worker: Worker, broken: bool = False) -> None:
        assert isinstance(worker, RayWorker)
        self._leases[worker] -= 1
        if broken or worker.generation != self._generation or worker in self._retiring:
            self._retire(worker)
            self.prestart()
        self._freed.set()

    def _retire(self, worker: RayWorker) -> None:
        """No new activation goes to `worker`; it is killed when its last one has ended."""
        self._retiring.add(worker)
        if self._leases[worker] == 0:
            del self._leases[worker]
            self._retiring.discard(worker)
            ray.kill(worker.handle, no_restart=True)

    @property
    def size(self) -> int:
        """Live actors that take new activations."""
        return len(self._leases) - len(self._retiring)
