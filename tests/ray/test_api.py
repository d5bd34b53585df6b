"""The public API against a real local Ray and real LMDB."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import raydo
from raydo import (
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceStatus,
    InvalidDurationError,
    InvalidEventTypeError,
    InvalidIdError,
    InvalidStateError,
    InvalidStepError,
    PayloadError,
    WaitTimeoutError,
    WorkflowEntrypoint,
)

pytestmark = pytest.mark.ray


class Order(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        total = await step.do("price", lambda: event.payload["qty"] * 10)

        def charge(ctx: Any) -> dict[str, Any]:
            if ctx.attempt < 2:
                raise ConnectionError("gateway busy")
            return {"charged": total, "attempt": ctx.attempt}

        receipt = await step.do("charge", charge, retries={"limit": 2, "delay": 0.05})
        await step.sleep("cool off", event.payload.get("nap", 0.05))
        approval = await step.wait_for_event("approval", type="approved", timeout="1 minute")
        return {"receipt": receipt, "by": approval.payload["by"]}


def test_sync_lifecycle_with_retries_sleep_and_event(raydo_env: Path) -> None:
    wf = raydo.workflow(Order, name="order", concurrency=2)
    inst = wf.create(id="o-1", params={"qty": 3}).result()
    assert inst.id == "o-1"
    inst.send_event(type="approved", payload={"by": "ana"}).result()
    st = inst.wait(timeout=60).result()
    assert st.status is InstanceStatus.COMPLETE
    assert st.output == {"receipt": {"charged": 30, "attempt": 2}, "by": "ana"}
    steps = inst.status(steps=True).result().steps
    assert [(s.name, s.type, s.attempts) for s in steps] == [
        ("price", "do", 1),
        ("charge", "do", 2),
        ("cool off", "sleep", 0),
        ("approval", "waitForEvent", 0),
    ]
    again = wf.get("o-1").result()
    assert again.status().result().output == st.output


def test_async_api_and_errors_arrive_unwrapped(raydo_env: Path) -> None:
    async def main() -> None:
        wf = raydo.workflow(Order, name="order_async", concurrency=2)
        inst = await wf.create(id="a", params={"qty": 1, "nap": 600})
        with pytest.raises(InstanceExistsError, match="'a'"):
            await wf.create(id="a")
        with pytest.raises(InstanceNotFoundError, match="'missing'"):
            await wf.get("missing")
        deadline = time.time() + 30
        while (await inst.status()).status is not InstanceStatus.WAITING:
            assert time.time() < deadline
            await asyncio.sleep(0.05)
        await inst.pause()
        assert (await inst.status()).status is InstanceStatus.PAUSED
        await inst.resume()
        await inst.terminate()
        st = await inst.status()
        assert st.status is InstanceStatus.TERMINATED
        with pytest.raises(InvalidStateError, match="already terminated"):
            await inst.terminate()

    asyncio.run(main())


def test_bad_input_is_rejected_with_typed_errors_and_writes_nothing(raydo_env: Path) -> None:
    wf = raydo.workflow(Order, name="order_bad")
    with pytest.raises(InvalidIdError, match=r"must be a string of 1\.\.100"):
        wf.create(id="bad id/with slash")
    with pytest.raises(InvalidIdError):
        wf.create(id="x" * 101)
    with pytest.raises(PayloadError, match="not serializable"):
        wf.create(id="p", params={"f": object()})
    with pytest.raises(PayloadError, match="1 MiB"):
        wf.create(id="big", params="x" * (1 << 20))
    with pytest.raises(InstanceNotFoundError):
        wf.get("p").result()
    assert wf.instances().result() == []
    inst = wf.create(id="ok", params={"qty": 1, "nap": 600}).result()
    with pytest.raises(InvalidEventTypeError):
        inst.send_event(type="no spaces allowed", payload=1)
    with pytest.raises(InvalidStepError):
        inst.restart(from_step="\x00")
    with pytest.raises(raydo.InvalidInputError):
        wf.create_batch([{"id": str(i)} for i in range(101)])


def test_create_batch_skips_existing_and_wait_times_out(raydo_env: Path) -> None:
    wf = raydo.workflow(Order, name="order_batch", concurrency=2)
    wf.create(id="b0", params={"qty": 1, "nap": 600}).result()
    made = wf.create_batch(
        [{"id": "b0", "params": {"qty": 9}}, {"id": "b1", "params": {"qty": 2, "nap": 600}}]
    ).result()
    assert [i.id for i in made] == ["b0", "b1"]  # b0 existed: its handle, not a new instance
    assert sorted(st.id for st in wf.instances().result()) == ["b0", "b1"]
    with pytest.raises(WaitTimeoutError):
        made[1].wait(timeout=0.2).result()


class Sleeper(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        t0 = await step.do("t0", time.time)
        await step.sleep("nap", event.payload)
        return await step.do("t1", time.time) - t0


def test_long_sleep_hibernates_and_the_timer_wakes_it(raydo_env: Path) -> None:
    wf = raydo.workflow(Sleeper, name="sleeper", concurrency=1)
    sleepers = [wf.create(params=3600.0).result() for _ in range(3)]
    # one actor, three sleeping instances: they can only all sleep at once if they hibernated
    deadline = time.monotonic() + 60  # a generous bound for a loaded machine, not a timing check
    while {i.status().result().status for i in sleepers} != {InstanceStatus.WAITING}:
        assert time.monotonic() < deadline, [i.status().result().status for i in sleepers]
        time.sleep(0.02)
    inst = wf.create(params=3.0).result()
    slept = inst.wait(timeout=60).result().output
    assert 3.0 <= slept < 30.0  # woken by its timer; lateness is measured in benchmarks/


class Child(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("double", lambda: event.payload * 2)


class Parent(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def spawn() -> str:
            inst = await self.env.CHILD.create(id=f"child-of-{event.instance_id}", params=21)
            return inst.id

        child_id = await step.do("spawn", spawn)

        async def collect() -> Any:
            inst = await self.env.CHILD.get(child_id)
            return (await inst.wait(timeout=30)).output

        return await step.do("collect", collect)


def test_child_workflows_through_env(raydo_env: Path) -> None:
    child = raydo.workflow(Child, name="child", concurrency=1)
    parent = raydo.workflow(Parent, name="parent", concurrency=1, env={"CHILD": child})
    st = parent.create(id="p1").result().wait(timeout=60).result()
    assert st.status is InstanceStatus.COMPLETE, st.error
    assert st.output == 42
    assert child.get("child-of-p1").result().status().result().output == 42


class Bad(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.sleep("bad", "soon")


def test_bad_duration_inside_run_errors_the_instance_clearly(raydo_env: Path) -> None:
    wf = raydo.workflow(Bad, name="bad_duration")
    st = wf.create().result().wait(timeout=30).result()
    assert st.status is InstanceStatus.ERRORED
    assert st.error is not None and st.error.name == InvalidDurationError.__name__
    assert "'soon'" in st.error.message


def test_restart_and_delete(raydo_env: Path) -> None:
    wf = raydo.workflow(Child, name="child_rd", concurrency=1)
    inst = wf.create(id="r", params=1).result()
    assert inst.wait(timeout=30).result().output == 2
    inst.restart().result()
    assert inst.wait(timeout=30).result().status is InstanceStatus.COMPLETE
    inst.delete().result()
    with pytest.raises(InstanceNotFoundError):
        inst.status().result()


def test_wait_all_for_a_batch(raydo_env: Path) -> None:
    wf = raydo.workflow(Child, name="child_batch", concurrency=2)
    insts = wf.create_batch([{"id": f"c{n}", "params": n} for n in range(10)]).result()
    statuses = wf.wait_all(insts, timeout=60).result()
    assert [s.id for s in statuses] == [f"c{n}" for n in range(10)]
    assert [s.output for s in statuses] == [2 * n for n in range(10)]
    with pytest.raises(InstanceNotFoundError):
        wf.wait_all(["c0", "nope"], timeout=5).result()
