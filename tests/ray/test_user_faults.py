"""User code that misbehaves: the instance errors clearly or the attempt is retried, and the
actors and other instances survive. Behaviour per fault (also in the README):

- a step raising any BaseException (SystemExit, KeyboardInterrupt, ...): a failed attempt;
- a sync step past its timeout (CPU- or I/O-bound): a failed attempt; its thread cannot be
  stopped, so the worker process is replaced after the activation;
- an async step blocking the event loop past its timeout: the watchdog ends the worker process;
  the attempt counts as failed and is retried;
- run() blocking the loop outside steps past `block_limit`: the same, without an attempt;
- a step that kills its own process every time: each lost attempt counts; the retry limit ends it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import raydo
from raydo import InstanceStatus, WorkflowEntrypoint

pytestmark = pytest.mark.ray

ONCE = {"limit": 2, "delay": 0}


class AsyncBlocker(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def block(ctx: Any) -> int:
            if ctx.attempt == 1:
                time.sleep(30)  # blocks the loop: asyncio cannot time this out
            return ctx.attempt

        return await step.do("block", block, timeout=1, retries=ONCE)


class SyncHangs(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def spin(ctx: Any) -> int:
            if ctx.attempt == 1:
                end = time.time() + 30
                while time.time() < end:  # CPU-bound, in a thread
                    pass
            return ctx.attempt

        def sleepy(ctx: Any) -> int:
            if ctx.attempt == 1:
                time.sleep(30)  # I/O-bound, in a thread
            return ctx.attempt

        a = await step.do("spin", spin, timeout=0.5, retries=ONCE)
        b = await step.do("sleepy", sleepy, timeout=0.5, retries=ONCE)
        return [a, b, os.getpid()]


class RunBlocks(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        marker = Path(event.payload)
        if not marker.exists():
            marker.write_text("blocked once")
            time.sleep(30)  # outside any step: limited by block_limit
        return await step.do("after", lambda: "recovered")


class Exits(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def leave(ctx: Any) -> int:
            if ctx.attempt == 1:
                sys.exit(2)
            return ctx.attempt

        return await step.do("leave", leave, retries=ONCE)


class Suicide(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("die", lambda: os._exit(9), retries={"limit": 1, "delay": 0})


class Fine(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("ok", lambda: event.payload + 1)


def _done(wf: raydo.Workflow, params: Any = None) -> raydo.StatusInfo:
    return wf.create(params=params).result().wait(timeout=120).result()


def test_async_step_blocking_the_loop_is_timed_out_by_the_watchdog(raydo_env: Path) -> None:
    st = _done(raydo.workflow(AsyncBlocker, name="async_blocker", concurrency=1))
    assert st.status is InstanceStatus.COMPLETE, st.error
    assert st.output == 2


def test_sync_step_hangs_fail_the_attempt_and_replace_the_worker(raydo_env: Path) -> None:
    wf = raydo.workflow(SyncHangs, name="sync_hangs", concurrency=1)
    first = _done(wf)
    assert first.status is InstanceStatus.COMPLETE, first.error
    assert first.output[:2] == [2, 2]
    second = _done(wf)
    assert second.output[:2] == [2, 2]
    # the worker with the stray spinning thread was replaced by a fresh process
    assert second.output[2] != first.output[2]


def test_run_blocking_outside_steps_is_ended_by_block_limit(raydo_env: Path) -> None:
    wf = raydo.workflow(RunBlocks, name="run_blocks", concurrency=1, block_limit=1)
    st = _done(wf, str(raydo_env.parent / "marker"))
    assert st.status is InstanceStatus.COMPLETE, st.error
    assert st.output == "recovered"


def test_sys_exit_in_a_step_is_a_failed_attempt(raydo_env: Path) -> None:
    st = _done(raydo.workflow(Exits, name="exits", concurrency=1))
    assert st.status is InstanceStatus.COMPLETE, st.error
    assert st.output == 2


def test_step_killing_its_process_errors_after_its_retries(raydo_env: Path) -> None:
    st = _done(raydo.workflow(Suicide, name="suicide", concurrency=1))
    assert st.status is InstanceStatus.ERRORED
    assert st.error is not None and st.error.name == "AttemptLostError"
    # the namespace and a fresh worker still serve other instances
    fine = _done(raydo.workflow(Fine, name="fine_after", concurrency=1), 1)
    assert fine.output == 2


class Poison(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def body() -> str:
            if event.payload == "poison":
                os.kill(os.getpid(), 9)  # takes its worker, and the batch it was in, down
            return f"ok {event.instance_id}"

        return await step.do("only", body, retries={"limit": 2, "delay": 0})


def test_a_worker_killed_mid_batch_blames_only_its_killer(raydo_env: Path) -> None:
    wf = raydo.workflow(Poison, name="poison", concurrency=1)
    items = [{"id": "a"}, {"id": "p", "params": "poison"}] + [{"id": f"i{n}"} for n in range(3)]
    insts = wf.create_batch(items).result()  # one batch with a backlog: [a, p, i0, i1, i2]
    statuses = {s.id: s for s in wf.wait_all(insts, timeout=120).result()}
    for iid in ("a", "i0", "i1", "i2"):
        assert statuses[iid].status is InstanceStatus.COMPLETE, statuses[iid].error
        assert statuses[iid].output == f"ok {iid}"
    assert statuses["p"].status is InstanceStatus.ERRORED
    assert statuses["p"].error is not None and statuses["p"].error.name == "AttemptLostError"


class ExitsInRun(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("one", lambda: 1)
        sys.exit("run() gave up")


def test_sys_exit_in_run_errors_the_instance_and_the_worker_lives(raydo_env: Path) -> None:
    wf = raydo.workflow(ExitsInRun, name="exits_in_run", concurrency=1)
    st = _done(wf)
    assert st.status is InstanceStatus.ERRORED
    assert st.error is not None and st.error.name == "SystemExit"
    assert st.error.message == "run() gave up"
    fine = _done(raydo.workflow(Fine, name="fine_after_exit", concurrency=1), 2)
    assert fine.output == 3
