"""Fewer workers than `concurrency` (WorkflowOptions.actors): each worker runs several instances
at once, never more than `concurrency` in all, and their durable step commits share fsyncs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from harness import Harness

from raydo.errors import InvalidInputError
from raydo.runtime.model import WorkflowEntrypoint
from raydo.runtime.options import WorkflowOptions
from raydo.storage.kv import MemoryKV

pytestmark = pytest.mark.asyncio

GATE: dict[str, asyncio.Event] = {}
RUNNING: set[str] = set()
PEAK: list[int] = [0]


class Gated(WorkflowEntrypoint):
    """Each instance's one step waits for the test to open the gate."""

    async def run(self, event: Any, step: Any) -> Any:
        async def held() -> str:
            RUNNING.add(event.instance_id)
            PEAK[0] = max(PEAK[0], len(RUNNING))
            await GATE["open"].wait()
            RUNNING.discard(event.instance_id)
            return event.instance_id

        return await step.do("held", held)


@pytest.fixture(autouse=True)
def _gate() -> None:
    GATE["open"] = asyncio.Event()
    RUNNING.clear()
    PEAK[0] = 0


async def test_one_worker_runs_up_to_concurrency_instances_at_once() -> None:
    h = Harness(Gated, workers=1, concurrency=4)
    for n in range(10):
        h.create(f"i{n}")
    await h.until(lambda: len(RUNNING) == 4)
    await h.idle()
    assert len(RUNNING) == 4  # the other six stay queued: concurrency is the limit
    GATE["open"].set()
    await h.until(lambda: all(h.status(f"i{n}") == "complete" for n in range(10)))
    assert PEAK[0] == 4
    assert {h.output(f"i{n}") for n in range(10)} == {f"i{n}" for n in range(10)}


async def test_two_workers_share_the_concurrency() -> None:
    h = Harness(Gated, workers=2, concurrency=6)
    for n in range(12):
        h.create(f"i{n}")
    await h.until(lambda: len(RUNNING) == 6)
    await h.idle()
    assert len(RUNNING) == 6
    GATE["open"].set()
    await h.until(lambda: all(h.status(f"i{n}") == "complete" for n in range(12)))
    assert PEAK[0] == 6


async def test_one_worker_per_instance_runs_its_batch_one_at_a_time() -> None:
    """workers == concurrency (the default): the old behaviour, one instance per worker."""
    h = Harness(Gated, workers=2, concurrency=2)
    for n in range(6):
        h.create(f"i{n}")
    await h.until(lambda: len(RUNNING) == 2)
    await h.idle()
    assert len(RUNNING) == 2
    GATE["open"].set()
    await h.until(lambda: all(h.status(f"i{n}") == "complete" for n in range(6)))
    assert PEAK[0] == 2


class Counting(MemoryKV):
    """Counts how often durability is asked for after commits (the fsyncs LMDB would pay)."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0
        self.commits = 0
        self.synced_at = 0

    def write(self, fn: Any, durable: bool = True) -> Any:
        self.commits += 1
        if durable:
            self.syncs += 1
            self.synced_at = self.commits
        return super().write(fn, durable)

    def sync_committed(self) -> None:
        if self.synced_at < self.commits:  # LmdbKV: covered already -> no fsync
            self.syncs += 1
            self.synced_at = self.commits


class ThreeSteps(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def one() -> int:
            return 1

        total = 0
        for k in range(3):
            total += await step.do(f"s{k}", one)
        return total


async def test_parallel_instances_share_step_syncs() -> None:
    """Eight instances run at once in one worker: their step results are made durable together,
    far fewer syncs than one per step."""
    alone, together = Counting(), Counting()
    for kv, workers, concurrency in ((alone, 1, 1), (together, 1, 8)):
        h = Harness(ThreeSteps, kv=kv, workers=workers, concurrency=concurrency)
        for n in range(8):
            h.create(f"i{n}")
        kv.syncs = 0  # the creates' own (they run nothing before the next await)
        await h.until(lambda h=h: all(h.status(f"i{n}") == "complete" for n in range(8)))
    assert alone.syncs >= 8 * 3  # one per step at least
    assert together.syncs <= 3 + 2  # about one per round of steps
    print(f"syncs: one at a time {alone.syncs}, eight at once {together.syncs}")


@pytest.mark.filterwarnings("ignore")
def test_actors_above_concurrency_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="actors 5 must be at most concurrency"):
        WorkflowOptions(concurrency=4, actors=5)
    with pytest.raises(InvalidInputError):
        WorkflowOptions(concurrency=4, actors=0)
    assert WorkflowOptions(concurrency=8, actors=2).actors == 2
