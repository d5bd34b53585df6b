"""raydo.testing against real Ray and real LMDB (the `raydo_ray_env` fixture of raydo's pytest
plugin): the modifiers reach the instance actors through storage, and time skips across the
namespace, instance and timer actors through the storage's test clock."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from raydo import (
    InvalidStepError,
    NonRetryableError,
    WaitForEventTimeoutError,
    WaitTimeoutError,
    WorkflowEntrypoint,
)
from raydo.storage.instances import clock_offset
from raydo.storage.kv import open_lmdb
from raydo.testing import RayEnv, introspect, introspect_workflow

pytestmark = pytest.mark.ray

LIMIT = 120.0  # real seconds: generous on a shared 2-core machine; the workflows need 31 days


class LongHaul(WorkflowEntrypoint):
    """30 days asleep, hours of exponential backoff, a day waiting for an event."""

    async def run(self, event: Any, step: Any) -> Any:
        await step.sleep("cool off", "30 days")

        def flaky(ctx: Any) -> int:
            if ctx.attempt < 7:
                raise ConnectionError(f"down (attempt {ctx.attempt})")
            return int(ctx.attempt)

        tries = await step.do(
            "call", flaky, retries={"limit": 8, "delay": "10 minutes", "backoff": "exponential"}
        )
        try:
            await step.wait_for_event("approval", type="approved", timeout="1 day")
            approval = "approved"
        except WaitForEventTimeoutError:
            approval = "timed out"
        return {"tries": tries, "approval": approval}


LONG_HAUL = timedelta(days=31, minutes=630)


def test_a_month_of_sleeps_backoff_and_waits_skips_on_ray(raydo_ray_env: RayEnv) -> None:
    haul = raydo_ray_env.workflow(LongHaul, concurrency=2)
    start = raydo_ray_env.now()
    with introspect(haul, "a") as inst:
        haul.create(id="a").result()
        out = inst.get_output(timeout=LIMIT).result()
        steps = inst.wait_for_status("complete").result().steps
    assert out == {"tries": 7, "approval": "timed out"}
    assert [(s.name, s.attempts) for s in steps if s.type == "do"] == [("call", 7)]
    skipped = raydo_ray_env.now() - start
    assert LONG_HAUL <= skipped < LONG_HAUL + timedelta(minutes=10)  # wake-ups on time, not late


def _real_charge() -> None:
    raise NonRetryableError("the real charge ran", name="RealChargeRan")


class Shop(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        paid = await step.do("charge", _real_charge)

        def ship(ctx: Any) -> int:
            return int(ctx.attempt)

        shipped = await step.do("ship", ship, retries={"limit": 3, "delay": "1 day"})
        await step.sleep("cool off", "90 days")
        approval = await step.wait_for_event("approval", type="approved", timeout="2 days")
        try:
            await step.wait_for_event("review", type="reviewed", timeout="7 days")
            review = "reviewed"
        except WaitForEventTimeoutError:
            review = "timed out"
        return {"paid": paid, "shipped": shipped, "approval": approval.payload, "review": review}


def test_modifiers_reach_the_instance_actors(raydo_ray_env: RayEnv) -> None:
    raydo_ray_env.auto_skip = False  # nothing may need the clock: the modifiers do it all
    shop = raydo_ray_env.workflow(Shop, concurrency=2)
    with introspect(shop, "a") as inst:
        inst.mock_step_result("charge", {"charge_id": "ch_mock"})
        inst.mock_step_error("ship", ConnectionError("courier down"), times=2)
        inst.disable_retry_delays().disable_sleeps()
        inst.mock_event("approved", {"by": "ana"}).force_event_timeout("review")
        shop.create(id="a").result()
        out = inst.get_output(timeout=LIMIT).result()
        ship = inst.wait_for_status("complete").result().steps[1]
    assert out == {
        "paid": {"charge_id": "ch_mock"},
        "shipped": 3,
        "approval": {"by": "ana"},
        "review": "timed out",
    }
    assert (ship.name, ship.attempts) == ("ship", 3)
    assert clock_offset(open_lmdb(raydo_ray_env.storage)) == 0.0  # no time was skipped


def test_a_misspelt_modifier_fails_on_ray_too(raydo_ray_env: RayEnv) -> None:
    shop = raydo_ray_env.workflow(Shop, concurrency=2)
    inst = introspect(shop, "a").mock_step_result("chrage", 1)
    shop.create(id="a").result()
    with pytest.raises(InvalidStepError, match="'chrage'"):
        inst.wait_for_status("complete", timeout=LIMIT).result()
    error = shop.get("a").result().status().result().error
    assert error is not None and error.name == "RealChargeRan"  # the real step ran


class Nap(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.sleep("nap", "1 hour")
        return "rested"


def test_advance_moves_the_actors_clock(raydo_ray_env: RayEnv) -> None:
    raydo_ray_env.auto_skip = False
    nap = raydo_ray_env.workflow(Nap, concurrency=2)
    with introspect(nap, "a") as inst:
        nap.create(id="a").result()
        assert inst.wait_for_status("waiting", timeout=LIMIT).result().status == "waiting"
        raydo_ray_env.advance("59 minutes").result()
        assert nap.get("a").result().status().result().status == "waiting"
        raydo_ray_env.advance("2 minutes").result()
        assert inst.get_output(timeout=LIMIT).result() == "rested"


class Slow(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def work() -> str:
            flag = Path(event.payload["flag"])
            while not flag.exists():  # until the test lets it go
                import time

                time.sleep(0.01)
            return "done"

        return await step.do("work", work)


def test_no_skip_while_a_step_runs_on_ray(raydo_ray_env: RayEnv, tmp_path: Path) -> None:
    slow = raydo_ray_env.workflow(Slow, concurrency=2)
    nap = raydo_ray_env.workflow(Nap, concurrency=2)
    flag = tmp_path / "go"
    kv = open_lmdb(raydo_ray_env.storage)
    with introspect(slow, "s") as working, introspect(nap, "n") as napping:
        slow.create(id="s", params={"flag": str(flag)}).result()
        nap.create(id="n").result()
        assert napping.wait_for_status("waiting", timeout=LIMIT).result().status == "waiting"
        assert working.wait_for_status("running", timeout=LIMIT).result().status == "running"
        with pytest.raises(WaitTimeoutError):  # "work" runs: the clock must stay
            napping.get_output(timeout=1.0).result()
        assert clock_offset(kv) == 0.0
        flag.touch()
        assert working.get_output(timeout=LIMIT).result() == "done"
        assert napping.get_output(timeout=LIMIT).result() == "rested"
    assert (clock_offset(kv) or 0.0) >= 3600 - 60


class Order(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        price = await step.do("price", lambda: event.payload["amount"] * 2)
        await step.sleep("settle", "1 day")
        return {"price": price}


class Parent(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        ids = []
        for i in range(2):
            child = await self.env.ORDERS.create(
                id=f"{event.instance_id}-{i}", params={"amount": i}
            )
            ids.append(child.id)
        return ids


def test_introspect_workflow_reaches_children_created_in_run(raydo_ray_env: RayEnv) -> None:
    orders = raydo_ray_env.workflow(Order, concurrency=2)
    parents = raydo_ray_env.workflow(Parent, concurrency=1, env={"ORDERS": orders})
    with introspect_workflow(orders) as created:
        created.mock_step_result("price", 99)
        with introspect(parents, "p") as parent:
            parents.create(id="p").result()
            assert parent.get_output(timeout=LIMIT).result() == ["p-0", "p-1"]
        kids = created.wait_for_instances(2, timeout=LIMIT).result()
        assert sorted(k.id for k in kids) == ["p-0", "p-1"]
        assert [k.get_output(timeout=LIMIT).result() for k in kids] == [{"price": 99}] * 2


def test_env_storage_is_fresh_and_skewable(raydo_ray_env: RayEnv) -> None:
    assert os.path.isdir(raydo_ray_env.storage)
    assert clock_offset(open_lmdb(raydo_ray_env.storage)) == 0.0
