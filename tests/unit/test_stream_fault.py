"""A subscriber of an instance errored only in memory (its storage refuses every write, so no
terminal event can be stored) still gets a `workflow_errored` event and its stream ends, in
process (LocalEnv: in-memory storage, fake clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from raydo import InstanceStatus, StorageFullError, WorkflowEntrypoint
from raydo.bindings.events import InstanceEvent
from raydo.storage.kv import KV, Reader, Writer
from raydo.testing import LocalEnv

T = TypeVar("T")


class Disk:
    full = False  # set by the workflow below, from inside a step


class FillingKV:
    """An in-memory storage whose disk fills when told: every write from then on is refused."""

    def __init__(self, inner: KV) -> None:
        self.inner = inner

    @property
    def path(self) -> str:
        return self.inner.path

    def read(self, fn: Callable[[Reader], T]) -> T:
        return self.inner.read(fn)

    def write(self, fn: Callable[[Writer], T], durable: bool = True) -> T:
        if Disk.full:
            raise StorageFullError("the disk is full (a test's storage refuses writes)")
        return self.inner.write(fn, durable)

    def write_each(self, fns: Sequence[Callable[[Writer], object]]) -> list[Exception | None]:
        if Disk.full:
            raise StorageFullError("the disk is full (a test's storage refuses writes)")
        return self.inner.write_each(fns)

    def sync_committed(self) -> None:
        if Disk.full:
            raise StorageFullError("the disk is full (a test's storage refuses writes)")
        self.inner.sync_committed()


class FillsTheDisk(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("first", lambda: 1)

        def fill() -> int:
            Disk.full = True  # the disk fills while this step runs: its result cannot be stored
            return 2

        return await step.do("second", fill)


def test_a_subscriber_of_an_instance_errored_in_memory_gets_workflow_errored_and_ends() -> None:
    async def scenario(env: LocalEnv) -> tuple[list[InstanceEvent], Any, list[InstanceEvent]]:
        wf = env.workflow(FillsTheDisk)
        inst = await wf.create(id="f")
        seen = [ev async for ev in inst.subscribe()]  # ends: no wait for a long-poll's timeout
        again = [ev async for ev in inst.subscribe(cursor=seen[-1].cursor)]
        return seen, await inst.status(), again

    with LocalEnv() as env:
        Disk.full = False
        env.kv = FillingKV(env.kv)
        seen, st, again = asyncio.run(asyncio.wait_for(scenario(env), 60))
    assert st.status is InstanceStatus.ERRORED and st.error.name == "StorageFullError"
    last = seen[-1]
    assert last.type == "workflow_errored"
    assert last.error is not None and last.error.name == "StorageFullError"
    assert "disk is full" in last.error.message
    stored = [(e.type, e.step) for e in seen[:-1]]
    assert ("step_completed", "first") in stored  # stored before the disk filled
    assert stored[-1] == ("attempt_started", "second")
    assert last.cursor == seen[-2].cursor  # resuming from it misses nothing stored later
    assert [e.type for e in again] == ["workflow_errored"]
