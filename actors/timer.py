"""TimerActor: durable wake-ups for every workflow on one storage.

Timers live in LMDB (written with the instance record that needs them); this actor keeps them in
a heap, rebuilt from storage when it starts and rescanned now and then, and calls the instance's
namespace when one falls due. A wake-up is only a hint: the namespace checks the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from ..runtime.timers import TimerQueue
from ..storage.instances import due_timers
from ..storage.kv import open_lmdb
from . import handles
from .logs import forward_logs

log = logging.getLogger("raydo")

_RESCAN_EVERY = 10.0


class TimerActor:
    def __init__(self, storage: str) -> None:
        forward_logs()
        self.storage = storage
        self.kv = open_lmdb(storage)
        self.queue = TimerQueue()
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.Task[None] | None = None
        self._namespaces: dict[str, Any] = {}
        asyncio.get_running_loop().call_soon(self._ensure_loop)  # also after a restart

    def _ensure_loop(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
            self._rescan()
            self._loop = asyncio.ensure_future(self._run())
        return self._changed

    def _rescan(self) -> None:
        for due, workflow, iid in due_timers(self.kv, math.inf):
            self.queue.add(due, workflow, iid)

    async def start(self) -> int:
        self._ensure_loop()
        return len(self.queue)

    async def schedule(self, workflow: str, iid: str, due: float) -> None:
        changed = self._ensure_loop()
        self.queue.add(due, workflow, iid)
        changed.set()

    async def _run(self) -> None:
        assert self._changed is not None
        last_scan = time.time()
        while True:
            try:
                now = time.time()
                due: dict[str, list[str]] = {}
                for workflow, iid in self.queue.pop_due(now):
                    due.setdefault(workflow, []).append(iid)
                for workflow, iids in due.items():
                    self._fire(workflow, iids)
                if now - last_scan > _RESCAN_EVERY:
                    self._rescan()
                    last_scan = now
                nxt = self.queue.next_due()
                wait = _RESCAN_EVERY if nxt is None else min(_RESCAN_EVERY, max(0.0, nxt - now))
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
            except Exception:  # a timer loop that stops on one error stops every wake-up
                log.exception("timer loop error")
                await asyncio.sleep(0.1)

    def _fire(self, workflow: str, iids: list[str]) -> None:
        """One call per workflow for every wake-up due now."""
        handle = self._namespaces.get(workflow)
        if handle is None:
            handle = handles.existing_namespace(self.storage, workflow)
            if handle is None:
                return  # its namespace is not running; it reschedules its timers when it starts
            self._namespaces[workflow] = handle
        handle.wake.remote(iids)
