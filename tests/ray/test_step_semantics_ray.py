"""Issue 10's step semantics through the public API on real Ray and LMDB: replay safety with a
class redefined under instances in flight, step.patched, delay functions, sensitive outputs,
rollbacks (with the instance actor killed mid-rollback) and terminate(rollback=True)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import raydo
from raydo import InstanceStatus, NonRetryableError, RollbackContext, WorkflowEntrypoint

pytestmark = pytest.mark.ray


def wait_until(condition: Any, limit: float = 90.0) -> Any:
    deadline = time.monotonic() + limit  # a bound for a loaded machine, not a timing check
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def note(folder: str, line: str) -> None:
    with open(Path(folder, "log"), "a") as f:
        f.write(line + "\n")


def noted(folder: Path) -> list[str]:
    log = folder / "log"
    return log.read_text().splitlines() if log.exists() else []


# -- replay safety and patched, across a redefined class -----------------------------------------


def test_a_renamed_step_errors_an_instance_in_flight_and_patched_keeps_the_old_branch(
    raydo_env: Path, tmp_path: Path
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            price = await step.do("price", lambda: note(event.payload, "price") or 10)
            await step.wait_for_event("go", type="go", timeout="1 hour")
            return await step.do("charge", lambda: note(event.payload, "charge") or price)

    wf = raydo.workflow(Flow, name="flow")
    renamed, patched = (wf.create(id=i, params=str(tmp_path)).result() for i in ("ren", "pat"))
    for inst in (renamed, patched):
        wait_until(lambda inst=inst: inst.status().result().status == InstanceStatus.WAITING)
    assert noted(tmp_path) == ["price", "price"]

    class Flow(WorkflowEntrypoint):  # type: ignore[no-redef]  # deployed while they wait
        async def run(self, event: Any, step: Any) -> Any:
            # "ren" stands for code changed unsafely (a rename); the others branch on a patch
            if event.instance_id == "ren" or step.patched("new-pricing"):
                price = await step.do("price-v2", lambda: note(event.payload, "v2") or 12)
            else:
                price = await step.do("price", lambda: note(event.payload, "price") or 10)
            await step.wait_for_event("go", type="go", timeout="1 hour")
            return await step.do("charge", lambda: note(event.payload, "charge") or price)

    wf2 = raydo.workflow(Flow, name="flow")
    fresh = wf2.create(id="new", params=str(tmp_path)).result()
    for inst in (renamed, patched, fresh):
        wait_until(lambda inst=inst: inst.status().result().status == InstanceStatus.WAITING)
        inst.send_event(type="go").result()
    bad = renamed.wait(timeout=90).result()
    assert bad.status == InstanceStatus.ERRORED and bad.error is not None
    assert bad.error.name == "NonDeterminismError"
    assert "do step 'price-v2' #1" in bad.error.message
    assert "do step 'price' #1" in bad.error.message
    old, new = patched.wait(timeout=90).result(), fresh.wait(timeout=90).result()
    assert (old.output, new.output) == (10, 12)
    # side effects: "v2" ran once (the new instance), never for "ren"; "charge" twice, not for ren
    assert sorted(noted(tmp_path)) == ["charge", "charge", "price", "price", "v2"]
    listed = patched.status(steps=True).result().steps
    assert ("new-pricing", "patch", False) in [(s.name, s.type, s.output) for s in listed]


# -- delay functions -----------------------------------------------------------------------------


class Flaky(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def attempt(ctx: Any) -> int:
            note(event.payload["dir"], f"attempt {ctx.attempt}")
            if ctx.attempt < 3:
                raise ConnectionError("busy")
            return ctx.attempt

        def delay(ctx: Any, error: BaseException) -> float:
            note(event.payload["dir"], f"delay after {type(error).__name__} #{ctx.attempt}")
            if event.payload["raise"]:
                raise ValueError("cannot say")
            return 0.05 * ctx.attempt

        return await step.do("flaky", attempt, retries={"limit": 5, "delay": delay})


def test_a_delay_function_paces_retries_and_one_that_raises_stops_them(
    raydo_env: Path, tmp_path: Path
) -> None:
    wf = raydo.workflow(Flaky, name="flaky")
    ok_dir, bad_dir = tmp_path / "ok", tmp_path / "bad"
    ok_dir.mkdir(), bad_dir.mkdir()
    ok = wf.create(params={"dir": str(ok_dir), "raise": False}).result()
    bad = wf.create(params={"dir": str(bad_dir), "raise": True}).result()
    assert ok.wait(timeout=90).result().output == 3
    assert noted(ok_dir) == [
        "attempt 1",
        "delay after ConnectionError #1",
        "attempt 2",
        "delay after ConnectionError #2",
        "attempt 3",
    ]
    st = bad.wait(timeout=90).result()
    assert st.status == InstanceStatus.ERRORED and st.error is not None
    assert st.error.name == "ValueError" and "ConnectionError: busy" in st.error.message
    assert noted(bad_dir) == ["attempt 1", "delay after ConnectionError #1"]  # no retry


# -- sensitive -----------------------------------------------------------------------------------


class Secret(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        token = await step.do("token", lambda: "tok-s3cr3t", sensitive=True)
        await step.sleep("nap", 0.5)  # hibernates: the next step reads the token back
        return await step.do("use", lambda: token.endswith("s3cr3t"))


def test_a_sensitive_output_is_redacted_everywhere_it_is_shown(raydo_env: Path) -> None:
    from raydo.cli import render
    from raydo.server.app import _details

    inst = raydo.workflow(Secret, name="secret").create().result()
    st = inst.wait(timeout=90, steps=True).result()
    assert st.output is True  # the code got the real value after a replay
    token = next(s for s in st.steps if s.name == "token")
    assert token.output == "<redacted>"
    views = [
        st.model_dump_json(),
        str(inst.describe().result()),
        inst.describe().result()._repr_html_(),
        str(_details(st, None)),
        render.step_detail(token, True, 200),
    ]
    assert not [v for v in views if "s3cr3t" in v]


# -- rollbacks -----------------------------------------------------------------------------------


class Saga(WorkflowEntrypoint):
    """a, b, c each undone by a handler; then `fail` fails for good (or a wait, to terminate).
    b's handler blocks on its first attempt until the test kills the process running it."""

    async def run(self, event: Any, step: Any) -> Any:
        folder = event.payload["dir"]

        def undo(rb: RollbackContext) -> None:
            note(folder, f"undo {rb.ctx.step.name} {rb.output} {rb.error.name}")

        def undo_b(rb: RollbackContext) -> None:
            note(folder, f"undo b started pid {os.getpid()}")
            pid = Path(folder, "pid")
            if event.payload["kill"] and not pid.exists():
                pid.write_text(str(os.getpid()))
                time.sleep(300)  # killed here by the test
            note(folder, f"undo b {rb.output} {rb.error.name}")

        again = {"retries": {"limit": 2, "delay": 0}}
        await step.do("a", lambda: note(folder, "a") or "A", rollback=undo)
        await step.do("b", lambda: note(folder, "b") or "B", rollback=undo_b, rollback_config=again)
        await step.do("c", lambda: note(folder, "c") or "C", rollback=undo)
        if event.payload["wait"]:
            await step.wait_for_event("go", type="go", timeout="1 hour")
        await step.do("fail", _declined, rollback=undo)


def _declined() -> None:
    raise NonRetryableError("card declined", name="Declined")


def test_a_rollback_resumes_after_its_actor_is_killed_and_never_repeats_a_handler(
    raydo_env: Path, tmp_path: Path
) -> None:
    inst = (
        raydo.workflow(Saga, name="saga")
        .create(params={"dir": str(tmp_path), "kill": True, "wait": False})
        .result()
    )
    pid = int(wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text()))
    assert inst.status().result().status == InstanceStatus.RUNNING  # not errored before undoing
    os.kill(pid, signal.SIGKILL)
    st = inst.wait(timeout=120, steps=True).result()
    assert st.status == InstanceStatus.ERRORED and st.error is not None
    assert st.error.name == "Declined"
    assert st.rollback is not None and st.rollback.outcome == "completed"
    lines = noted(tmp_path)
    assert lines[:3] == ["a", "b", "c"]
    undos = [line.split(" pid ")[0] for line in lines[3:]]
    assert undos == [
        "undo fail None Declined",  # the step that failed for good is undone too (no output)
        "undo c C Declined",  # then latest start first, once each
        "undo b started",  # killed in this attempt
        "undo b started",  # the rollback resumed: b's handler again, c's not
        "undo b B Declined",
        "undo a A Declined",
    ]
    pids = {line.split(" pid ")[1] for line in lines if " pid " in line}
    assert len(pids) == 2  # the second attempt ran in another process
    undone = [(s.name, s.type, s.attempts) for s in st.steps if s.type == "rollback"]
    assert undone == [
        ("fail", "rollback", 1),
        ("c", "rollback", 1),
        ("b", "rollback", 2),
        ("a", "rollback", 1),
    ]


def test_terminate_with_rollback_undoes_finished_steps_then_terminates(
    raydo_env: Path, tmp_path: Path
) -> None:
    wf = raydo.workflow(Saga, name="saga")
    inst = wf.create(params={"dir": str(tmp_path), "kill": False, "wait": True}).result()
    wait_until(lambda: inst.status().result().status == InstanceStatus.WAITING)
    with pytest.raises(raydo.InvalidInputError, match="'yes' must be True or False"):
        inst.terminate(rollback="yes")  # type: ignore[arg-type]
    inst.terminate(rollback=True).result()
    st = inst.wait(timeout=90).result()
    assert st.status == InstanceStatus.TERMINATED
    assert st.rollback is not None and st.rollback.outcome == "completed"
    assert noted(tmp_path)[3:] == [
        "undo c C Terminated",
        f"undo b started pid {_pid_of(tmp_path)}",
        "undo b B Terminated",
        "undo a A Terminated",
    ]
    with pytest.raises(raydo.InvalidStateError):
        inst.terminate(rollback=True).result()


def _pid_of(folder: Path) -> str:
    line = next(x for x in noted(folder) if " pid " in x)
    return line.split(" pid ")[1]
