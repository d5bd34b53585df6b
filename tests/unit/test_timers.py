"""TimerService without Ray: a fake clock and the in-memory store's timer index."""

from __future__ import annotations

import asyncio

import pytest

from raydo.runtime.clock import FakeClock
from raydo.runtime.timers import TimerService
from raydo.storage.instances import InstanceStore, TimerIndex, check_schema
from raydo.storage.kv import MemoryKV
from raydo.storage.records import InstanceStatus

pytestmark = pytest.mark.asyncio


class Setup:
    def __init__(self, lead: float = 0.0) -> None:
        self.clock = FakeClock(start=1000.0)
        self.kv = MemoryKV()
        check_schema(self.kv)
        self.store = InstanceStore(self.kv, "wf")
        self.fired: list[tuple[str, list[str]]] = []
        self.service = TimerService(
            self.clock, TimerIndex(self.kv), lambda w, ids: self.fired.append((w, ids)), lead
        )

    def wait_until(self, iid: str, wake_at: float) -> None:
        """What the namespace does: a waiting record (the index entry comes with it)."""
        (rec,) = self.store.create([(iid, b"\xc0")], self.clock.now(), skip_existing=False)
        rec.status, rec.wake_at = InstanceStatus.WAITING, wake_at
        self.store.save(rec)
        self.service.schedule("wf", iid, wake_at)


async def test_fires_due_wakeups_in_one_call_per_workflow_with_the_lead() -> None:
    s = Setup(lead=0.02)
    loop = asyncio.ensure_future(s.service.run())
    s.wait_until("a", 1005.0)
    s.wait_until("b", 1005.0)
    await s.clock.advance(4.97)
    assert s.fired == []
    await s.clock.advance(0.02)  # 1004.99 >= 1005 - lead
    assert s.fired == [("wf", ["a", "b"])]
    loop.cancel()


async def test_far_wakeups_stay_in_storage_until_a_rescan_brings_them_near() -> None:
    s = Setup()
    s.wait_until("far", 1000.0 + 3600)
    assert len(s.service.queue) == 0  # beyond the horizon: only the durable index holds it
    loop = asyncio.ensure_future(s.service.run())
    for _ in range(400):  # an hour in rescan-sized steps
        await s.clock.advance(s.service.rescan_every)
        if s.fired:
            break
    assert s.fired == [("wf", ["far"])]
    assert s.clock.now() >= 1000.0 + 3600
    loop.cancel()


async def test_a_restarted_service_finds_overdue_timers_in_storage() -> None:
    s = Setup()
    s.wait_until("late", 1001.0)
    await s.clock.advance(60)  # nobody ran the service meanwhile
    fresh = TimerService(s.clock, TimerIndex(s.kv), lambda w, ids: s.fired.append((w, ids)))
    loop = asyncio.ensure_future(fresh.run())
    await s.clock.advance(0)
    assert s.fired == [("wf", ["late"])]
    loop.cancel()


async def test_rescan_reads_only_timers_due_soon() -> None:
    s = Setup()
    for n in range(50):
        s.wait_until(f"i{n}", 1000.0 + 86400 + n)
    s.wait_until("soon", 1001.0)
    s.service.rescan()
    assert len(s.service.queue) == 1


async def test_fake_clock_wait_for_times_out_on_fake_time_only() -> None:
    clock = FakeClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(clock.wait_for(never, 5))
    await clock.advance(4.9)
    assert not task.done()
    await clock.advance(0.2)
    with pytest.raises(TimeoutError):
        await task
    assert await clock.wait_for(asyncio.sleep(0, "ok"), 1) == "ok"


async def test_wakeups_due_a_few_ms_apart_go_out_in_one_call_within_what_a_namespace_accepts() -> (
    None
):
    from raydo.runtime import namespace, timers

    assert timers.COALESCE < namespace._IMMEDIATE  # it would drop a wake-up that came too early
    s = Setup()
    loop = asyncio.ensure_future(s.service.run())
    s.wait_until("a", 1005.0)
    s.wait_until("b", 1005.0 + timers.COALESCE * 0.75)  # a crowd: due one after the other
    s.wait_until("c", 1005.0 + timers.COALESCE * 2.5)
    await s.clock.advance(5.0)
    assert s.fired == [("wf", ["a", "b"])]
    await s.clock.advance(timers.COALESCE * 2.5)
    assert s.fired == [("wf", ["a", "b"]), ("wf", ["c"])]
    loop.cancel()
