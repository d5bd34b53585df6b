"""Typed params (`WorkflowEntrypoint[Model]`) and create_batch's object form, through the public
bindings of an in-process LocalEnv (no Ray)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from pydantic import BaseModel, Field

from raydo import (
    BatchItem,
    InstanceNotFoundError,
    InvalidIdError,
    InvalidInputError,
    InvalidParamsError,
    PayloadError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from raydo.testing import LocalEnv


class Order(BaseModel):
    order_id: str
    amount: int = Field(gt=0)
    note: str = ""


class Receipt(BaseModel):
    order_id: str
    charged: int


class Typed(WorkflowEntrypoint[Order]):
    async def run(self, event: WorkflowEvent[Order], step: WorkflowStep) -> Any:
        order = event.payload
        receipt = await step.do("charge", lambda: Receipt(order_id=order.order_id, charged=2))
        await step.sleep("settle", "1 day")  # hibernates: the next activation replays charge
        return {
            "payload": type(order).__name__,
            "receipt": type(receipt).__name__,
            "charged": receipt.charged * order.amount,
        }


class Untyped(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return event.payload


def test_typed_params_are_the_model_in_run_and_model_results_replay_as_models(
    raydo_test_env: LocalEnv,
) -> None:
    wf = raydo_test_env.workflow(Typed)
    inst = wf.create(id="o1", params={"order_id": "o1", "amount": 3}).result()
    st = inst.wait().result()
    assert st.status == "complete", st.error
    assert st.output == {"payload": "Order", "receipt": "Receipt", "charged": 6}
    # A model instance is accepted as params too.
    inst2 = wf.create(params=Order(order_id="o2", amount=1)).result()
    assert inst2.wait().result().output["charged"] == 2


@pytest.mark.parametrize(
    ("params", "field", "shown"),
    [
        ({"order_id": "o1", "amount": "ten"}, "amount", "'ten'"),
        ({"order_id": "o1", "amount": -4}, "amount", "-4"),
        ({"amount": 1}, "order_id", "order_id"),
        (None, "order_id", "order_id"),
        ([1, 2], "", "[1, 2]"),
    ],
)
def test_bad_params_are_rejected_before_anything_is_stored(
    raydo_test_env: LocalEnv, params: Any, field: str, shown: str
) -> None:
    wf = raydo_test_env.workflow(Typed)
    with pytest.raises(InvalidParamsError) as caught:
        wf.create(id="bad", params=params).result()
    err = caught.value
    assert err.field == field and err.workflow == "Typed"
    assert shown in str(err) and "Order" in str(err)
    assert isinstance(err, InvalidInputError)
    with pytest.raises(InstanceNotFoundError):
        wf.get("bad").result()
    with pytest.raises(InvalidParamsError):  # the plain batch form: nothing is created
        wf.create_batch(
            [{"id": "good", "params": {"order_id": "g", "amount": 1}}, {"params": params}]
        )
    with pytest.raises(InstanceNotFoundError):
        wf.get("good").result()


def test_a_workflow_without_a_model_takes_any_params(raydo_test_env: LocalEnv) -> None:
    wf = raydo_test_env.workflow(Untyped)
    inst = wf.create(params=[1, "x"]).result()
    assert inst.wait().result().output == [1, "x"]


def test_create_batch_per_item_creates_the_good_items_and_reports_the_rest(
    raydo_test_env: LocalEnv,
) -> None:
    wf = raydo_test_env.workflow(Typed)
    wf.create(id="old", params={"order_id": "old", "amount": 1}).result()
    items: list[Any] = [
        {"id": "a", "params": {"order_id": "a", "amount": 2}},
        {"id": "b", "params": {"order_id": "b", "amount": 0}},
        {"id": "old", "params": {"order_id": "old", "amount": 1}},
        {"id": "bad id!", "params": {"order_id": "c", "amount": 1}},
        "not a dict",
        {"params": {"order_id": "gen", "amount": 5, "note": "x" * 10}},
        {"id": "big", "params": {"order_id": "big", "amount": 1, "note": "x" * (2 << 20)}},
    ]
    out = wf.create_batch(items, per_item=True).result()
    assert [type(o) for o in out] == [BatchItem] * len(items)
    assert [o.index for o in out] == list(range(len(items)))
    assert [(o.id, o.created, o.ok) for o in out[:4]] == [
        ("a", True, True),
        ("b", False, False),
        ("old", False, True),
        ("bad id!", False, False),
    ]
    assert [o.error.name if o.error else None for o in out] == [
        None,
        InvalidParamsError.__name__,
        None,
        InvalidIdError.__name__,
        InvalidInputError.__name__,
        None,
        PayloadError.__name__,
    ]
    assert out[1].error is not None and "'amount'" in out[1].error.message
    assert out[2].instance is not None and out[2].instance.id == "old"
    generated = out[5]
    assert generated.created and generated.id and generated.instance is not None
    assert out[0].instance is not None
    for inst in (out[0].instance, generated.instance):
        assert inst.wait().result().status == "complete"
    with pytest.raises(InstanceNotFoundError):
        wf.get("b").result()
    # All bad: nothing is sent, every item says why.
    none = wf.create_batch([{"id": "x", "params": {}}], per_item=True).result()
    assert none[0].error is not None and none[0].error.name == "InvalidParamsError"
    with pytest.raises(InvalidInputError, match="per_item"):
        wf.create_batch(items, per_item="yes")  # type: ignore[call-overload]
    with pytest.raises(InvalidInputError, match="1 to 100"):
        wf.create_batch([], per_item=True)


def test_the_params_error_pickles_with_its_fields() -> None:
    err = InvalidParamsError("m", workflow="w", field="a.b", rule="too short", value="'x'")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is InvalidParamsError and vars(back) == vars(err)
