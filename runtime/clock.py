"""Time, injected: the runtime reads the time, sleeps and times out only through a Clock, so every
deadline (sleeps, retry delays, step timeouts, waits, batch budgets, timers) runs on a FakeClock in
tests and moves only when the test advances it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (what is stored)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and deadlines in memory)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        """`await aw`, or cancel it and raise TimeoutError after `timeout` seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        # asyncio.timeout runs `aw` in the calling task (asyncio.wait_for makes a new one): this
        # is on the path of every step.
        async with asyncio.timeout(timeout):
            return await aw


class FakeClock:
    """A clock that moves only when a test calls `advance`; sleepers wake in deadline order."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), fut))
        await fut

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        return await wait_with_alarm(self.sleep, aw, timeout)

    def next_deadline(self) -> float | None:
        """When the earliest sleeper wakes (None when nobody sleeps)."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled sleepers
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Let ready tasks run (so sleepers about to start are counted), then move time forward,
        waking every sleeper that falls due, and let them run."""
        for _ in range(5):
            await asyncio.sleep(0)
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, due)
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)


class SkewedClock:
    """The system clock plus an offset that a test moves forward: raydo.testing's time skipping
    across processes (Ray mode). The offset is read at every reading (from storage, where the
    test writes it), so every actor on the storage sees a jump at once; sleeps and timeouts
    poll it every `poll` seconds, so a jump also ends them. Only a storage that raydo.testing
    prepared gets one (see `clock_for`): production processes run on SystemClock."""

    def __init__(self, offset: Callable[[], float], poll: float = 0.01) -> None:
        self._offset, self.poll = offset, poll

    def now(self) -> float:
        return time.time() + self._offset()

    def monotonic(self) -> float:
        return time.monotonic() + self._offset()

    async def sleep(self, seconds: float) -> None:
        end = self.monotonic() + seconds
        await asyncio.sleep(0)
        while (left := end - self.monotonic()) > 0:
            await asyncio.sleep(min(left, self.poll))

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        return await wait_with_alarm(self.sleep, aw, timeout)


def clock_for(offset: Callable[[], float | None]) -> Clock:
    """The clock of a raydo process on a storage whose test clock offset `offset()` reads:
    SystemClock when there is none (production: one read when the process starts, nothing
    after), else a SkewedClock on it."""
    if offset() is None:
        return SystemClock()
    return SkewedClock(lambda: offset() or 0.0)


async def wait_with_alarm(
    sleep: Callable[[float], Awaitable[None]], aw: Awaitable[T], timeout: float | None
) -> T:
    """`await aw`, cancelled with TimeoutError once `sleep(timeout)` returns: a timeout on a
    clock asyncio does not know. Like asyncio.timeout, `aw` runs in the calling task, which the
    alarm cancels."""
    if timeout is None:
        return await aw
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def ring(alarm: asyncio.Future[None]) -> None:
        nonlocal fired
        if not alarm.cancelled():
            fired = True
            task.cancel()

    alarm = asyncio.ensure_future(sleep(timeout))
    alarm.add_done_callback(ring)
    try:
        return await aw
    except asyncio.CancelledError:
        if fired and task.uncancel() == 0:
            raise TimeoutError() from None
        raise
    finally:
        alarm.remove_done_callback(ring)
        alarm.cancel()
