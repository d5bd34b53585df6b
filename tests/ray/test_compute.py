"""`step.do(..., resources=...)` on a real local Ray: the attempt runs as a Ray task (another
process), its result is recorded at home, its errors and retries are the step's, a timeout or a
terminate cancels the task, and a request no node can meet fails after `infeasible_after`.
(Placement on a GPU node of a real multi-node cluster: tests/cluster/test_compute_cluster.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from polling import wait_for

import raydo
from raydo import (
    InstanceStatus,
    InvalidInputError,
    NonRetryableError,
    WorkflowEntrypoint,
)

pytestmark = pytest.mark.ray


def where() -> dict[str, Any]:
    return {"pid": os.getpid()}


class Placed(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        home = await step.do("home", where)
        away = await step.do("away", where, resources={"num_cpus": 1})

        @step.do("flaky", resources={"num_cpus": 0.5}, retries={"limit": 2, "delay": 0.01})
        async def flaky(ctx: Any) -> dict[str, Any]:
            if ctx.attempt < 2:
                raise ConnectionError(f"attempt {ctx.attempt} lost its link")
            return {"attempt": ctx.attempt, "pid": os.getpid()}

        again = await flaky()
        try:
            await step.do("refused", _refuse, resources={"num_cpus": 0.5})
        except raydo.WorkflowStepError as err:
            refused = {"name": err.name, "message": err.error_message}
        return {"home": home, "away": away, "flaky": again, "refused": refused}


def _refuse() -> None:
    raise NonRetryableError("card declined", name="Declined")


def test_a_resources_step_runs_as_a_task_and_is_recorded_at_home(raydo_env: Path) -> None:
    wf = raydo.workflow(Placed, name="placed")
    inst = wf.create(id="p-1").result()
    st = inst.wait(timeout=120).result()
    assert st.status is InstanceStatus.COMPLETE, st.error
    out = st.output
    assert out["away"]["pid"] != out["home"]["pid"]  # another process: a Ray task
    assert out["flaky"]["attempt"] == 2 and out["flaky"]["pid"] != out["home"]["pid"]
    assert out["refused"] == {"name": "Declined", "message": "card declined"}
    steps = {s.name: s for s in inst.status(steps=True).result().steps}
    assert steps["away"].output == out["away"] and steps["flaky"].attempts == 2
    assert steps["refused"].attempts == 1  # non-retryable, though raised in a task


class Hangs(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def hang() -> None:
            Path(event.payload["pidfile"]).write_text(str(os.getpid()))
            time.sleep(600)

        config = {"retries": {"limit": 0}, "resources": {"num_cpus": 0.5}}
        if event.payload.get("timeout"):
            config["timeout"] = event.payload["timeout"]
        await step.do("hang", hang, **config)


def _task_pid(pidfile: Path) -> int:
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), "the task to start")
    return int(pidfile.read_text())


def test_terminate_cancels_the_running_task(raydo_env: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    inst = raydo.workflow(Hangs, name="hangs").create(params={"pidfile": str(pidfile)}).result()
    pid = _task_pid(pidfile)
    inst.terminate().result()
    assert inst.status().result().status is InstanceStatus.TERMINATED
    wait_for(lambda: not psutil.pid_exists(pid), f"task process {pid} to be killed")


def test_a_timeout_fails_the_attempt_and_cancels_its_task(raydo_env: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    params = {"pidfile": str(pidfile), "timeout": 2}
    inst = raydo.workflow(Hangs, name="hangs").create(params=params).result()
    pid = _task_pid(pidfile)
    st = inst.wait(timeout=120).result()
    assert st.status is InstanceStatus.ERRORED
    assert st.error is not None and st.error.name == "TimeoutError", st.error
    wait_for(lambda: not psutil.pid_exists(pid), f"task process {pid} to be killed")


class WantsGpu(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        request = {"num_gpus": 1, "resources": {"tpu-pod": 2}, "infeasible_after": 1}
        await step.do("train", where, resources=request, retries={"limit": 0})


def test_an_infeasible_request_fails_naming_the_request_and_the_offer(raydo_env: Path) -> None:
    inst = raydo.workflow(WantsGpu, name="gpu").create().result()
    st = inst.wait(timeout=120).result()
    assert st.status is InstanceStatus.ERRORED
    assert st.error is not None and st.error.name == "InfeasibleResourcesError"
    message = st.error.message
    assert "'num_gpus': 1.0" in message and "'tpu-pod': 2.0" in message, message
    assert "'CPU': 2.0" in message, message  # what the (one-node, 2-CPU) session Ray offers


def test_workflow_options_for_the_instance_actors(raydo_env: Path) -> None:
    with pytest.raises(InvalidInputError, match="runtime_env"):
        raydo.workflow(Placed, runtime_env=["pip"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"resources\['num_gpus'\]"):
        raydo.workflow(Placed, resources={"num_gpus": float("nan")})
    wf = raydo.workflow(
        EnvEcho,
        name="envecho",
        runtime_env={"env_vars": {"RAYDO_ECHO": "from-runtime-env"}},
        resources={"num_cpus": 0.25, "resources": {}},
    )
    st = wf.create().result().wait(timeout=120).result()
    assert st.status is InstanceStatus.COMPLETE, st.error
    assert st.output == {"actor": "from-runtime-env", "task": "from-runtime-env", "cpus": 0.25}


class EnvEcho(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        import ray

        actor = await step.do("actor", lambda: os.environ.get("RAYDO_ECHO"))
        task = await step.do(
            "task", lambda: os.environ.get("RAYDO_ECHO"), resources={"num_cpus": 0.5}
        )
        cpus = await step.do(
            "cpus", lambda: ray.get_runtime_context().get_assigned_resources().get("CPU")
        )
        return {"actor": actor, "task": task, "cpus": cpus}


class Gated(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def long() -> int:
            Path(event.payload["pidfile"]).write_text(str(os.getpid()))
            gate = Path(event.payload["gate"])
            while not gate.exists():
                time.sleep(0.05)
            return os.getpid()

        ran = await step.do("long", long, resources={"num_cpus": 0.5})
        return {"long": ran, "after": await step.do("after", os.getpid)}


def test_pause_lets_the_running_task_finish_and_starts_nothing_new(
    raydo_env: Path, tmp_path: Path
) -> None:
    params = {"pidfile": str(tmp_path / "pid"), "gate": str(tmp_path / "gate")}
    inst = raydo.workflow(Gated, name="gated").create(params=params).result()
    task_pid = _task_pid(tmp_path / "pid")
    inst.pause().result()
    assert inst.status().result().status is InstanceStatus.WAITING_FOR_PAUSE
    (tmp_path / "gate").touch()
    wait_for(lambda: inst.status().result().status is InstanceStatus.PAUSED, "paused")
    steps = inst.status(steps=True).result().steps
    assert [(s.name, s.state) for s in steps] == [("long", "done")]  # "after" never started
    inst.resume().result()
    st = inst.wait(timeout=120).result()
    assert st.status is InstanceStatus.COMPLETE and st.output["long"] == task_pid


def test_a_label_the_one_node_lacks_is_refused_at_create(raydo_env: Path) -> None:
    wf = raydo.workflow(Placed, name="mars", node_labels={"zone": "mars"})
    with pytest.raises(raydo.NoEligibleNodeError, match=r"\{'zone': 'mars'\}") as err:
        wf.create(id="m-1").result()
    assert err.value.labels == {"zone": "mars"}
    assert raydo.workflow(Placed, name="mars").instances().result() == []  # nothing written
