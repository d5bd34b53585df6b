"""Issue 7 fixes through the public API on real Ray: redefined classes, self-deletion, and a
sync step that notices it was abandoned."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

import raydo
from raydo import InstanceStatus, WorkflowEntrypoint

pytestmark = pytest.mark.ray


def wait_until(condition: Any, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit  # a bound for a loaded machine, not a timing check
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_redefined_class_runs_for_new_instances(
    raydo_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            return await step.do("version", lambda: "v1")

    first = raydo.workflow(Flow, name="flow").create().result().wait(timeout=60).result()
    assert first.output == "v1"

    class Flow(WorkflowEntrypoint):  # type: ignore[no-redef]  # the notebook cell, run again
        async def run(self, event: Any, step: Any) -> Any:
            return await step.do("version", lambda: "v2")

    with caplog.at_level(logging.INFO, logger="raydo"):
        second = raydo.workflow(Flow, name="flow").create().result().wait(timeout=60).result()
        raydo.workflow(Flow, name="flow").create().result()  # same code: no second line
    assert second.output == "v2"
    assert first.code and second.code and first.code != second.code
    changes = [r for r in caplog.records if "new code" in r.getMessage()]
    assert len(changes) == 1 and second.code in changes[0].getMessage()


class SelfDeleting(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("one", lambda: 1)
        me = await self.env.SELF.get(event.instance_id)
        await me.delete()
        Path(event.payload).write_text("plain code ran after delete")  # must never run
        await step.do("two", lambda: 2)


def test_deleting_itself_stops_the_activation_at_once(raydo_env: Path, tmp_path: Path) -> None:
    self_binding = raydo.workflow(SelfDeleting, name="selfdel")
    wf = raydo.workflow(SelfDeleting, name="selfdel", env={"SELF": self_binding})
    markers = [tmp_path / f"after-{n}" for n in range(5)]
    insts = [wf.create(id=f"d{n}", params=str(m)).result() for n, m in enumerate(markers)]
    for inst in insts:
        wait_until(lambda inst=inst: _gone(inst))
    time.sleep(0.5)  # give a wrongly still-running activation the chance to write its marker
    assert not any(m.exists() for m in markers)


def _gone(inst: raydo.WorkflowInstance) -> bool:
    try:
        inst.status().result()
    except raydo.InstanceNotFoundError:
        return True
    return False


class Patient(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def watch(ctx: Any) -> str:
            Path(event.payload, "started").touch()
            while not ctx.cancelled:
                time.sleep(0.02)
            Path(event.payload, "noticed").touch()
            return "discarded"

        return await step.do("watch", watch)


def test_a_sync_step_notices_its_instance_was_terminated(raydo_env: Path, tmp_path: Path) -> None:
    wf = raydo.workflow(Patient, name="patient")
    inst = wf.create(params=str(tmp_path)).result()
    wait_until((tmp_path / "started").exists)
    inst.terminate().result()
    wait_until((tmp_path / "noticed").exists)
    assert inst.status().result().status is InstanceStatus.TERMINATED
