"""raydo.testing's modifiers in the in-process mode (LocalEnv, no Ray): each one changes what
the instance does, and is recorded like the real thing. Time skipping is off unless a test says
otherwise, so a modifier that failed to apply shows as an instance still waiting on the clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raydo import NonRetryableError, WaitForEventTimeoutError, WorkflowEntrypoint, WorkflowStepError
from raydo.errors import WaitTimeoutError
from raydo.testing import LocalEnv, introspect

calls: list[Any] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


@pytest.fixture(params=["memory", "lmdb"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalEnv]:
    storage = None if request.param == "memory" else tmp_path / "storage"
    with LocalEnv(storage, auto_skip=False) as made:
        yield made


def charge(ctx: Any) -> dict[str, Any]:
    calls.append(("charge", ctx.attempt))
    return {"charged": ctx.attempt}


class Shop(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        paid = await step.do(
            "charge", charge, retries={"limit": 4, "delay": "1 hour", "backoff": "exponential"}
        )
        await step.sleep("cool off", "30 days")
        try:
            ev = await step.wait_for_event("approval", type="approved", timeout="2 days")
            approved = ev.payload
        except WaitForEventTimeoutError:
            approved = "timed out"
        return {"paid": paid, "approved": approved}


def test_mocked_result_replaces_the_step_and_is_recorded(env: LocalEnv) -> None:
    shop = env.workflow(Shop)
    with introspect(shop, "a") as inst:
        inst.mock_step_result("charge", {"charged": "mock"})
        inst.disable_sleeps().force_event_timeout("approval")
        shop.create(id="a").result()
        assert inst.get_output().result() == {"paid": {"charged": "mock"}, "approved": "timed out"}
        steps = inst.wait_for_status("complete").result().steps
    assert calls == []  # the real charge never ran
    assert (steps[0].name, steps[0].output, steps[0].attempts) == ("charge", {"charged": "mock"}, 1)


def test_mocked_error_fails_the_first_attempts_then_the_real_step_runs(env: LocalEnv) -> None:
    shop = env.workflow(Shop)
    start = env.now()
    with introspect(shop, "a") as inst:
        inst.mock_step_error("charge", ConnectionError("bank down"), times=2)
        inst.disable_retry_delays().disable_sleeps().mock_event("approved", "ok")
        shop.create(id="a").result()
        assert inst.get_output().result() == {"paid": {"charged": 3}, "approved": "ok"}
        charge_step = inst.wait_for_status("complete").result().steps[0]
    assert calls == [("charge", 3)]
    assert charge_step.attempts == 3
    assert env.now() == start  # an hour's retry delay, a 30-day sleep: none waited for


def test_mocked_error_on_every_attempt_exhausts_the_retries(env: LocalEnv) -> None:
    shop = env.workflow(Shop)
    with introspect(shop, "a") as inst:
        inst.mock_step_error("charge", ConnectionError("bank down")).disable_retry_delays()
        shop.create(id="a").result()
        error = inst.get_error().result()
        steps = inst.wait_for_status("errored").result().steps
    assert (error.name, error.message) == ("ConnectionError", "bank down")
    assert steps[0].attempts == 5 and calls == []


def test_a_mocked_non_retryable_error_stops_at_once(env: LocalEnv) -> None:
    shop = env.workflow(Shop)
    with introspect(shop, "a") as inst:
        inst.mock_step_error("charge", NonRetryableError("card declined", name="Declined"))
        shop.create(id="a").result()
        error = inst.get_error().result()
        steps = inst.wait_for_status("errored").result().steps
    assert (error.name, error.message, steps[0].attempts) == ("Declined", "card declined", 1)


def test_forced_timeouts_are_failed_attempts_without_waiting(env: LocalEnv) -> None:
    shop = env.workflow(Shop)
    start = env.now()
    with introspect(shop, "a") as inst:
        inst.force_step_timeout("charge", times=2).disable_retry_delays()
        shop.create(id="a").result()
        assert inst.wait_for_step_result("charge").result() == {"charged": 3}
    assert calls == [("charge", 3)]
    assert env.now() == start  # a real timeout would have waited 10 minutes per attempt


def test_timeouts_and_errors_are_retried_by_the_step_policy(env: LocalEnv) -> None:
    class Strict(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            try:
                return await step.do("charge", charge, retries={"limit": 1, "delay": 0})
            except WorkflowStepError as exc:
                return [exc.name, exc.error_message, exc.count]

    strict = env.workflow(Strict)
    with introspect(strict, "a") as inst:
        inst.force_step_timeout("charge")
        strict.create(id="a").result()
        assert inst.get_output().result() == ["TimeoutError", "attempt timed out", 1]
    assert calls == []


def test_disable_sleeps_can_name_the_sleeps(env: LocalEnv) -> None:
    class Naps(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            await step.sleep("short", "1 day")
            await step.sleep("long", "300 days")
            return "rested"

    naps = env.workflow(Naps)
    with introspect(naps, "both") as both, introspect(naps, "one") as one:
        both.disable_sleeps()
        one.disable_sleeps(["long"])
        naps.create(id="both").result()
        naps.create(id="one").result()
        assert both.get_output().result() == "rested"
        assert one.wait_for_status("waiting").result().steps[0].name == "short"
        env.advance("1 day").result()  # "long" is disabled: only the day passes
        assert one.get_output().result() == "rested"


def test_selectors_count_calls_of_a_name(env: LocalEnv) -> None:
    class Loop(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            return [await step.do("charge", charge) for _ in range(3)]

    loop = env.workflow(Loop)
    with introspect(loop, "a") as inst:
        inst.mock_step_result({"name": "charge", "count": 2}, "second")
        loop.create(id="a").result()
        assert inst.get_output().result() == [{"charged": 1}, "second", {"charged": 1}]
        assert inst.wait_for_step_result({"name": "charge", "count": 3}).result() == {"charged": 1}


def test_retry_delays_can_be_disabled_per_step(env: LocalEnv) -> None:
    class Two(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            def flaky(ctx: Any) -> int:
                if ctx.attempt == 1:
                    raise ConnectionError("once")
                return int(ctx.attempt)

            policy = {"limit": 1, "delay": "1 hour"}
            return [await step.do(n, flaky, retries=policy) for n in ("fast", "slow")]

    two = env.workflow(Two)
    with introspect(two, "a") as inst:
        inst.disable_retry_delays(["fast"])
        two.create(id="a").result()
        assert inst.wait_for_step_result("fast").result() == 2
        assert inst.wait_for_status("waiting").result().steps[1].state == "retrying"
        env.advance("1 hour").result()
        assert inst.get_output().result() == [2, 2]


def test_mocked_events_go_to_the_first_waits_then_real_events(env: LocalEnv) -> None:
    class Votes(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            votes = []
            for _ in range(2):
                ev = await step.wait_for_event("vote", type="vote", timeout="1 day")
                votes.append(ev.payload)
            return votes

    votes = env.workflow(Votes)
    with introspect(votes, "a") as inst:
        inst.mock_event("vote", {"by": "mock"})
        votes.create(id="a").result()
        assert inst.wait_for_step_result("vote").result()["payload"] == {"by": "mock"}
        assert inst.wait_for_status("waiting").result().steps[1].name == "vote"
        votes.get("a").result().send_event(type="vote", payload={"by": "ana"}).result()
        assert inst.get_output().result() == [{"by": "mock"}, {"by": "ana"}]


def test_a_forced_event_timeout_beats_a_buffered_event(env: LocalEnv) -> None:
    shop = env.workflow(Shop)
    with introspect(shop, "a") as inst:
        inst.force_event_timeout("approval")
        shop.create(id="a").result()
        assert inst.wait_for_status("waiting").result().steps[-1].name == "cool off"
        shop.get("a").result().send_event(type="approved", payload="buffered").result()
        env.advance("30 days").result()
        assert inst.get_output().result()["approved"] == "timed out"


def test_sleep_until_is_disabled_too(env: LocalEnv) -> None:
    class Launch(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            await step.sleep_until("launch", event.timestamp.timestamp() + 86400 * 200)
            return "launched"

    launch = env.workflow(Launch)
    with introspect(launch, "a") as inst:
        inst.disable_sleeps()
        launch.create(id="a").result()
        assert inst.get_output().result() == "launched"


def test_without_modifiers_nothing_changes(env: LocalEnv) -> None:
    shop = env.workflow(Shop)
    with introspect(shop, "a") as inst:
        shop.create(id="a").result()
        assert inst.wait_for_status("waiting").result().steps[-1].name == "cool off"
        with pytest.raises(WaitTimeoutError):  # no skipping in this env: it sleeps for real
            inst.get_output(timeout=0.2).result()
    assert calls == [("charge", 1)]


def test_dispose_removes_the_modifiers(env: LocalEnv) -> None:
    shop = env.workflow(Shop)
    store = env.store(shop.name)
    with introspect(shop, "a") as inst:
        inst.mock_step_result("charge", 1)
        assert store.modifiers("a") is not None
    assert store.modifiers("a") is None
    shop.create(id="a").result()
    with introspect(shop, "a") as inst:
        assert inst.wait_for_step_result("charge").result() == {"charged": 1}  # the real one
