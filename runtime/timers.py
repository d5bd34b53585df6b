"""Durable wake-ups, without Ray: a due-time queue in memory over the storage's timer index.

The index in storage (written with the instance record that needs it) is the truth; the queue
holds only the wake-ups due within `horizon`, refilled by a rescan that reads just those. So
memory and rescan cost follow the number of timers due soon, not the number of instances waiting.
A fired wake-up is only a hint: the namespace checks the record before it acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable

from .clock import Clock
from .store import Timers

log = logging.getLogger("raydo")

RESCAN_EVERY = 10.0
# Wake-ups due within this many seconds are held in memory (with the default rescan period);
# later ones are read from the index by a rescan, so nobody needs to send them.
HORIZON = 2 * RESCAN_EVERY
FIRE_CHUNK = 2_000  # wake-ups per call to a namespace
# Wake-ups due this soon after one that fires go out in the same call (so a crowd due over a
# few seconds costs a call per few ms, not one per instance). Below the early arrival a
# namespace accepts (runtime/namespace.py `_IMMEDIATE`, 5 ms; a test holds them to it).
COALESCE = 0.004


class TimerQueue:
    """Due times, one entry per instance (the latest schedule wins)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str, str]] = []
        self._due: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self._due)

    def add(self, due: float, workflow: str, iid: str) -> None:
        key = (workflow, iid)
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, workflow, iid))

    def next_due(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[tuple[str, str]]:
        """Every (workflow, id) due at or before `now`, earliest first."""
        fired = []
        while self._heap and self._heap[0][0] <= now:
            due, workflow, iid = heapq.heappop(self._heap)
            if self._due.get((workflow, iid)) == due:
                del self._due[(workflow, iid)]
                fired.append((workflow, iid))
        return fired

    def _drop_stale(self) -> None:
        while self._heap and self._due.get(self._heap[0][1:]) != self._heap[0][0]:
            heapq.heappop(self._heap)


class TimerService:
    """Fires `fire(workflow, ids)` for wake-ups as they fall due, `lead` seconds early (so the
    instance is dispatched and replayed by its due time), one call per workflow per round."""

    def __init__(
        self,
        clock: Clock,
        timers: Timers,
        fire: Callable[[str, list[str]], None],
        lead: float = 0.0,
        rescan_every: float = RESCAN_EVERY,
    ) -> None:
        self.clock, self.timers, self.fire = clock, timers, fire
        self.lead, self.rescan_every = lead, rescan_every
        self.queue = TimerQueue()
        self._changed = asyncio.Event()
        self._next_scan = 0.0

    @property
    def horizon(self) -> float:
        """Wake-ups due within this many seconds are held in memory."""
        return 2 * self.rescan_every

    def schedule(self, workflow: str, iid: str, due: float) -> None:
        """A wake-up already written to the index; kept in memory only if due soon."""
        if due - self.clock.now() <= self.horizon:
            self.queue.add(due - self.lead, workflow, iid)
            self._changed.set()

    def rescan(self) -> None:
        """Refill the queue from the index: what falls due before the next rescan and a margin."""
        now = self.clock.now()
        for due, workflow, iid in self.timers.due(now + self.horizon):
            self.queue.add(due - self.lead, workflow, iid)
        self._next_scan = self.clock.monotonic() + self.rescan_every

    def fire_due(self) -> None:
        by_workflow: dict[str, list[str]] = {}
        for workflow, iid in self.queue.pop_due(self.clock.now() + COALESCE):
            by_workflow.setdefault(workflow, []).append(iid)
        for workflow, iids in by_workflow.items():
            for start in range(0, len(iids), FIRE_CHUNK):  # a namespace reads each call's at once
                self.fire(workflow, iids[start : start + FIRE_CHUNK])

    def seconds_to_next(self) -> float:
        """How long the loop may sleep: until the next due wake-up or the next rescan."""
        until_scan = max(0.0, self._next_scan - self.clock.monotonic())
        nxt = self.queue.next_due()
        return until_scan if nxt is None else min(until_scan, max(0.0, nxt - self.clock.now()))

    async def run(self) -> None:
        """The loop: rescan, fire, sleep until something is due or changes. Never stops on an
        error (a loop that halts stops every wake-up)."""
        self.rescan()
        while True:
            try:
                if self.clock.monotonic() >= self._next_scan:
                    self.rescan()
                self.fire_due()
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await self.clock.wait_for(self._changed.wait(), self.seconds_to_next())
            except Exception:
                log.exception("timer loop error")
                await self.clock.sleep(0.1)
