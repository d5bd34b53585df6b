"""Checkout: the workflow from the Cloudflare Workflows overview page, in Python.

    submit payment -> send confirmation text -> sleep "wait for feedback" -> send feedback email
    -> sleep "delay before marketing" -> send marketing follow up

Every step is durable: once "submit payment" has succeeded it is never charged again, even if the
process dies during the sleeps. Two failure modes are shown:

- the SMS gateway is flaky: "send confirmation text" fails its first attempt(s) and is retried
  (retries={"limit": 3, "delay": ..., "backoff": "linear"}) until it succeeds;
- a declined card is not worth retrying: "submit payment" raises NonRetryableError, the step fails
  at once and the instance ends `errored` with the error name "PaymentDeclined".

The sleeps are "2 days" and "30 days" in the original; here they come from the params and default
to a couple of seconds so the example runs in seconds.

    python examples/checkout.py [STORAGE_DIR]
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from typing import Any

import raydo
from raydo import NonRetryableError, StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

# The card token a (fake) payment processor always declines.
DECLINED_CARD = "tok_chargeDeclined"


# -- the outside world (fakes: deterministic, so replays and tests can rely on them) -------------


def submit_to_payment_processor(order: dict[str, Any]) -> dict[str, Any]:
    """Charge the card. A declined card is final: retrying would only annoy the bank."""
    payment = order["payment"]
    if payment["card"] == DECLINED_CARD:
        raise NonRetryableError(
            f"card {payment['card']!r} was declined for {payment['amount']} {payment['currency']}",
            name="PaymentDeclined",
        )
    # Derived from the order id, so the "processor" gives the same answer for the same order.
    charge = "ch_" + hashlib.sha256(order["order_id"].encode()).hexdigest()[:12]
    return {"charge_id": charge, "amount": payment["amount"], "currency": payment["currency"]}


def make_sms_sender(failures: int) -> Any:
    """A confirmation-text sender whose gateway times out on the first `failures` attempts."""

    def send_confirmation(ctx: StepContext) -> dict[str, Any]:
        # ctx.attempt counts from 1 and is stored, so it survives a crash between attempts.
        if ctx.attempt <= failures:
            raise ConnectionError(f"SMS gateway timed out (attempt {ctx.attempt})")
        return {"sent": True, "attempt": ctx.attempt}

    return send_confirmation


# -- the workflow --------------------------------------------------------------------------------


class CheckoutWorkflow(WorkflowEntrypoint):
    """params: {"order_id", "email", "phone", "payment": {"card", "amount", "currency"},
    "feedback_wait": duration, "marketing_wait": duration, "sms_failures": int}"""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        order = event.payload

        # A failure here (NonRetryableError) is raised into run() as WorkflowStepError; not
        # catching it ends the instance `errored` with the step's error name and message.
        receipt = await step.do("submit payment", lambda: submit_to_payment_processor(order))

        text = await step.do(
            "send confirmation text",
            make_sms_sender(order.get("sms_failures", 1)),
            retries={"limit": 3, "delay": "1 second", "backoff": "linear"},
            timeout="30 seconds",
        )

        # The instance holds no process while it sleeps: its actor goes back to the pool.
        await step.sleep("wait for feedback", order.get("feedback_wait", "2 seconds"))

        # The decorator form: the step runs when `feedback_email()` is awaited.
        @step.do("send feedback email")
        async def feedback_email() -> str:
            return f"asked {order['email']} how order {order['order_id']} went"

        feedback = await feedback_email()

        await step.sleep("delay before marketing", order.get("marketing_wait", "1 second"))
        follow_up = await step.do(
            "send marketing follow up", lambda: f"sent 10% coupon to {order['email']}"
        )
        return {
            "order_id": order["order_id"],
            "charge_id": receipt["charge_id"],
            "text_attempts": text["attempt"],
            "feedback": feedback,
            "follow_up": follow_up,
        }


def new_order(card: str = "tok_visa", amount: int = 4200, **overrides: Any) -> dict[str, Any]:
    """The params of one checkout (amount in cents)."""
    order_id = f"order-{uuid.uuid4().hex[:8]}"
    return {
        "order_id": order_id,
        "email": "ana@example.com",
        "phone": "+15550100",
        "payment": {"card": card, "amount": amount, "currency": "USD"},
        **overrides,
    }


def main(storage: str | None = None, feedback_wait: str = "2 seconds") -> list[raydo.StatusInfo]:
    raydo.init(storage)
    checkout = raydo.workflow(CheckoutWorkflow, name="checkout", concurrency=2)
    orders = [
        new_order(feedback_wait=feedback_wait),
        new_order(card=DECLINED_CARD, amount=99_00),
    ]
    started = time.monotonic()
    # The order id doubles as the instance id: a second create for the same order is rejected
    # (InstanceExistsError) instead of charging twice.
    instances = [checkout.create(id=o["order_id"], params=o).result() for o in orders]
    for inst in instances:
        print(f"created {inst.id}")

    results = []
    for inst in instances:
        st = inst.wait(timeout=60).result()
        elapsed = time.monotonic() - started
        if st.status == "complete":
            print(f"[{elapsed:5.1f}s] {st.id}: {st.status} -> {st.output}")
        else:
            assert st.error is not None
            print(f"[{elapsed:5.1f}s] {st.id}: {st.status} -> {st.error.name}: {st.error.message}")
        results.append(st)

    print("final status:", ", ".join(f"{st.id}={st.status}" for st in results))
    raydo.shutdown()
    return results


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
