"""The event stream on real Ray and LMDB: emits reach a live subscriber while the step runs, and
the history after an instance-actor kill is the history before it plus the resumed part."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from ray.exceptions import RayActorError

import raydo
from raydo.bindings.events import InstanceEvent

pytestmark = pytest.mark.ray


class Live(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        gate = Path(event.payload["gate"])

        def work(ctx: Any) -> str:
            ctx.emit({"percent": 10})
            for _ in range(6000):  # until the test saw the emit and opened the gate
                if gate.exists():
                    ctx.emit({"percent": 100})
                    return "done"
                time.sleep(0.01)
            raise TimeoutError("the gate never opened")

        return await step.do("work", work)


def test_an_emit_reaches_a_live_subscriber_while_the_step_runs(raydo_env: Path) -> None:
    gate = raydo_env.parent / "gate"

    async def scenario() -> list[InstanceEvent]:
        wf = raydo.workflow(Live, name="live")
        inst = await wf.create(id="l", params={"gate": str(gate)})
        seen: list[InstanceEvent] = []
        async for ev in inst.subscribe():
            seen.append(ev)
            if ev.type == "step_emitted" and ev.data == {"percent": 10}:
                gate.write_text("open")  # the step can only end after this
        return seen

    seen = asyncio.run(scenario())
    emitted = [e.data for e in seen if e.type == "step_emitted"]
    assert emitted == [{"percent": 10}, {"percent": 100}]
    kinds = [e.type for e in seen]
    assert kinds.index("step_emitted") < kinds.index("attempt_completed")
    assert kinds[-1] == "workflow_completed"


class Crashy(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        folder = Path(event.payload["dir"])
        first = await step.do("first", lambda: 1)

        def slow(ctx: Any) -> int:
            (folder / f"pid-{ctx.attempt}").write_text(str(os.getpid()))
            if ctx.attempt == 1:
                time.sleep(120)  # killed here
            return 2

        second = await step.do("slow", slow, retries={"limit": 2, "delay": "1 second"})
        third = await step.do("last", lambda: 3)
        return first + second + third


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_the_stream_after_an_instance_actor_kill_is_the_stream_before_plus_the_rest(
    raydo_env: Path,
) -> None:
    folder = raydo_env.parent

    async def scenario() -> tuple[list[InstanceEvent], list[InstanceEvent], list[InstanceEvent]]:
        wf = raydo.workflow(Crashy, name="crashy")
        inst = await wf.create(id="c", params={"dir": str(folder)})
        seen: list[InstanceEvent] = []
        before: list[InstanceEvent] = []
        async for ev in inst.subscribe():
            seen.append(ev)
            if ev.type == "attempt_started" and ev.step == "slow" and not before:
                await asyncio.to_thread(_wait_for, folder / "pid-1")
                before = await inst.history()
                os.kill(int((folder / "pid-1").read_text()), signal.SIGKILL)
        return before, seen, await inst.history()

    before, seen, after = asyncio.run(scenario())
    assert after[: len(before)] == before
    assert seen == after
    kinds = [(e.type, e.step, e.attempt) for e in after]
    assert kinds.count(("step_completed", "first", None)) == 1  # not run, nor recorded, again
    assert ("attempt_errored", "slow", 1) in kinds
    assert kinds.count(("attempt_completed", "slow", 2)) == 1
    assert [c for c in kinds if c[0] == "step_started"] == [
        ("step_started", "first", None),
        ("step_started", "slow", None),
        ("step_started", "last", None),
    ]
    assert kinds[-1][0] == "workflow_completed"
    assert [e.cursor for e in after] == list(range(len(after)))


class Approval(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("prepare", lambda: 1)
        ev = await step.wait_for_event("approval", type="approved", timeout="1 hour")
        return ev.payload


def test_a_subscription_survives_hibernation_and_a_namespace_actor_restart(
    raydo_env: Path,
) -> None:
    import ray

    async def scenario() -> tuple[list[InstanceEvent], list[InstanceEvent], Any]:
        wf = raydo.workflow(Approval, name="approval")
        inst = await wf.create(id="a")
        seen: list[InstanceEvent] = []
        async for ev in inst.subscribe():
            seen.append(ev)
            if ev.type == "workflow_waiting":  # hibernated: it holds no actor now
                old = await wf.actor.__ray_call__.remote(_pid)
                ray.kill(wf.actor, no_restart=False)  # Ray restarts it; the stream goes on
                await _when_back(inst, wf.actor, old)
                await inst.send_event(type="approved", payload={"by": "ana"})
        return seen, await inst.history(), await inst.status()

    seen, stored, st = asyncio.run(scenario())
    assert st.output == {"by": "ana"}
    assert seen == stored
    kinds = [e.type for e in seen]
    assert kinds.count("workflow_waiting") == 1 and kinds.count("workflow_running") == 1
    assert kinds[-2:] == ["wait_completed", "workflow_completed"]


def _pid(_: Any) -> int:
    return os.getpid()


async def _when_back(inst: Any, actor: Any, old_pid: int) -> None:
    """Until the restarted namespace actor answers (a call during its restart fails; a call
    made before the kill has landed still reaches the old process)."""
    for _ in range(1200):
        try:
            await inst.status()
            if await actor.__ray_call__.remote(_pid) != old_pid:
                return
        except (raydo.ClusterError, RayActorError):
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the namespace actor did not come back")
