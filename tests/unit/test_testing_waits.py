"""raydo.testing's waits, bad input and introspect_workflow, in the in-process mode (no Ray)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from raydo import (
    InvalidEventTypeError,
    InvalidIdError,
    InvalidInputError,
    InvalidStepError,
    NonRetryableError,
    PayloadError,
    UnreachableError,
    WaitTimeoutError,
    WorkflowEntrypoint,
)
from raydo.testing import LocalEnv, introspect, introspect_workflow


class Order(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        total = await step.do("price", lambda: event.payload["amount"] * 2)
        if event.payload.get("decline"):
            await step.do("charge", _decline)
        await step.sleep("settle", "1 day")
        return {"total": total}


def _decline() -> None:
    raise NonRetryableError("card declined", name="Declined")


@pytest.fixture
def env() -> Any:
    with LocalEnv() as made:
        yield made


def test_a_status_that_can_no_longer_come_fails_at_once(env: LocalEnv) -> None:
    orders = env.workflow(Order)
    with introspect(orders, "a") as inst:
        orders.create(id="a", params={"amount": 5}).result()
        with pytest.raises(UnreachableError, match="ended complete") as caught:
            inst.wait_for_status("errored", timeout=60).result()
    assert (caught.value.id, caught.value.status) == ("a", "complete")
    assert caught.value.expected == "status 'errored'"


def test_the_error_of_an_errored_instance_is_named(env: LocalEnv) -> None:
    orders = env.workflow(Order)
    with introspect(orders, "a") as inst:
        orders.create(id="a", params={"amount": 5, "decline": True}).result()
        with pytest.raises(UnreachableError, match=r"errored \(it errored with Declined"):
            inst.get_output(timeout=60).result()
        assert inst.get_error().result().name == "Declined"
        with pytest.raises(UnreachableError, match="failed for good: Declined: card declined"):
            inst.wait_for_step_result("charge", timeout=60).result()


def test_a_step_result_comes_before_time_moves_on(env: LocalEnv) -> None:
    orders = env.workflow(Order)
    start = env.now()
    with introspect(orders, "a") as inst:
        orders.create(id="a", params={"amount": 5}).result()
        assert inst.wait_for_step_result("price").result() == 10
        assert env.now() == start  # the wait needed no skip, so none happened
        assert inst.get_error  # (the instance is still asleep; finish it for a clean dispose)
        assert inst.get_output().result() == {"total": 10}


def test_a_step_that_never_ran_in_an_ended_instance_is_unreachable(env: LocalEnv) -> None:
    orders = env.workflow(Order)
    with introspect(orders, "a") as inst:
        orders.create(id="a", params={"amount": 5}).result()
        with pytest.raises(UnreachableError, match=r"'charge' #1 can never come"):
            inst.wait_for_step_result("charge", timeout=60).result()


def test_waits_give_up_after_their_real_timeout(env: LocalEnv) -> None:
    env.auto_skip = False
    orders = env.workflow(Order)
    with introspect(orders, "a") as inst:
        orders.create(id="a", params={"amount": 5}).result()
        with pytest.raises(WaitTimeoutError, match="real seconds"):
            inst.wait_for_status("complete", timeout=0.05).result()
        with pytest.raises(WaitTimeoutError, match="did not finish"):
            orders.get("a").result().wait(timeout=0.05).result()
        env.advance("1 day").result()
        assert inst.wait_for_status("complete").result().output == {"total": 10}


def test_a_misspelt_step_name_fails_the_test_once_the_instance_ended(env: LocalEnv) -> None:
    orders = env.workflow(Order)
    inst = introspect(orders, "a").mock_step_result("prise", 1)
    orders.create(id="a", params={"amount": 5}).result()
    with pytest.raises(InvalidStepError, match=r"do step 'prise' #1.*'price' #1 \(do\)") as err:
        inst.wait_for_status("complete").result()
    assert err.value.value == "{'name': 'prise', 'count': 1}"
    with pytest.raises(InvalidStepError, match="'prise'"):
        inst.dispose()


def test_a_modifier_of_the_wrong_kind_of_step_is_named(env: LocalEnv) -> None:
    orders = env.workflow(Order)
    inst = introspect(orders, "a").disable_sleeps(["price"])
    orders.create(id="a", params={"amount": 5}).result()
    with pytest.raises(InvalidStepError, match=r"sleep step 'price' #1.*it is a do step"):
        inst.get_output().result()


@pytest.mark.parametrize(
    ("call", "error", "named"),
    [
        (lambda i: i.mock_step_result("", 1), InvalidStepError, "''"),
        (lambda i: i.mock_step_result({"nme": "x"}, 1), InvalidStepError, "'nme'"),
        (lambda i: i.mock_step_result({"name": "x", "count": 0}, 1), InvalidStepError, "0"),
        (lambda i: i.mock_step_result({"name": "x", "count": "1"}, 1), InvalidStepError, "'1'"),
        (lambda i: i.mock_step_result(7, 1), InvalidStepError, "7"),
        (lambda i: i.mock_step_result("x", {1, 2}), PayloadError, "mocked result of step 'x'"),
        (lambda i: i.mock_step_error("x", "boom"), InvalidInputError, "'boom'"),
        (lambda i: i.mock_step_error("x", ValueError(), times=0), InvalidInputError, "0"),
        (lambda i: i.mock_step_error("x", UnicodeDecodeError), InvalidInputError, "Unicode"),
        (lambda i: i.force_step_timeout("x", times=True), InvalidInputError, "True"),
        (lambda i: i.disable_sleeps("nap"), InvalidStepError, "'nap'"),
        (lambda i: i.disable_retry_delays([{"name": 3}]), InvalidStepError, "3"),
        (lambda i: i.mock_event("bad type!", 1), InvalidEventTypeError, "'bad type!'"),
        (lambda i: i.force_event_timeout(None), InvalidStepError, "None"),
        (lambda i: i.wait_for_status("done"), InvalidInputError, "'done'"),
        (lambda i: i.wait_for_status("complete", timeout=-1), InvalidInputError, "-1"),
        (lambda i: i.wait_for_step_result({"name": "x", "count": -2}), InvalidStepError, "-2"),
    ],
)
def test_bad_input_is_a_typed_error_naming_the_value_and_changes_nothing(
    env: LocalEnv, call: Any, error: type[Exception], named: str
) -> None:
    orders = env.workflow(Order)
    inst = introspect(orders, "a").mock_step_result("price", 3)
    before = env.store(orders.name).modifiers("a")
    with pytest.raises(error, match=named.replace("(", r"\(")):
        call(inst)
    assert env.store(orders.name).modifiers("a") == before
    orders.create(id="a", params={"amount": 5}).result()
    assert inst.get_output().result() == {"total": 3}  # the earlier modifier still holds


def test_an_env_checks_its_start() -> None:
    with pytest.raises(InvalidInputError, match="'tomorrow'"):
        LocalEnv(start="tomorrow")  # type: ignore[arg-type]


def test_introspect_checks_its_arguments(env: LocalEnv) -> None:
    orders = env.workflow(Order)
    with pytest.raises(InvalidIdError, match="'no spaces'"):
        introspect(orders, "no spaces")
    with pytest.raises(InvalidInputError, match="'orders'"):
        introspect("orders", "a")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="count 0"):
        introspect_workflow(orders).wait_for_instances(0)


class Parent(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        children = []
        for i in range(event.payload["children"]):
            child = await self.env.ORDERS.create(
                id=f"{event.instance_id}-{i}", params={"amount": i}
            )
            children.append(child.id)
        results = []
        for cid in children:
            st = await (await self.env.ORDERS.get(cid)).wait()
            results.append(st.output)
        return results


def test_introspect_workflow_modifies_the_instances_created_next(env: LocalEnv) -> None:
    orders = env.workflow(Order)
    parents = env.workflow(Parent, env={"ORDERS": orders})
    orders.create(id="before", params={"amount": 1}).result()
    with introspect_workflow(orders) as created:
        created.mock_step_result("price", 99).disable_sleeps()
        parents.create(id="p", params={"children": 2}).result()  # children made inside run()
        kids = created.wait_for_instances(2).result()
        assert [k.id for k in kids] == ["p-0", "p-1"]
        assert [k.get_output().result() for k in kids] == [{"total": 99}, {"total": 99}]
        with introspect(parents, "p") as parent:
            assert parent.get_output().result() == [{"total": 99}, {"total": 99}]
    assert [k.id for k in created.get()] == ["p-0", "p-1"]  # "before" was never one of them
    orders.create(id="after", params={"amount": 1}).result()
    assert env.store(orders.name).modifiers("after") is None  # disposed: no longer modified


def test_a_workflow_introspection_captures_unmodified_instances_too(env: LocalEnv) -> None:
    orders = env.workflow(Order)
    with introspect_workflow(orders) as created:
        orders.create(id="x", params={"amount": 2}).result()
        (only,) = created.wait_for_instances(1).result()
        assert only.get_output().result() == {"total": 4}  # its day-long sleep skipped


@pytest.mark.asyncio
async def test_waits_can_be_awaited_together() -> None:
    with LocalEnv() as env:
        orders = env.workflow(Order)
        a, b = introspect(orders, "a"), introspect(orders, "b")
        await orders.create(id="a", params={"amount": 1})
        await orders.create(id="b", params={"amount": 2})
        outs = await asyncio.gather(a.get_output(), b.get_output())  # both skip the same day
        assert outs == [{"total": 2}, {"total": 4}]
        a.dispose()
        b.dispose()


def test_blocking_on_a_binding_call_inside_run_is_an_error(env: LocalEnv) -> None:
    class Blocking(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            return self.env.ORDERS.create(id="child", params={"amount": 1}).result()

    orders = env.workflow(Order)
    blocking = env.workflow(Blocking, env={"ORDERS": orders})
    with introspect(blocking, "a") as inst:
        blocking.create(id="a").result()
        error = inst.get_error().result()
    assert error.name == "RuntimeError" and "use `await`" in error.message
