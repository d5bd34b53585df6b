"""The examples in examples/, run through the public API against real Ray and LMDB.

Each example module is imported by path; its workflow classes are pickled by value, since the Ray
workers cannot import examples/. Every `main()` is run too: in-process on the test's storage, and
get_started.py as a script in a subprocess, the way the README runs it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ray import cloudpickle

import raydo
from raydo import InstanceDescription, InstanceExistsError, InstanceStatus

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"raydo_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)
    return module


checkout = load("checkout")
image_processing = load("image_processing")
get_started = load("get_started")
chunk_processor = load("chunk_processor")
agent = load("agent")
research_agent = load("research_agent")


def steps_of(st: raydo.StatusInfo) -> list[tuple[str, str, str, int]]:
    return [(s.name, s.type, s.state, s.attempts) for s in st.steps]


def wait_for(inst: raydo.WorkflowInstance, status: str, timeout: float = 20) -> raydo.StatusInfo:
    deadline = time.monotonic() + timeout
    while True:
        st = inst.status(steps=True).result()
        if st.status == status:
            return st
        assert not st.status.finished, f"{inst.id} ended {st.status} ({st.error}), not {status}"
        assert time.monotonic() < deadline, f"{inst.id} is {st.status}, not {status}"
        time.sleep(0.05)


def reattach(storage: Path) -> None:
    """main() ends with raydo.shutdown(): attach again, so the fixture kills this storage's
    actors at teardown."""
    raydo.init(storage)


# -- checkout --------------------------------------------------------------------------------


def test_checkout_retries_the_text_and_stops_on_a_declined_card(raydo_env: Path) -> None:
    wf = raydo.workflow(checkout.CheckoutWorkflow, name="checkout", concurrency=2)
    good = checkout.new_order(feedback_wait="1 second", marketing_wait=0, sms_failures=1)
    bad = checkout.new_order(card=checkout.DECLINED_CARD, feedback_wait=0)
    good_inst = wf.create(id=good["order_id"], params=good).result()
    bad_inst = wf.create(id=bad["order_id"], params=bad).result()

    st = good_inst.wait(timeout=30, steps=True).result()
    assert st.status == InstanceStatus.COMPLETE, st.error
    expected_charge = checkout.submit_to_payment_processor(good)["charge_id"]
    assert st.output == {
        "order_id": good["order_id"],
        "charge_id": expected_charge,
        "text_attempts": 2,
        "feedback": f"asked ana@example.com how order {good['order_id']} went",
        "follow_up": "sent 10% coupon to ana@example.com",
    }
    assert steps_of(st) == [
        ("submit payment", "do", "done", 1),
        ("send confirmation text", "do", "done", 2),
        ("wait for feedback", "sleep", "done", 0),
        ("send feedback email", "do", "done", 1),
        ("delay before marketing", "sleep", "done", 0),
        ("send marketing follow up", "do", "done", 1),
    ]
    sleep = st.steps[2]
    assert sleep.ended_at is not None and sleep.started_at is not None
    assert (sleep.ended_at - sleep.started_at).total_seconds() >= 0.99

    st = bad_inst.wait(timeout=30, steps=True).result()
    assert st.status == InstanceStatus.ERRORED
    assert st.error is not None and st.error.name == "PaymentDeclined"
    assert "tok_chargeDeclined" in st.error.message
    # Non-retryable: one attempt, and nothing after the failed step ran.
    assert steps_of(st) == [("submit payment", "do", "done", 1)]
    assert st.steps[0].error is not None and st.steps[0].error.name == "PaymentDeclined"

    # The order id is the instance id: the same order cannot be charged twice.
    with pytest.raises(InstanceExistsError):
        wf.create(id=good["order_id"], params=good).result()


# -- image processing ------------------------------------------------------------------------


def test_image_processing_waits_for_approval_then_publishes(raydo_env: Path) -> None:
    wf = raydo.workflow(image_processing.ImageProcessingWorkflow, name="images", concurrency=2)
    key = "uploads/cat.jpg"
    inst = wf.create(id="img-1", params={"key": key}).result()

    st = wait_for(inst, "waiting")
    description = image_processing.describe(image_processing.fetch_image(key))
    assert [(s.name, s.type) for s in st.steps] == [
        ("fetch image", "do"),
        ("describe image", "do"),
        ("tag image", "do"),
        ("approval", "waitForEvent"),
    ]
    assert st.steps[1].output == description
    assert st.steps[3].state != "done"

    inst.send_event(type="not-approval", payload={}).result()  # another type does not wake it
    inst.send_event(type="approved", payload={"by": "ana", "caption": "Cat!"}).result()
    st = inst.wait(timeout=20, steps=True).result()
    assert st.status == InstanceStatus.COMPLETE, st.error
    assert st.output["published"] is True
    assert st.output["caption"] == "Cat!"
    assert st.output["approved_by"] == "ana"
    assert st.output["tags"] == image_processing.tags_for(description)
    assert st.output["url"].startswith("https://cdn.example.com/")
    approval = st.steps[3]
    assert approval.state == "done"
    assert approval.output == {"type": "approved", "payload": {"by": "ana", "caption": "Cat!"}}
    assert [s.name for s in st.steps][-1] == "publish"


def test_image_processing_archives_when_nobody_approves(raydo_env: Path) -> None:
    wf = raydo.workflow(image_processing.ImageProcessingWorkflow, name="images", concurrency=2)
    late = wf.create(id="late", params={"key": "a.jpg", "approval_timeout": "1 second"}).result()
    # An event sent before the workflow reaches its wait is buffered, not lost.
    early = wf.create(id="early", params={"key": "b.jpg"}).result()
    early.send_event(type="approved", payload={"by": "bo"}).result()

    st = late.wait(timeout=20, steps=True).result()
    assert st.status == InstanceStatus.COMPLETE, st.error
    assert st.output == {"key": "a.jpg", "published": False, "archived_as": "archive/a.jpg"}
    approval = next(s for s in st.steps if s.name == "approval")
    assert approval.error is not None and approval.error.name == "WaitForEventTimeoutError"
    assert [s.name for s in st.steps][-1] == "archive image"

    st = early.wait(timeout=20).result()
    assert st.status == InstanceStatus.COMPLETE, st.error
    assert st.output["published"] is True and st.output["approved_by"] == "bo"


# -- get started -----------------------------------------------------------------------------


def test_get_started_retries_then_completes(raydo_env: Path, capsys: Any) -> None:
    wf = raydo.workflow(get_started.MyWorkflow, name="my-workflow", concurrency=2)
    inst = wf.create(params={"name": "ana", "pause": "0.5 seconds", "fail_attempts": 1}).result()
    st = inst.wait(timeout=30, progress=True).result()

    assert st.status == InstanceStatus.COMPLETE, st.error
    files = get_started.FILES
    assert st.output == {
        "name": "ana",
        "fileCount": len(files),
        "totalBytes": sum(f["size"] for f in files),
        "attempts": 2,
    }
    assert steps_of(st) == [
        ("fetch files", "do", "done", 1),
        ("pause", "sleep", "done", 0),
        ("process files", "do", "done", 2),
    ]
    # Linear backoff, delay 1 s: the retry came at least a second after the first attempt.
    process = st.steps[2]
    assert process.ended_at is not None and process.started_at is not None
    assert (process.ended_at - process.started_at).total_seconds() >= 0.99

    out = capsys.readouterr().out
    assert "waiting" in out  # the sleep and the retry delay both hibernate the instance
    assert out.rstrip().endswith("complete")

    text = str(inst.describe().result()).splitlines()
    table = text[text.index("") + 1 :]
    table = table[: table.index("")] if "" in table else table  # the attempts table follows
    assert table[0].split() == ["#", "step", "type", "state", "attempts", "took", "output"]
    assert len(table) == 2 + 3
    assert table[4].split()[:6] == ["3", "process", "files", "do", "done", "2"]
    assert all(len(line) <= 110 for line in table)  # outputs are truncated


def test_get_started_reports_a_step_that_keeps_failing(raydo_env: Path) -> None:
    wf = raydo.workflow(get_started.MyWorkflow, name="my-workflow", concurrency=2)
    inst = wf.create(params={"pause": 0, "fail_attempts": 99}).result()
    st = wait_for(inst, "waiting")  # the pause is 0: the only wait is the retry delay
    assert steps_of(st)[-1] == ("process files", "do", "retrying", 1)
    status_line = str(InstanceDescription(st)).splitlines()[1]
    assert "retry 'process files'" in status_line
    assert "ConnectionError: storage API unavailable" in status_line
    inst.terminate().result()
    desc = inst.describe().result()
    assert desc.status.status == InstanceStatus.TERMINATED
    assert str(desc).splitlines()[1].split() == ["status:", "terminated"]


def run_example(tmp_path: Path, name: str, *args: str, **env_extra: str) -> Any:
    """Run examples/`name` as a script in a subprocess, the way the README and docs run it."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(env_extra)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_get_started_runs_as_a_script(tmp_path: Path) -> None:
    proc = run_example(tmp_path, "get_started.py", RAYDO_STORAGE=str(tmp_path / "storage"))
    assert "complete" in proc.stdout
    assert "status:  complete" in proc.stdout
    assert "process files" in proc.stdout
    assert "(raylet)" not in proc.stdout + proc.stderr
    assert (tmp_path / "storage").is_dir()


def test_the_tutorial_runs_as_a_script(tmp_path: Path) -> None:
    proc = run_example(tmp_path, "tutorial.py", str(tmp_path / "storage"))
    assert "status:  complete" in proc.stdout and '"stars": 5' in proc.stdout
    for step in ("create account", "send welcome mail", "give them time", "feedback"):
        assert step in proc.stdout, step


# -- chunk processor -------------------------------------------------------------------------


def test_chunk_processor_chains_one_instance_per_chunk(raydo_env: Path) -> None:
    wf = chunk_processor.bind(concurrency=2)
    chain = chunk_processor.run_job(wf, total=5, chunk_size=2, job="job1")

    assert [st.id for st in chain] == ["job1-from-0", "job1-from-2", "job1-from-4"]
    assert all(st.status == InstanceStatus.COMPLETE for st in chain)
    assert [st.output["files"] for st in chain] == [2, 2, 1]
    assert [st.output["next"] for st in chain] == ["job1-from-2", "job1-from-4", None]
    keys = [f"exports/2025/part-{i:04d}.csv" for i in range(5)]
    assert sum(st.output["rows"] for st in chain) == sum(
        chunk_processor.process_file(k)["rows"] for k in keys
    )

    first = wf.get("job1-from-0").result().status(steps=True).result()
    assert [s.name for s in first.steps] == [
        "list files",
        f"process file: {keys[0]}",
        f"process file: {keys[1]}",
        "continue",
    ]
    assert first.steps[0].output == {"keys": keys[:2], "truncated": True, "cursor": 2}
    # Each chunk is its own instance: five files, three instances, nothing else.
    assert sorted(st.id for st in wf.instances().result()) == [st.id for st in chain]
    # The next instance's id is derived from the cursor, so a retried "continue" cannot fork.
    with pytest.raises(InstanceExistsError):
        wf.create(id="job1-from-2", params={}).result()


# -- agent -----------------------------------------------------------------------------------


def test_agent_polls_its_background_workflows(raydo_env: Path, capsys: Any) -> None:
    results = asyncio.run(agent.main(str(raydo_env)))
    reattach(raydo_env)

    by_user = {st.id.split("-")[0]: st for st in results.values()}
    assert set(by_user) == {"ana", "bo", "cy"}
    for user, flight, checks in [("ana", "DL264", 2), ("bo", "UA901", 3)]:
        st = by_user[user]
        assert st.status == InstanceStatus.COMPLETE, st.error
        assert st.output["gate"] == agent.check_gate(flight, checks - 1)
        assert st.output["message"].startswith(f"{user}: {flight} ")
        inst = raydo.workflow(agent.FlightWatchWorkflow, name="flight-watch").get(st.id).result()
        steps = [s.name for s in inst.status(steps=True).result().steps]
        assert steps == ["look up flight"] + ["wait before gate check", "check gate"] * checks + [
            "notify user"
        ]
    cy = by_user["cy"]
    assert cy.status == InstanceStatus.ERRORED
    assert cy.error is not None and cy.error.name == "UnknownFlight"

    out = capsys.readouterr().out
    assert "agent started 3 background workflows" in out
    assert "final status: 2 complete, 1 not" in out


# -- research agent --------------------------------------------------------------------------


def test_research_agent_plans_asks_fans_out_and_collects(raydo_env: Path, capsys: Any) -> None:
    results = asyncio.run(research_agent.main(str(raydo_env)))
    reattach(raydo_env)
    ray_req, lmdb_req, cron_req = (results[r] for r in ("req-ray", "req-lmdb", "req-cron"))
    assert lmdb_req.output == {"topic": "LMDB", "outcome": "rejected", "by": "bo"}
    assert cron_req.output == {"topic": "cron", "outcome": "expired"}

    assert ray_req.status == InstanceStatus.COMPLETE, ray_req.error
    plan = research_agent.llm_plan("Ray actors", 3)
    answers = [research_agent.llm_answer(q, research_agent.search(q)) for q in plan[:2]]
    assert ray_req.output == {
        "topic": "Ray actors",
        "outcome": "done",
        "approved_by": "ana",
        "children": ["req-ray-q0", "req-ray-q1"],  # the last question was dropped
        "summary": research_agent.llm_summarize("Ray actors", answers),
    }
    agents = research_agent.bind()
    steps = agents.get("req-ray").result().status(steps=True).result().steps
    assert [(s.name, s.count) for s in steps] == [
        ("llm: plan", 1),
        ("human approval", 1),
        ("fan out", 1),
        ("collect", 1),
        ("collect", 2),
        ("llm: summarize", 1),
    ]
    workers = raydo.workflow(research_agent.AnswerQuestion, name=research_agent.WORKER)
    children = sorted(workers.instances().result(), key=lambda st: st.id)
    assert [(st.id, st.status) for st in children] == [
        ("req-ray-q0", "complete"),
        ("req-ray-q1", "complete"),
    ]
    assert "[req-ray] plan:" in capsys.readouterr().out


# -- every main() ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["checkout", "image_processing", "chunk_processor"])
def test_main_runs_end_to_end(raydo_env: Path, capsys: Any, name: str) -> None:
    module = {
        "checkout": checkout,
        "image_processing": image_processing,
        "chunk_processor": chunk_processor,
    }[name]
    kwargs = {"feedback_wait": "0.5 seconds"} if name == "checkout" else {}
    result = module.main(str(raydo_env), **kwargs)
    reattach(raydo_env)

    statuses = result if isinstance(result, list) else [result]
    out = capsys.readouterr().out
    assert "final status:" in out
    if name == "checkout":
        assert [st.status for st in statuses] == ["complete", "errored"]
    else:
        assert all(st.status == "complete" for st in statuses)
