"""InstanceActor: the process an instance runs in while it runs. A shell around InstanceRunner,
plus a watchdog for the one fault asyncio cannot time out: code that blocks the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from ..runtime.clock import clock_for
from ..runtime.engine import BatchResult, Outcome
from ..runtime.local import InstanceRunner
from ..runtime.metrics import MeteredStore, Tally
from ..runtime.model import Env, WorkflowEntrypoint
from ..runtime.options import WorkflowOptions
from ..storage.instances import clock_offset
from ..storage.kv import open_lmdb
from .compute import RayCompute
from .logs import forward_logs

log = logging.getLogger("raydo")

_BEAT = 0.2  # seconds between loop heartbeats
_GRACE = 1.0  # slack past a deadline before the watchdog acts
WATCHDOG_EXIT_CODE = 70


class InstanceActor:
    def __init__(
        self,
        storage: str,
        workflow: str,
        workflow_cls: type[WorkflowEntrypoint],
        options: WorkflowOptions,
        code: str | None = None,
    ) -> None:
        forward_logs()
        kv = open_lmdb(storage)
        clock = clock_for(lambda: clock_offset(kv))  # SystemClock outside raydo.testing
        self.tally = Tally()
        store = MeteredStore(kv, workflow, clock=clock, tally=self.tally)
        store.now = clock.now
        self.runner = InstanceRunner(
            store,
            workflow_cls,
            clock,
            Env(dict(options.env)),
            options.hibernate_after,
            code=code,
            compute=RayCompute(storage, options.infeasible_after),
        )
        self.block_limit = options.block_limit
        self._beat = time.monotonic()
        asyncio.get_running_loop().call_soon(self._heartbeat)
        threading.Thread(target=self._watch, name="raydo-watchdog", daemon=True).start()

    async def run_batch(self, items: list[tuple[str, int]]) -> BatchResult:
        result = await self.runner.run_batch(items)
        result.metrics = self.tally.take()  # carried home with the result: no call of its own
        return result

    async def take_metrics(self) -> Tally:
        """The step metrics not yet reported (after a join, which returns an Outcome only)."""
        return self.tally.take()

    async def join(self, iid: str) -> Outcome:
        return await self.runner.join(iid)

    async def pause(self, iid: str) -> None:
        self.runner.pause(iid)

    async def stop(self, iid: str) -> None:
        self.runner.stop(iid)

    async def event(self, iid: str, type_: str) -> None:
        self.runner.event(iid, type_)

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        asyncio.get_running_loop().call_later(_BEAT, self._heartbeat)

    def _watch(self) -> None:
        """Exit the process when user code has blocked the loop past what it may take: the
        running attempt's timeout, or `block_limit` for code outside steps. The namespace sees
        the worker die; the attempt counts as failed and is retried by its policy."""
        while True:
            time.sleep(_BEAT)
            running = list(self.runner.current)
            now = time.monotonic()
            if not running or now - self._beat < _BEAT * 5:
                continue
            deadline = self.runner.earliest_deadline() or (self._beat + self.block_limit)
            if now > deadline + _GRACE:
                log.error(
                    "instance %s blocked its event loop for %.1fs; restarting its worker",
                    ", ".join(running),
                    now - self._beat,
                )
                os._exit(WATCHDOG_EXIT_CODE)
