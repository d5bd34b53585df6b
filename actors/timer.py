"""TimerActor: durable wake-ups for every workflow on one storage. A shell around
runtime.timers.TimerService; this file only knows how to reach a namespace actor."""

from __future__ import annotations

import asyncio
from typing import Any

from ..runtime.clock import clock_for
from ..runtime.options import WorkflowOptions
from ..runtime.timers import TimerService
from ..storage.instances import TimerIndex, clock_offset
from ..storage.kv import open_lmdb
from . import handles
from .logs import forward_logs


class TimerActor:
    def __init__(self, storage: str) -> None:
        forward_logs()
        self.storage = storage
        self._namespaces: dict[str, Any] = {}
        kv = open_lmdb(storage)
        self.service = TimerService(
            clock_for(lambda: clock_offset(kv)),  # SystemClock outside raydo.testing
            TimerIndex(kv),
            self._fire,
            WorkflowOptions().wake_lead,
        )
        # Start at once, also after Ray restarts this actor (__init__ runs inside its loop).
        self._loop = asyncio.get_running_loop().create_task(self.service.run())

    async def start(self) -> int:
        return len(self.service.queue)

    async def schedule(self, workflow: str, iid: str, due: float) -> None:
        self.service.schedule(workflow, iid, due)

    async def schedule_many(self, workflow: str, timers: list[tuple[str, float]]) -> None:
        for iid, due in timers:
            self.service.schedule(workflow, iid, due)

    def _fire(self, workflow: str, iids: list[str]) -> None:
        handle = self._namespaces.get(workflow)
        if handle is None:
            handle = handles.existing_namespace(self.storage, workflow)
            if handle is None:
                return  # its namespace is not running; it rearms its timers when it starts
            self._namespaces[workflow] = handle
        handle.wake.remote(iids)
