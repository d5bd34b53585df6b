"""The Python-native API against real Ray and LMDB: DAG steps, typed params (pydantic models in
and out, across a restart of every actor), and create_batch's object form."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import raydo
from raydo import (
    InstanceNotFoundError,
    InvalidParamsError,
    StepContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)

pytestmark = pytest.mark.ray


class Report(WorkflowEntrypoint):
    """A diamond: fetch -> (words, chars) -> summary; a sleep long enough to hibernate; then a
    step needing fetch again (replayed from storage, not run)."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        @step.do("fetch")
        def fetch(ctx: StepContext) -> dict[str, Any]:
            return {"text": event.payload["text"], "attempt": ctx.attempt}

        @step.do("count words")
        async def words(fetch: dict[str, Any]) -> int:
            return len(fetch["text"].split())

        @step.do("count chars")
        def chars(fetch: dict[str, Any]) -> int:
            return len(fetch["text"])

        @step.do("summary", concurrent=True)
        async def summary(words: int, chars: int) -> str:
            return f"{words} words, {chars} chars"

        text = await summary()
        await step.sleep("nap", "1 second")

        @step.do("shout")
        async def shout(fetch: dict[str, Any]) -> str:
            return str(fetch["text"]).upper()

        return {"summary": text, "shout": await shout()}


class Misspelt(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        @step.do("one")
        async def one() -> int:
            return 1

        @step.do("two")
        async def two(onee: int) -> int:
            return onee + 1

        return await two()


def test_dag_steps_run_each_dependency_once_and_replay_after_hibernation(
    raydo_env: Path,
) -> None:
    wf = raydo.workflow(Report, name="report", concurrency=2)
    inst = wf.create(id="r", params={"text": "durable steps on ray"}).result()
    st = inst.wait(timeout=60, steps=True).result()
    assert st.status == "complete", st.error
    assert st.output == {"summary": "4 words, 20 chars", "shout": "DURABLE STEPS ON RAY"}
    rows = sorted((s.name, s.count, s.type, s.attempts) for s in st.steps)
    assert rows == [
        ("count chars", 1, "do", 1),
        ("count words", 1, "do", 1),
        ("fetch", 1, "do", 1),  # once, for three dependents, over two activations
        ("nap", 1, "sleep", 0),
        ("shout", 1, "do", 1),
        ("summary", 1, "do", 1),
    ]
    assert st.steps[0].name == "fetch" and st.steps[3].name == "summary"

    bad = raydo.workflow(Misspelt, name="misspelt").create(id="m").result()
    st = bad.wait(timeout=60, steps=True).result()
    assert st.status == "errored" and st.error is not None
    assert st.error.name == "InvalidStepError" and "'onee'" in st.error.message
    assert st.steps == []


class Order(BaseModel):
    order_id: str
    amount: int


class Receipt(BaseModel):
    order_id: str
    cents: int


class Checkout(WorkflowEntrypoint[Order]):
    async def run(self, event: WorkflowEvent[Order], step: WorkflowStep) -> Any:
        order = event.payload

        @step.do("charge")
        async def charge() -> Receipt:
            return Receipt(order_id=order.order_id, cents=order.amount * 100)

        receipt = await charge()
        await step.wait_for_event("ship", type="ship", timeout="1 minute")
        return {
            "payload": type(order).__name__,
            "receipt": type(receipt).__name__,
            "cents": receipt.cents,
        }


def test_typed_params_validate_at_create_and_models_survive_a_restart(
    raydo_env: Path,
) -> None:
    wf = raydo.workflow(Checkout, name="checkout")
    with pytest.raises(InvalidParamsError) as caught:
        wf.create(id="bad", params={"order_id": "o", "amount": "lots"}).result()
    assert caught.value.field == "amount" and "'lots'" in str(caught.value)
    with pytest.raises(InstanceNotFoundError):
        wf.get("bad").result()

    inst = wf.create(id="o1", params={"order_id": "o1", "amount": 7}).result()
    assert inst.params().result() == {"order_id": "o1", "amount": 7}  # stored as plain data
    st = inst.status().result()
    deadline = time.monotonic() + 60
    while st.status != "waiting" and time.monotonic() < deadline:
        time.sleep(0.05)
        st = inst.status().result()
    assert st.status == "waiting", st
    # Every actor goes: the next activation replays "charge" in a new process.
    raydo.shutdown(kill_actors=True)
    raydo.init(raydo_env)
    wf = raydo.workflow(Checkout, name="checkout")
    inst = wf.get("o1").result()
    inst.send_event(type="ship").result()
    st = inst.wait(timeout=60).result()
    assert st.status == "complete", st.error
    assert st.output == {"payload": "Order", "receipt": "Receipt", "cents": 700}


def test_create_batch_per_item_on_ray(raydo_env: Path) -> None:
    wf = raydo.workflow(Checkout, name="checkout")
    out = wf.create_batch(
        [
            {"id": "a", "params": {"order_id": "a", "amount": 1}},
            {"id": "b", "params": {"order_id": "b"}},
            {"id": "a", "params": {"order_id": "a", "amount": 1}},
        ],
        per_item=True,
    ).result()
    assert [(o.id, o.created, o.error.name if o.error else None) for o in out] == [
        ("a", True, None),
        ("b", False, "InvalidParamsError"),
        ("a", False, None),
    ]
    assert out[0].instance is not None
    out[0].instance.send_event(type="ship").result()
    assert out[0].instance.wait(timeout=60).result().output["cents"] == 100


def test_notebook_views_on_ray_never_start_raydo(raydo_env: Path) -> None:
    from raydo.bindings import client

    wf = raydo.workflow(Report, name="report")
    inst = wf.create(id="v", params={"text": "a b"}).result()
    assert inst.wait(timeout=60).result().status == "complete"
    assert "<td>summary</td>" in inst._repr_html_()
    assert "1 complete" in wf._repr_html_() and "<td>v</td>" in wf._repr_html_()

    raydo.shutdown()
    assert "raydo is not initialized" in wf._repr_html_()
    assert "raydo is not initialized" in inst._repr_html_()
    assert client.current() is None  # showing them did not start it again
    raydo.init(raydo_env)  # for the fixture's teardown
