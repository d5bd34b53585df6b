"""An in-process raydo for unit tests: in-memory store, fake clock, Namespace with local runners."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from raydo.runtime.clock import FakeClock
from raydo.runtime.local import InstanceRunner, LocalPool
from raydo.runtime.model import WorkflowEntrypoint
from raydo.runtime.namespace import Namespace, WorkerLost
from raydo.storage.codec import decode, encode
from raydo.storage.instances import InstanceStore, check_schema
from raydo.storage.kv import KV, MemoryKV


class Harness:
    def __init__(
        self,
        cls: type[WorkflowEntrypoint],
        kv: KV | None = None,
        workers: int = 2,
        clock: FakeClock | None = None,
        batch_budget: float = 0.1,
        runner: type[InstanceRunner] = InstanceRunner,
        concurrency: int | None = None,
    ) -> None:
        self.kv = kv or MemoryKV()
        check_schema(self.kv)
        self.clock = clock or FakeClock()
        self.store = InstanceStore(self.kv, "wf")
        self.timers: dict[str, float] = {}
        runners = [
            runner(self.store, cls, self.clock, batch_budget=batch_budget) for _ in range(workers)
        ]
        self.threads = CountingExecutor()
        for each in runners:
            each.executor = self.threads
        LIVE.append(self)
        concurrency = concurrency or workers
        slots = -(-concurrency // workers)  # workers shared by several activations
        self.ns = Namespace(
            self.store, LocalPool(runners, slots), self.clock, self._schedule, concurrency
        )

    def _schedule(self, iid: str, due: float) -> None:
        self.timers[iid] = due

    async def idle(self, rounds: int = 50) -> None:
        """Let every ready task run (no time passes on any clock)."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def until(self, condition: Callable[[], bool], limit: float = 5.0) -> None:
        """Run the loop until `condition()` holds; `limit` real seconds bound it (for steps that
        run in threads)."""
        loop = asyncio.get_running_loop()
        deadline, spins = loop.time() + limit, 0
        while not condition():
            if loop.time() > deadline:
                raise AssertionError(f"condition not reached within {limit} s")
            spins += 1
            await asyncio.sleep(0 if spins < 1000 else 0.001)

    async def settle(self, limit: float = 5.0) -> None:
        """Run until nothing can move without the fake clock: no activation in flight, or those
        in flight wait on fake time (advance it) and no step runs in a thread. `limit` real
        seconds bound the wait for steps in threads."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        await self.idle()
        while self.ns._tasks and loop.time() < deadline:
            if self.threads.busy == 0:
                # A thread that just ended delivers its result through the loop, from its own
                # thread: a real pause lets that thread take the GIL (idle turns alone may all
                # run before it does, and the loop then looks quiet while it is not).
                await asyncio.sleep(0.002)
                await self.idle()
                if self.threads.busy == 0:
                    return
            await asyncio.wait(
                set(self.ns._tasks),
                timeout=min(0.01, max(0.0, deadline - loop.time())),
                return_when=asyncio.FIRST_COMPLETED,
            )
            await self.idle()

    async def advance(self, seconds: float) -> None:
        """Move the fake clock, firing the timers that fall due like the timer actor would."""
        await self.idle()  # sleepers about to start are registered first
        await self.clock.advance(seconds)
        for iid, due in sorted(self.timers.items(), key=lambda kv: kv[1]):
            if due <= self.clock.now():
                del self.timers[iid]
                self.ns.wake([iid])
        await self.settle()

    def create(self, iid: str, params: Any = None) -> str:
        return self.ns.create([(iid, encode(params))], skip_existing=False)[0]

    def status(self, iid: str) -> str:
        return self.ns.snapshot(iid).record.status

    def output(self, iid: str) -> Any:
        snap = self.ns.snapshot(iid)
        return None if snap.output is None else decode(snap.output)

    def error(self, iid: str) -> dict[str, str] | None:
        return self.ns.snapshot(iid).record.error


LIVE: list[Harness] = []  # the conftest waits for their step threads after each test


def finish_all() -> None:
    """Wait for every step thread a test's harnesses started: none may outlive its test."""
    for harness in LIVE:
        harness.threads.shutdown(wait=True)
    LIVE.clear()


class CountingExecutor(ThreadPoolExecutor):
    """Runs sync steps and counts those still running, so `settle` knows when only fake time
    can move things on."""

    def __init__(self) -> None:
        super().__init__(max_workers=8, thread_name_prefix="raydo-step")
        self.busy = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self.busy += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self.busy -= 1


class DyingRunner(InstanceRunner):
    """A worker whose process 'dies' (WorkerLost, every result of the batch lost) when it reaches
    an instance whose params are "poison", like a real instance actor killed mid-batch."""

    async def run_batch(self, items: list[tuple[str, int]]) -> Any:
        for iid, _ in items:
            raw = self.store.params(iid)
            if raw is not None and decode(raw) == "poison":
                raise WorkerLost(f"worker died running {iid}")
            await self.run(iid, items[[i for i, _ in items].index(iid)][1])
        raise WorkerLost("worker died after finishing its batch")
