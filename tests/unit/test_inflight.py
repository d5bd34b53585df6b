"""Attempts in flight kept outside LMDB (storage/inflight.py), on a real LMDB storage: a fast
attempt commits one transaction (its outcome); an attempt whose process died is still counted
by the next activation; a long one shows as running; nothing stale is ever folded back."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from harness import Harness

from raydo import WorkflowEntrypoint
from raydo.runtime import engine
from raydo.storage import history, inflight
from raydo.storage.instances import InstanceStore, check_schema
from raydo.storage.kv import LmdbKV, open_lmdb
from raydo.storage.records import StepKind, StepRecord, StepState


class Counting(LmdbKV):
    writes = 0

    def write(self, fn: Any, durable: bool = True) -> Any:
        Counting.writes += 1
        return super().write(fn, durable)


class Attempts(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def one(ctx: Any) -> int:
            ctx.emit({"attempt": ctx.attempt})
            return int(ctx.attempt)

        first = await step.do("s", one, retries={"limit": 3, "delay": 0})
        second = await step.do("t", lambda ctx: ctx.attempt)
        return [first, second]


def _types(h: Harness, iid: str) -> list[str]:
    return [e["type"] for e in h.kv.read(lambda r: history.read(r, "wf", iid, None, 100))]


def _kv(tmp_path: Path) -> LmdbKV:
    kv = Counting(str(tmp_path / "storage"))
    check_schema(kv)
    return kv


def test_a_fast_attempt_commits_only_its_outcome_and_its_history_is_whole(
    tmp_path: Path,
) -> None:

    async def main() -> None:
        h = Harness(Attempts, kv=_kv(tmp_path), workers=1)
        h.create("a")
        before = Counting.writes
        await h.settle()
        assert h.status("a") == "complete" and h.output("a") == [1, 1]
        # acquire; s's start (written before its emits), its emits, its outcome; t's outcome
        # (its start was only in a slot) with the settle, in one transaction
        assert Counting.writes - before == 5
        assert _types(h, "a") == [
            "workflow_queued",
            "workflow_started",
            "step_started",
            "attempt_started",
            "step_emitted",  # after its attempt's start, though that was only in a slot
            "attempt_completed",
            "step_completed",
            "step_started",
            "attempt_started",
            "attempt_completed",
            "step_completed",
            "workflow_completed",
        ]
        # every slot is free again
        (path,) = inflight.files(inflight.folder_of(h.kv.path, "wf"))
        assert inflight.read(path) == []

    asyncio.run(main())


LINGER: dict[str, asyncio.Event] = {}


class Lingers(WorkflowEntrypoint):
    """After its step, run() awaits something that is not raydo's, for as long as it likes."""

    async def run(self, event: Any, step: Any) -> Any:
        await step.do("s", lambda: 1)
        LINGER["after"].set()
        await LINGER["go"].wait()
        return await step.do("t", lambda: 2)


def test_a_step_result_is_committed_soon_though_nothing_depends_on_it_yet(
    tmp_path: Path,
) -> None:
    """A lone activation carries a step's result to its next write; while run() lingers in
    code of its own between steps, the result is committed anyway (WRITE_BEHIND_TURNS): a
    process killed there would not run the step again. Its attempt's slot is free then."""

    async def main() -> None:
        LINGER.clear()
        LINGER.update(after=asyncio.Event(), go=asyncio.Event())
        h = Harness(Lingers, kv=_kv(tmp_path), workers=1)
        h.create("a")
        await h.until(LINGER["after"].is_set)

        def stored() -> bool:
            rec = h.store.steps("a").get(("s", 1))
            return rec is not None and rec.state is StepState.DONE

        await h.until(stored)  # while run() still waits
        (path,) = inflight.files(inflight.folder_of(h.kv.path, "wf"))
        assert inflight.read(path) == []
        LINGER["go"].set()
        await h.until(lambda: h.status("a") == "complete")
        assert h.output("a") == 2

    asyncio.run(main())


def _die_in_attempt(storage: str, lease: int) -> None:
    """A process that starts attempt 1 of step s of instance a, then dies."""
    store = InstanceStore(open_lmdb(storage), "wf")
    running = StepRecord(StepKind.DO, seq=0, state=StepState.RUNNING, attempts=1)
    assert store.begin_attempt("a", lease, ("s", 1), running) is not None
    os._exit(0)


def _dead_process_started(storage: str, lease: int) -> None:
    proc = multiprocessing.get_context("spawn").Process(
        target=_die_in_attempt, args=(storage, lease)
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0


@pytest.mark.parametrize("owner", ["dead", "alive"])
def test_an_attempt_whose_activation_ended_unrecorded_counts_and_the_next_is_attempt_two(
    tmp_path: Path, owner: str
) -> None:
    """`dead`: the process died in attempt 1 (its file is folded at recovery, then removed).
    `alive`: its process lives on (a new namespace took the instance from an activation it no
    longer knows): only taking the instance over (acquire) folds it."""

    async def main() -> None:
        h = Harness(Attempts, kv=_kv(tmp_path), workers=1)
        h.ns.create([("a", b"\xc0")], skip_existing=False)  # its activation is not started yet
        lease = h.store.acquire(["a"], h.clock.now())["a"]  # another activation took it...
        folder = inflight.folder_of(h.kv.path, "wf")
        running = StepRecord(StepKind.DO, seq=0, state=StepState.RUNNING, attempts=1)
        if owner == "dead":
            _dead_process_started(h.kv.path, lease)  # ...and its process died in attempt 1
            (dead,) = inflight.files(folder)
            assert inflight.dead_files(folder) == [dead]
            assert h.store.fold_dead_attempts() == 1
            assert inflight.files(folder) == []
            assert h.store.steps("a")[("s", 1)].state is StepState.RUNNING
        else:
            other = InstanceStore(h.kv, "wf")  # ...in a process that lives on (this one)
            assert other.begin_attempt("a", lease, ("s", 1), running) is not None
            assert h.store.fold_dead_attempts() == 0  # its owner lives: not folded here
            assert h.store.steps("a") == {}
        await h.settle()  # the pending activation acquires it: running, so taken over
        assert h.status("a") == "complete" and h.output("a") == [2, 1]
        kinds = _types(h, "a")
        assert kinds.count("attempt_started") == 3
        events = h.kv.read(lambda r: history.read(r, "wf", "a", None, 100))
        (lost,) = [e for e in events if e["type"] == "attempt_errored"]
        assert lost["attempt"] == 1 and lost["error"]["name"] == "AttemptLostError"
        assert "did not finish" in lost["error"]["message"]

    asyncio.run(main())


def test_a_stale_slot_is_not_folded(tmp_path: Path) -> None:
    """An attempt started under a lease the instance no longer has (its activation was fenced,
    or the instance was restarted since) is not written back."""
    kv = _kv(tmp_path)
    store = InstanceStore(kv, "wf")
    store.create([("a", b"\xc0")], 0.0, skip_existing=False)
    old = store.acquire(["a"], 0.0)["a"]
    _dead_process_started(kv.path, old)
    store.fence("a")  # the instance was taken from that activation meanwhile
    assert store.fold_dead_attempts() == 0
    assert store.steps("a") == {}


def test_a_fenced_activation_records_no_slot(tmp_path: Path) -> None:
    kv = _kv(tmp_path)
    store = InstanceStore(kv, "wf")
    store.create([("a", b"\xc0")], 0.0, skip_existing=False)
    lease = store.acquire(["a"], 0.0)["a"]
    store.fence("a")
    running = StepRecord(StepKind.DO, seq=0, state=StepState.RUNNING, attempts=1)
    from raydo.storage.records import Fenced

    with pytest.raises(Fenced):
        store.begin_attempt("a", lease, ("s", 1), running)
    (path,) = inflight.files(inflight.folder_of(kv.path, "wf"))
    assert inflight.read(path) == []


RELEASE: list[asyncio.Event] = []


class Slow(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def slow() -> str:
            await RELEASE[0].wait()
            return "done"

        return await step.do("slow", slow)


def test_a_long_attempt_shows_as_running(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(engine, "SHOW_RUNNING_AFTER", 0.01)

    async def main() -> None:
        release = asyncio.Event()
        RELEASE[:] = [release]
        h = Harness(Slow, kv=_kv(tmp_path), workers=1)
        h.create("a")
        await h.until(lambda: ("slow", 1) in h.store.steps("a"))
        assert h.store.steps("a")[("slow", 1)].state is StepState.RUNNING
        release.set()
        await h.settle()
        assert h.output("a") == "done"
        assert _types(h, "a").count("attempt_started") == 1

    asyncio.run(main())


HARNESS: list[Harness] = []
GATE: list[asyncio.Event] = []


class TerminatedInRound(WorkflowEntrypoint):
    """Instance a's step has a terminated as it returns, so the terminate lands while its
    outcome waits for the worker's shared round (b keeps a second activation alive in the
    worker, so there is a round)."""

    async def run(self, event: Any, step: Any) -> Any:
        async def one() -> int:
            if event.instance_id == "a":
                asyncio.get_running_loop().call_soon(HARNESS[0].ns.terminate, "a")
            else:
                await GATE[0].wait()
            return 1

        await step.do("s", one)
        return await step.do("t", lambda: 2)


def test_an_activation_terminated_while_its_outcome_waits_for_the_round(tmp_path: Path) -> None:
    """The round's write is fenced (nothing is written for a after its terminate), the
    attempt's slot is freed all the same, and the other activation of the round goes on."""

    async def main() -> None:
        h = Harness(TerminatedInRound, kv=_kv(tmp_path), workers=1, concurrency=2)
        HARNESS[:], GATE[:] = [h], [asyncio.Event()]
        h.create("b")
        await h.until(lambda: h.status("b") == "running")
        h.create("a")
        (path,) = await _slot_file(h)
        await h.until(lambda: h.status("a") == "terminated")
        # a's slot is freed once its round is over (after the round's fsync)
        await h.until(lambda: [e.iid for e in inflight.read(path)] == ["b"])
        assert ("s", 1) not in h.store.steps("a") or h.store.steps("a")[("s", 1)].attempts == 1
        assert "step_completed" not in _types(h, "a")
        GATE[0].set()
        await h.until(lambda: h.status("b") == "complete")
        assert h.output("b") == 2 and h.status("a") == "terminated"
        assert inflight.read(path) == []

    asyncio.run(main())


async def _slot_file(h: Harness) -> list[str]:
    folder = inflight.folder_of(h.kv.path, "wf")
    for _ in range(1000):
        if os.path.isdir(folder) and inflight.files(folder):
            return inflight.files(folder)
        await asyncio.sleep(0.001)
    raise AssertionError("no slot file")


KVS: list[LmdbKV] = []
SEEN: list[bool] = []


class Checked(WorkflowEntrypoint):
    """Each step's body checks that the step before it is stored and that every commit of
    this process is on disk (SEEN)."""

    async def run(self, event: Any, step: Any) -> Any:
        kv = KVS[0]

        def body(k: int) -> int:
            if k:
                stored = InstanceStore(kv, "wf").steps("a").get((f"s{k - 1}", 1))
                done = stored is not None and stored.state is StepState.DONE
                SEEN.append(done and kv._group.covered() >= kv.committed())
            return 1

        total = 0
        for k in range(3):
            total += await step.do(f"s{k}", lambda k=k: body(k))
        return total


def test_a_step_result_is_on_disk_before_the_next_body_runs_and_no_sooner(
    tmp_path: Path,
) -> None:
    """A lone activation makes a step's result durable when something may depend on it: the
    next step's body. The last one's is written with the instance's end, in one commit, and
    that is synced: 3 steps cost 3 commits and 3 syncs (no more: an fsync per step)."""

    async def main() -> None:
        kv = _kv(tmp_path)
        KVS[:], SEEN[:] = [kv], []
        h = Harness(Checked, kv=kv, workers=1)
        h.create("a")  # (its own write is synced: not counted)
        syncs: list[int] = []
        real = kv._group._sync
        kv._group._sync = lambda: (syncs.append(1), real())[1]  # type: ignore[method-assign]
        await h.until(lambda: h.status("a") == "complete")
        await h.settle()
        assert h.output("a") == 3 and SEEN == [True, True]
        assert len(syncs) == 3  # s0 before s1's body, s1 before s2's, s2 with the end
        assert kv._group.covered() >= kv.committed()

    asyncio.run(main())
