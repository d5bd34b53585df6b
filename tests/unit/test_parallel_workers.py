"""Fewer workers than `concurrency` (WorkflowOptions.actors): each worker runs several instances
at once, never more than `concurrency` in all, and their durable step commits share fsyncs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from harness import Harness

from raydo.errors import InvalidInputError
from raydo.runtime.clock import FakeClock
from raydo.runtime.engine import _LIVE, OutcomeKind, _written
from raydo.runtime.local import InstanceRunner
from raydo.runtime.model import WorkflowEntrypoint
from raydo.runtime.options import WorkflowOptions
from raydo.storage.codec import encode
from raydo.storage.instances import InstanceStore, check_schema
from raydo.storage.kv import LmdbKV, MemoryKV, Staged
from raydo.storage.records import Fenced, StepKind, StepRecord, StepState

T = TypeVar("T")

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


@pytest.mark.parametrize(
    ("workers", "concurrency", "instances"),
    [
        (1, 4, 10),  # one worker runs up to `concurrency` instances at once
        (2, 6, 12),  # two workers share the concurrency
        (2, 2, 6),  # workers == concurrency (the default): one instance per worker, as before
    ],
)
async def test_concurrency_bounds_instances_running_at_once(
    workers: int, concurrency: int, instances: int
) -> None:
    h = Harness(Gated, workers=workers, concurrency=concurrency)
    for n in range(instances):
        h.create(f"i{n}")
    await h.until(lambda: len(RUNNING) == concurrency)
    await h.idle()
    assert len(RUNNING) == concurrency  # the others stay queued
    GATE["open"].set()
    await h.until(lambda: all(h.status(f"i{n}") == "complete" for n in range(instances)))
    assert PEAK[0] == concurrency
    assert {h.output(f"i{n}") for n in range(instances)} == {f"i{n}" for n in range(instances)}


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


async def test_a_batch_run_one_after_another_syncs_its_ends_once_before_it_returns() -> None:
    """A worker handed a batch runs its activations in turn: each one's first commit covers
    the end of the one before (LMDB: a commit fsyncs its pages after the last meta page was
    written), so the batch syncs once at its end, before the namespace learns any outcome,
    instead of once per activation."""
    kv = Counting()
    check_schema(kv)
    store = InstanceStore(kv, "wf")
    ids = [f"i{n}" for n in range(5)]
    store.create([(iid, encode({})) for iid in ids], 0.0, False)
    leases = store.acquire(ids, 0.0)
    runner = InstanceRunner(store, ThreeSteps, FakeClock(0.0))
    kv.syncs = 0
    result = await runner.run_batch(list(leases.items()))
    assert kv.synced_at == kv.commits  # every end is durable when the outcomes are reported
    assert {iid: o.kind for iid, o in result.outcomes.items()} == dict.fromkeys(
        ids, OutcomeKind.COMPLETE
    )
    assert kv.syncs == 5 * 2 + 1  # two step results a body depends on each, one batch end
    store.create([("alone", encode({}))], 1.0, False)
    leases = store.acquire(["alone"], 1.0)
    kv.syncs = 0
    one = await runner.run_batch(list(leases.items()))
    assert one.outcomes["alone"].kind is OutcomeKind.COMPLETE
    assert kv.synced_at == kv.commits and kv.syncs == 3  # a batch of one: as before
    runner.executor.shutdown(wait=False)


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
    # one per step result a later step's body depends on; the ends of a batch share one
    assert alone.syncs >= 8 * 2
    assert together.syncs <= 3 + 2  # about one per round of steps
    print(f"syncs: one at a time {alone.syncs}, eight at once {together.syncs}")


async def test_parallel_instances_share_step_transactions_on_lmdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On LMDB every commit pays an fsync of its own pages (storage/kv.py), so group commit
    puts the step saves of the activations running at once in one transaction: eight 3-step
    instances in one worker commit their 24 step results and their 8 ends in a few
    transactions, whole."""
    commits = [0]

    def counted(write: Callable[..., T]) -> Callable[..., T]:
        def call(store: InstanceStore, *args: Any, **kwargs: Any) -> T:
            env = store.kv._env  # type: ignore[attr-defined]
            before = int(env.info()["last_txnid"])
            result = write(store, *args, **kwargs)
            commits[0] += int(env.info()["last_txnid"]) - before
            return result

        return call

    monkeypatch.setattr(InstanceStore, "save_steps", counted(InstanceStore.save_steps))
    monkeypatch.setattr(InstanceStore, "settle", counted(InstanceStore.settle))
    monkeypatch.setattr(InstanceStore, "write_staged", counted(InstanceStore.write_staged))
    counts = {}
    for name, concurrency in (("alone", 1), ("together", 8)):
        kv = LmdbKV(str(tmp_path / name))
        h = Harness(ThreeSteps, kv=kv, workers=1, concurrency=concurrency)
        commits[0] = 0
        for n in range(8):
            h.create(f"i{n}")
        await h.until(lambda h=h: all(h.status(f"i{n}") == "complete" for n in range(8)))
        await h.settle()
        counts[name] = commits[0]
        assert {h.output(f"i{n}") for n in range(8)} == {3}
        for n in range(8):
            events = h.store.history(f"i{n}", None, 100)
            assert [e["type"] for e in events].count("step_completed") == 3, events
        kv.close()
    assert counts["alone"] == 8 * 3  # one per step, the last one with the instance's end
    assert counts["together"] <= 6, counts  # about one per round of eight steps (or ends)


class SlowDisk:
    """A store whose commits wait for `free` (a disk busy with a long fsync)."""

    syncs_to_disk = True

    def __init__(self) -> None:
        self.busy, self.free = threading.Event(), threading.Event()
        self.commits: list[list[str]] = []

    def write_staged(self, writes: list[Staged]) -> list[Exception | None]:
        self.busy.set()
        self.free.wait(60)
        self.commits.append([w.apply.__name__ for w in writes])
        return [None] * len(writes)

    def sync(self) -> None:
        pass


def staged(name: str) -> Staged:
    def apply(w: Any) -> None:
        pass

    apply.__name__ = name
    return Staged(apply)


async def test_writes_arriving_while_a_round_commits_all_go_in_the_next() -> None:
    """Group commit: while one round is committing (its fsync takes long), every write that
    arrives joins the next round, however many loop turns apart they come; that round commits
    them together once the first is done."""
    store = SlowDisk()
    first = _LIVE.write_together(store, [staged("a")])  # type: ignore[arg-type]
    await asyncio.to_thread(store.busy.wait, 60)  # the round is committing now
    second = _LIVE.write_together(store, [staged("b")])  # type: ignore[arg-type]
    for _ in range(20):
        await asyncio.sleep(0)
    third = _LIVE.write_together(store, [staged("c")])  # type: ignore[arg-type]
    store.free.set()
    assert all([await _written(*first, 1), await _written(*second, 1), await _written(*third, 1)])
    assert store.commits == [["a"], ["b", "c"]]


async def test_a_fenced_save_among_others_is_undone_alone(tmp_path: Path) -> None:
    """write_staged: the save of an activation that lost its lease fails with Fenced and writes
    nothing; the others of the same transaction are written."""
    kv = LmdbKV(str(tmp_path / "db"))
    check_schema(kv)
    store = InstanceStore(kv, "wf")
    store.create([("a", encode(None)), ("b", encode(None))], 0.0, False)
    leases = store.acquire(["a", "b"], 0.0)
    store.fence("b")  # b's activation lost its lease
    done = StepRecord(StepKind.DO, 1, StepState.DONE, attempts=1, value=encode(1))
    errors = store.write_staged(
        [
            store.stage_steps("a", leases["a"], [(("s", 1), done)]),
            store.stage_steps("b", leases["b"], [(("s", 1), done)]),
        ]
    )
    assert errors[0] is None and isinstance(errors[1], Fenced)
    assert store.steps("a")[("s", 1)].state is StepState.DONE
    assert ("s", 1) not in store.steps("b")
    kv.close()


@pytest.mark.filterwarnings("ignore")
def test_actors_above_concurrency_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="actors 5 must be at most concurrency"):
        WorkflowOptions(concurrency=4, actors=5)
    with pytest.raises(InvalidInputError):
        WorkflowOptions(concurrency=4, actors=0)
    assert WorkflowOptions(concurrency=8, actors=2).actors == 2


STARTS: list[str] = []


class SlowFirst(WorkflowEntrypoint):
    """Its step sleeps `event.payload` seconds of the harness's fake clock."""

    async def run(self, event: Any, step: Any) -> Any:
        async def work() -> str:
            STARTS.append(event.instance_id)
            await CLOCKS[0].sleep(event.payload)
            return event.instance_id

        return await step.do("work", work)


CLOCKS: list[FakeClock] = []


async def test_a_shared_worker_never_runs_an_instance_twice() -> None:
    """One worker shared by four calls: a batch whose first instance runs past the budget hands
    the rest back; they go out again, to the same worker, while the first call still waits for
    its long instance. When that call ends it must not take them for its own orphans (and run
    them a second time)."""
    STARTS.clear()
    clock = FakeClock()
    CLOCKS[:] = [clock]
    h = Harness(SlowFirst, workers=1, concurrency=4, clock=clock)
    # 12 at once: batches of 3; each batch's first runs past the 0.1 s budget
    items = [("long", encode(0.3))] + [(f"short{n}", encode(0.5)) for n in range(11)]
    h.ns.create(items, skip_existing=False)
    for _ in range(60):
        await h.advance(0.05)
    await h.settle()
    ids = ["long", *(f"short{n}" for n in range(11))]
    assert all(h.status(i) == "complete" for i in ids)
    assert sorted(STARTS) == sorted(ids)  # each step ran once
