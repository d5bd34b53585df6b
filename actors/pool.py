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
    def __init__(
        self,
        factory: Callable[[], Any],
        max_size: int,
        warm: int,
        on_metrics: Callable[[Tally], None] | None = None,
    ) -> None:
        self._factory = factory
        self._on_metrics = on_metrics
        self._max = max_size
        self._warm = min(warm, max_size)
        self._idle: list[RayWorker] = []
        self._size = 0
        self._freed = asyncio.Event()
        self._generation = 0

    def prestart(self) -> None:
        while self._size < self._warm:
            self._idle.append(self._spawn())

    def _spawn(self) -> RayWorker:
        self._size += 1
        return RayWorker(self._factory(), self._generation, self._on_metrics)

    def retire_workers(self) -> None:
        """The workflow's code changed: idle workers are replaced now, busy ones when they
        come back, so every new activation runs the new code."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for worker in idle:
            self._discard(worker)
        self.prestart()

    async def acquire(self) -> RayWorker:
        while True:
            if self._idle:
                return self._idle.pop()
            if self._size < self._max:
                return self._spawn()
            self._freed.clear()
            await self._freed.wait()

    def release(self, worker: Worker, broken: bool = False) -> None:
        assert isinstance(worker, RayWorker)
        if broken or worker.generation != self._generation:
            self._discard(worker)
            self.prestart()
        else:
            self._idle.append(worker)
        self._freed.set()

    def _discard(self, worker: RayWorker) -> None:
        self._size -= 1
        ray.kill(worker.handle, no_restart=True)

    @property
    def size(self) -> int:
        return self._size
