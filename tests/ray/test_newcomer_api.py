"""What a new user trips over (issue 7), against real Ray and LMDB: bindings across init/shutdown,
Ray's failures as raydo errors, create_batch's result, rounded durations, describe() and
wait(progress=True), a ReceivedEvent as a workflow's output."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.exceptions import RayError

import raydo
from raydo import (
    ClusterError,
    InstanceDescription,
    InstanceStatus,
    ReceivedEvent,
    StorageMismatchError,
    WaitTimeoutError,
    WorkflowEntrypoint,
)

pytestmark = pytest.mark.ray


class Echo(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("echo", lambda: event.payload)


class Sleeper(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.sleep("nap", "1 hour")


# -- item 2: a binding belongs to its storage ----------------------------------------------------


def test_a_binding_used_after_init_of_another_storage_raises_a_raydo_error(
    raydo_env: Path, tmp_path: Path
) -> None:
    wf = raydo.workflow(Echo, name="echo")
    inst = wf.create(id="one", params=1).result(60)
    assert inst.wait(timeout=60).result(90).output == 1
    raydo.shutdown(kill_actors=True)
    other = tmp_path / "other"
    raydo.init(other)
    try:
        for call in (
            lambda: wf.create(id="two").result(60),
            lambda: inst.status().result(60),
            lambda: wf.get("one").result(60),
        ):
            with pytest.raises(StorageMismatchError) as info:
                call()
            assert info.value.storage == str(raydo_env) and info.value.current == str(other)
            assert str(raydo_env) in str(info.value) and str(other) in str(info.value)
        # Nothing reached the other storage.
        assert raydo.workflow(Echo, name="echo").instances().result(60) == []
    finally:
        raydo.shutdown(kill_actors=True)
        raydo.init(raydo_env)


def test_a_binding_reconnects_after_shutdown_and_init_of_its_storage(raydo_env: Path) -> None:
    wf = raydo.workflow(Echo, name="echo")
    inst = wf.create(id="one", params={"n": 1}).result(60)
    assert inst.wait(timeout=60).result(90).status is InstanceStatus.COMPLETE
    raydo.shutdown(kill_actors=True)  # the binding's actor handle is dead now
    raydo.init(raydo_env)
    assert inst.status().result(60).output == {"n": 1}
    assert wf.create(id="two", params=2).result(60).wait(timeout=60).result(90).output == 2


def test_a_binding_used_after_shutdown_starts_raydo_on_its_own_storage(raydo_env: Path) -> None:
    wf = raydo.workflow(Echo, name="echo")
    inst = wf.create(id="one", params=1).result(60)
    inst.wait(timeout=60).result(90)
    raydo.shutdown(kill_actors=True)
    assert inst.status().result(60).output == 1  # first use initializes raydo again
    assert raydo.init().storage == str(raydo_env)


def wait_until_dead(actor: Any) -> None:
    """ray.kill is asynchronous: wait until a call to the actor fails."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ray.get(actor.stats.remote(), timeout=10)
        except RayError:
            return
        time.sleep(0.05)
    raise AssertionError("the killed actor still answers")


def test_ray_failures_reach_the_user_as_cluster_error(raydo_env: Path) -> None:
    wf = raydo.workflow(Echo, name="echo")
    inst = wf.create(id="one", params=1).result(60)
    inst.wait(timeout=60).result(90)
    ray.kill(wf.actor, no_restart=True)  # Ray's failure, not raydo's: the actor is gone
    wait_until_dead(wf.actor)
    with pytest.raises(ClusterError) as info:
        inst.status().result(60)
    assert not isinstance(info.value, RayError)
    assert isinstance(info.value.__cause__, RayError)  # kept for debugging
    assert info.value.cause == type(info.value.__cause__).__name__

    async def main() -> None:
        with pytest.raises(ClusterError):
            await inst.status()

    asyncio.run(main())


# -- item 9: create_batch lines up with its input -------------------------------------------------


def test_create_batch_returns_one_handle_per_item_in_order(raydo_env: Path) -> None:
    wf = raydo.workflow(Echo, name="echo")
    wf.create(id="a", params="first").result(60).wait(timeout=60).result(90)
    handles = wf.create_batch(
        [{"id": "b", "params": "b"}, {"id": "a", "params": "again"}, {"params": "new"}, {"id": "b"}]
    ).result(60)
    ids = [h.id for h in handles]
    assert len(handles) == 4 and ids[:2] == ["b", "a"] and ids[3] == "b"
    assert ids[2] not in ("a", "b")
    outputs = [h.wait(timeout=60).result(90).output for h in handles]
    assert outputs == ["b", "first", "new", "b"]  # "a" is the existing instance, not re-created


# -- item 11: durations in messages are rounded --------------------------------------------------


def test_wait_timeouts_print_round_seconds(raydo_env: Path) -> None:
    wf = raydo.workflow(Sleeper, name="sleeper")
    inst = wf.create(id="s").result(60)
    with pytest.raises(WaitTimeoutError) as info:
        wf.wait_all([inst], timeout=1).result(60)
    assert "within 1 seconds" in str(info.value), str(info.value)
    with pytest.raises(WaitTimeoutError) as info:
        inst.wait(timeout=0.25, progress=lambda line: None).result(60)
    assert "within 0.25 seconds" in str(info.value), str(info.value)
    inst.terminate().result(60)


# -- item 12: describe() and wait(progress=True) -------------------------------------------------


class Shown(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        files = await step.do("fetch <files>", lambda: ["a.pdf", "b.pdf"])
        # well above hibernate_after (0.25 s), even on a busy machine: both waits hibernate
        await step.sleep("pause", 1.0)

        def flaky(ctx: Any) -> dict[str, Any]:
            if ctx.attempt == 1:
                raise ConnectionError("storage API unavailable")
            return {"count": len(files)}

        return await step.do("process", flaky, retries={"limit": 2, "delay": 1.0})


def test_wait_with_progress_prints_each_change_and_describe_shows_the_steps(
    raydo_env: Path, capsys: Any
) -> None:
    wf = raydo.workflow(Shown, name="shown")
    inst = wf.create(id="shown").result(60)
    st = inst.wait(timeout=60, progress=True).result(90)
    assert st.status is InstanceStatus.COMPLETE and [s.name for s in st.steps] == [
        "fetch <files>",
        "pause",
        "process",
    ]
    lines = capsys.readouterr().out.splitlines()
    assert any("sleep 'pause'" in line for line in lines), lines
    assert any("retry 'process'" in line and "ConnectionError" in line for line in lines), lines
    assert lines[-1].split()[-1] == "complete", lines

    desc = inst.describe().result(60)
    assert isinstance(desc, InstanceDescription) and desc.status.output == {"count": 2}
    text = str(desc)
    assert "instance shown of workflow 'shown'" in text and "complete" in text
    table = text.splitlines()[text.splitlines().index("") + 1 :]
    assert table[0].split() == ["#", "step", "type", "state", "attempts", "took", "output"]
    assert table[4].split()[:5] == ["3", "process", "do", "done", "2"]
    assert repr(desc) == text
    page = desc._repr_html_()
    assert "<table" in page and "fetch &lt;files&gt;" in page and "<files>" not in page


def test_async_wait_with_a_progress_callable(raydo_env: Path) -> None:
    lines: list[str] = []

    async def main() -> raydo.StatusInfo:
        wf = raydo.workflow(Shown, name="shown")
        inst = await wf.create(id="cb")
        return await inst.wait(timeout=60, progress=lines.append)

    st = asyncio.run(main())
    assert st.status is InstanceStatus.COMPLETE
    assert lines and lines[-1].split()[-1] == "complete"


# -- item 17: return await step.wait_for_event(...) -----------------------------------------------


class Approval(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.wait_for_event("approval", type="approved", timeout="1 minute")


def test_a_received_event_is_the_output(raydo_env: Path) -> None:
    wf = raydo.workflow(Approval, name="approval")
    inst = wf.create(id="ev").result(60)
    inst.send_event(type="approved", payload={"by": "ana"}).result(60)
    st = inst.wait(timeout=60).result(90)
    assert st.status is InstanceStatus.COMPLETE, st.error
    assert isinstance(st.output, ReceivedEvent)
    assert st.output.type == "approved" and st.output.payload == {"by": "ana"}
    assert st.output.timestamp.tzinfo is not None
