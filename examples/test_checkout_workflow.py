"""Testing a workflow with raydo.testing: the checkout example (checkout.py), in this process.

    pytest examples/test_checkout_workflow.py

The fixture `raydo_test_env` comes with raydo (its pytest plugin): no conftest. It is a LocalEnv:
raydo in this process on a fake clock, so the month of sleeps in the real checkout takes no time:
while a test waits (`get_output`, `wait_for_status`, ...) and every instance waits on the clock,
the clock jumps to the next wake-up. The same tests run on real Ray with `raydo_ray_env`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from checkout import DECLINED_CARD, CheckoutWorkflow, new_order

from raydo import NonRetryableError
from raydo.testing import LocalEnv, introspect


def test_a_paid_order_completes_after_a_month_of_sleeps(raydo_test_env: LocalEnv) -> None:
    checkout = raydo_test_env.workflow(CheckoutWorkflow)
    order = new_order(feedback_wait="2 days", marketing_wait="30 days", sms_failures=2)
    started = raydo_test_env.now()

    with introspect(checkout, order["order_id"]) as instance:
        checkout.create(id=order["order_id"], params=order).result()
        output = instance.get_output().result()

    assert output["charge_id"].startswith("ch_")
    assert output["text_attempts"] == 3  # two gateway timeouts, retried by the step's policy
    assert raydo_test_env.now() - started >= timedelta(days=32)  # fake time: the test took ms


def test_a_declined_card_fails_the_order_without_retrying(raydo_test_env: LocalEnv) -> None:
    checkout = raydo_test_env.workflow(CheckoutWorkflow)
    order = new_order(card=DECLINED_CARD)

    with introspect(checkout, order["order_id"]) as instance:
        checkout.create(id=order["order_id"], params=order).result()
        error = instance.get_error().result()
        status = instance.wait_for_status("errored").result()

    assert error.name == "PaymentDeclined"
    assert [(s.name, s.attempts) for s in status.steps] == [("submit payment", 1)]


def test_the_payment_processor_can_be_mocked(raydo_test_env: LocalEnv) -> None:
    checkout = raydo_test_env.workflow(CheckoutWorkflow)
    order = new_order(card=DECLINED_CARD)  # the real processor would decline it

    with introspect(checkout, order["order_id"]) as instance:
        instance.mock_step_result("submit payment", {"charge_id": "ch_mock", "amount": 1})
        instance.disable_sleeps()
        checkout.create(id=order["order_id"], params=order).result()
        assert instance.wait_for_step_result("submit payment").result()["charge_id"] == "ch_mock"
        assert instance.get_output().result()["charge_id"] == "ch_mock"


def test_a_gateway_that_stays_down_errors_the_order(raydo_test_env: LocalEnv) -> None:
    checkout = raydo_test_env.workflow(CheckoutWorkflow)
    order = new_order(sms_failures=0)

    with introspect(checkout, order["order_id"]) as instance:
        instance.mock_step_error("send confirmation text", ConnectionError("gateway down"))
        checkout.create(id=order["order_id"], params=order).result()
        error = instance.get_error().result()
        texts = instance.wait_for_status("errored").result().steps[1]

    assert (error.name, error.message) == ("ConnectionError", "gateway down")
    assert texts.attempts == 4  # retries={"limit": 3}: the first attempt and three retries


@pytest.mark.asyncio
async def test_the_same_api_awaited(raydo_test_env: LocalEnv) -> None:
    checkout = raydo_test_env.workflow(CheckoutWorkflow)
    order = new_order(feedback_wait="2 days")

    async with introspect(checkout, order["order_id"]) as instance:
        instance.mock_step_error(
            "submit payment", NonRetryableError("card expired", name="CardExpired")
        )
        await checkout.create(id=order["order_id"], params=order)
        error = await instance.get_error()

    assert (error.name, error.message) == ("CardExpired", "card expired")
