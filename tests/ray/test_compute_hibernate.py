"""A long `resources=` step lets its instance hibernate (real Ray): while the task runs, the
instance is `waiting` and holds no instance actor; the node's ComputeActor (the attempt's owner)
records the result at home and wakes it. Terminate while hibernated cancels the task; the
owner's death mid-step makes the attempt a lost one, retried by the step's policy."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray
from polling import wait_for

import raydo
from raydo import InstanceStatus, WorkflowEntrypoint
from raydo.actors import handles

pytestmark = pytest.mark.ray


class Slow(WorkflowEntrypoint):
    """Its 'train' step runs as a task until the file `release` exists (first attempt only
    when `once` is set: a later attempt returns at once)."""

    async def run(self, event: Any, step: Any) -> Any:
        folder = Path(event.payload["folder"])

        def train(ctx: Any) -> dict[str, Any]:
            (folder / f"pid-{ctx.attempt}").write_text(str(os.getpid()))
            while not (folder / "release").exists():
                if event.payload.get("once") and ctx.attempt > 1:
                    break
                time.sleep(0.05)
            return {"attempt": ctx.attempt, "pid": os.getpid()}

        resources = {"num_cpus": 0.5, "hibernate_after": 1}
        config: dict[str, Any] = {"retries": {"limit": 2, "delay": 0.01}}
        if event.payload.get("timeout"):
            config["timeout"] = event.payload["timeout"]
        out = await step.do("train", train, resources=resources, **config)
        after = await step.do("after", lambda: "done")
        return {"train": out, "after": after}


def _namespace_stats(storage: Path, workflow: str) -> dict[str, Any]:
    actor = ray.get_actor(handles.namespace_name(str(storage), workflow), namespace="raydo")
    stats: dict[str, Any] = ray.get(actor.stats.remote(), timeout=60)
    return stats


def _hibernated(inst: Any) -> bool:
    return bool(inst.status().result(60).status is InstanceStatus.WAITING)


def test_a_long_placed_step_hibernates_and_its_result_is_recorded(
    raydo_env: Path, tmp_path: Path
) -> None:
    inst = raydo.workflow(Slow, name="slow").create(params={"folder": str(tmp_path)}).result()
    wait_for(lambda: (tmp_path / "pid-1").exists(), "the task to start")
    wait_for(lambda: _hibernated(inst), "the instance to hibernate")
    assert _namespace_stats(raydo_env, "slow")["active"] == 0  # no instance actor is held
    task_pid = int((tmp_path / "pid-1").read_text())
    assert psutil.pid_exists(task_pid)  # the attempt goes on meanwhile
    (tmp_path / "release").touch()
    st = inst.wait(timeout=120).result()
    assert st.status is InstanceStatus.COMPLETE, st.error
    assert st.output["train"] == {"attempt": 1, "pid": task_pid}
    assert st.output["after"] == "done"
    steps = {s.name: s for s in inst.status(steps=True).result().steps}
    assert steps["train"].attempts == 1


def test_terminate_while_hibernated_cancels_the_task(raydo_env: Path, tmp_path: Path) -> None:
    inst = raydo.workflow(Slow, name="slow").create(params={"folder": str(tmp_path)}).result()
    wait_for(lambda: (tmp_path / "pid-1").exists(), "the task to start")
    wait_for(lambda: _hibernated(inst), "the instance to hibernate")
    pid = int((tmp_path / "pid-1").read_text())
    inst.terminate().result()
    assert inst.status().result().status is InstanceStatus.TERMINATED
    wait_for(lambda: not psutil.pid_exists(pid), f"task process {pid} to be killed")


def test_the_owners_death_mid_step_is_a_lost_attempt_retried(
    raydo_env: Path, tmp_path: Path
) -> None:
    params = {"folder": str(tmp_path), "once": True, "timeout": "15 seconds"}
    inst = raydo.workflow(Slow, name="slow").create(params=params).result()
    wait_for(lambda: (tmp_path / "pid-1").exists(), "the task to start")
    wait_for(lambda: _hibernated(inst), "the instance to hibernate")
    owner = ray.get_actor(handles.compute_name(str(raydo_env)), namespace="raydo")
    ray.kill(owner, no_restart=False)  # Ray restarts it, knowing nothing of the attempt
    st = inst.wait(timeout=120).result()
    assert st.status is InstanceStatus.COMPLETE, st.error
    assert st.output["train"]["attempt"] == 2
    steps = {s.name: s for s in inst.status(steps=True).result().steps}
    assert steps["train"].attempts == 2


def test_restart_while_hibernated_cancels_the_task_and_runs_again(
    raydo_env: Path, tmp_path: Path
) -> None:
    inst = raydo.workflow(Slow, name="slow").create(params={"folder": str(tmp_path)}).result()
    pidfile = tmp_path / "pid-1"
    wait_for(pidfile.exists, "the task to start")
    wait_for(lambda: _hibernated(inst), "the instance to hibernate")
    first = int(pidfile.read_text())
    pidfile.unlink()
    inst.restart().result()  # erases the step record: its owner cancels the task
    wait_for(lambda: not psutil.pid_exists(first), f"task process {first} to be killed")
    wait_for(pidfile.exists, "the task of the new run to start")
    (tmp_path / "release").touch()
    st = inst.wait(timeout=120).result()
    assert st.status is InstanceStatus.COMPLETE, st.error
    assert st.output["train"]["attempt"] == 1 and st.output["train"]["pid"] != first
