"""The namespace's scale paths without Ray: recovery reads only unfinished instances, batches
are cut to what a worker starts, fired timers are read in one transaction."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Harness

from raydo.runtime.engine import BatchResult
from raydo.runtime.model import WorkflowEntrypoint
from raydo.runtime.namespace import MAX_BATCH
from raydo.storage.records import InstanceRecord, InstanceStatus

pytestmark = pytest.mark.asyncio


class Sleeps(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("a", lambda: 1)
        await step.sleep("nap", 60.0)
        return await step.do("b", lambda: 2)


async def test_recovery_reads_only_unfinished_instances() -> None:
    h = Harness(Sleeps)
    for n in range(30):
        h.create(f"i{n}")
    await h.settle()
    await h.advance(61)
    await h.until(lambda: all(h.status(f"i{n}") == "complete" for n in range(30)), 30)
    h.create("late")  # queued
    h.create("sleeper")
    await h.settle()
    assert h.status("sleeper") == "waiting"

    again = Harness(Sleeps, kv=h.kv, clock=h.clock)

    def no_full_scan() -> list[Any]:
        raise AssertionError("recovery read every record")

    again.store.records = no_full_scan  # type: ignore[method-assign]
    read: list[str] = []
    real_get = again.store.get

    def counted_get(iid: str) -> Any:
        read.append(iid)
        return real_get(iid)

    again.store.get = counted_get  # type: ignore[method-assign]
    assert again.ns.recover() == 2  # "late" (queued or running) and "sleeper" (waiting)
    assert not any(iid.startswith("i") for iid in read)  # no finished instance was read
    await again.settle()
    await again.advance(61)
    await again.until(lambda: again.status("late") == again.status("sleeper") == "complete", 30)


async def test_waiting_instances_are_recovered_after_the_first_call_a_chunk_at_a_time() -> None:
    """25,000 instances waiting (written as raydo's hibernation writes them): recover() answers
    without reading one of them; the background pass then arms every timer, 10,000 a turn."""
    h = Harness(Sleeps)
    now = h.clock.now()

    def fill(w: Any) -> None:
        for n in range(25_000):
            rec = InstanceRecord(f"w{n:05d}", "wf", InstanceStatus.WAITING, now)
            rec.wake_at = now + 3600 + n
            h.store._put_record(w, rec)

    h.kv.write(fill)
    again = Harness(Sleeps, kv=h.kv, clock=h.clock)
    chunks: list[int] = []
    real_listed = again.store.listed

    def counted(status: str, *args: Any) -> list[Any]:
        found = real_listed(status, *args)
        if status == "waiting":
            chunks.append(len(found))
        return found

    again.store.listed = counted  # type: ignore[method-assign]
    assert again.ns.recover() == 25_000
    assert chunks == [] and again.timers == {}  # nothing read on the first call's path
    await again.idle()
    assert chunks == [10_000, 10_000, 5_000]
    assert len(again.timers) == 25_000 and again.timers["w00007"] == now + 3607
    assert again.status("w00007") == InstanceStatus.WAITING


async def test_batches_shrink_to_what_a_worker_starts_and_grow_back() -> None:
    h = Harness(Sleeps)
    assert h.ns._fits == MAX_BATCH
    h.ns._learn_fit(16, 12)  # four started, twelve handed back
    assert h.ns._fits == 4
    for _ in range(3):
        h.ns._learn_fit(4, 0)
    assert h.ns._fits == 4
    h.ns._learn_fit(4, 0)  # the fourth whole batch in a row: try twice as many
    assert h.ns._fits == 8
    for _ in range(10):
        h.ns._learn_fit(3, 0)  # smaller batches (a small backlog) say nothing about the limit
    assert h.ns._fits == 8
    h.ns._learn_fit(16, 15)
    assert h.ns._fits == 1


async def test_handed_back_instances_are_not_acquired_again_and_again() -> None:
    """A worker that starts only one instance per call: each instance is acquired (a storage
    write) about once per activation, not once per batch it was sent in and handed back from."""
    h = Harness(Sleeps, workers=1)
    runner = next(iter(h.ns.pool._leases))  # type: ignore[attr-defined]
    real = runner.run_batch

    async def one_per_call(items: list[tuple[str, int]]) -> BatchResult:
        result = await real(items[:1])
        result.unstarted += [iid for iid, _ in items[1:]]
        return result

    runner.run_batch = one_per_call
    acquired: list[str] = []
    real_acquire = h.store.acquire

    def counted(iids: list[str], now: float) -> dict[str, int]:
        acquired.extend(iids)
        return real_acquire(iids, now)

    h.store.acquire = counted  # type: ignore[method-assign]
    for n in range(40):
        h.create(f"i{n}")
    await h.until(lambda: all(h.status(f"i{n}") == InstanceStatus.WAITING for n in range(40)), 30)
    # the first batch hands 15 back; later probes (after 4 whole batches) one each
    assert len(acquired) <= 40 + 15 + 40 // 5, len(acquired)


async def test_fired_timers_are_read_in_one_transaction() -> None:
    h = Harness(Sleeps)
    for n in range(10):
        h.create(f"i{n}")
    await h.settle()
    reads = 0
    real_read = h.kv.read

    def counted(fn: Any) -> Any:
        nonlocal reads
        reads += 1
        return real_read(fn)

    h.kv.read = counted  # type: ignore[method-assign]
    await h.clock.advance(61)
    h.ns.wake([f"i{n}" for n in range(10)] + ["gone"])
    assert reads == 1
    h.kv.read = real_read  # type: ignore[method-assign]
    await h.settle()
    assert all(h.status(f"i{n}") == "complete" for n in range(10))
