"""Issue 10's step semantics in process (in-memory store, fake clock): replay safety and
step.patched, delay functions, sensitive outputs, rollbacks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from harness import Harness

from raydo.bindings.display import InstanceDescription
from raydo.bindings.workflow import to_status
from raydo.errors import InvalidStepError, NonDeterminismError, NonRetryableError, StepRef
from raydo.runtime.model import WorkflowEntrypoint
from raydo.runtime.rollback import RollbackContext
from raydo.runtime.rules import step_config

pytestmark = pytest.mark.asyncio

calls: list[Any] = []
caught: list[BaseException] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    caught.clear()


def ran(name: str, value: Any = None) -> Any:
    calls.append(name)
    return value if value is not None else name


async def resumed_on(old: Harness, new_cls: type[WorkflowEntrypoint]) -> Harness:
    """The same storage and clock, a new class: what a redeploy does to instances in flight."""
    h = Harness(new_cls, kv=old.kv, clock=old.clock)
    h.ns.recover()
    await h.settle()
    return h


# -- replay safety -------------------------------------------------------------------------------


class Old(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        a = await step.do("a", lambda: ran("a"))
        b = await step.do("b", lambda: ran("b"))
        await step.sleep("nap", "1 hour")
        return [a, b]


class Renamed(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        a = await step.do("a", lambda: ran("a"))
        b = await step.do("b-renamed", lambda: ran("b-renamed"))
        await step.sleep("nap", "1 hour")
        return [a, b]


class Reordered(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        try:
            b = await step.do("b", lambda: ran("b"))
        except NonDeterminismError as err:
            caught.append(err)  # a user that swallows it: the instance errors all the same
            b = None
        a = await step.do("a", lambda: ran("a"))
        await step.sleep("nap", "1 hour")
        return [a, b]


class SleepInstead(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("a", lambda: ran("a"))
        await step.sleep("pause", "1 minute")
        await step.do("b", lambda: ran("b"))
        await step.sleep("nap", "1 hour")


class KindChanged(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("a", lambda: ran("a"))
        await step.sleep("b", "1 minute")


async def started_on_old() -> Harness:
    h = Harness(Old)
    h.create("i")
    await h.settle()
    assert h.status("i") == "waiting" and calls == ["a", "b"]
    calls.clear()
    return h


async def test_a_renamed_step_errors_the_instance_without_running_it() -> None:
    h = await resumed_on(await started_on_old(), Renamed)
    await h.advance(3601)
    assert h.status("i") == "errored"
    error = h.error("i")
    assert error is not None and error["name"] == "NonDeterminismError"
    assert "'b-renamed' #1" in error["message"] and "do step 'b' #1" in error["message"]
    assert calls == []  # not b-renamed's side effect, nor anything after


async def test_a_reordered_step_errors_even_when_run_catches_it() -> None:
    h = await resumed_on(await started_on_old(), Reordered)
    await h.advance(3601)
    assert h.status("i") == "errored"
    assert calls == []  # "a" after the caught error was refused too
    err = caught[0]
    assert isinstance(err, NonDeterminismError)
    assert err.recorded == StepRef("do", "a", 1) and err.found == StepRef("do", "b", 1)
    assert (err.recorded.name, err.found.kind) == ("a", "do")


async def test_a_sleep_where_a_step_was_is_named_with_both_kinds() -> None:
    h = await resumed_on(await started_on_old(), SleepInstead)
    await h.advance(3601)
    error = h.error("i")
    assert h.status("i") == "errored" and error is not None
    assert "sleep step 'pause' #1" in error["message"] and "do step 'b' #1" in error["message"]
    assert calls == []


async def test_same_name_another_kind_is_a_non_determinism_error() -> None:
    h = await resumed_on(await started_on_old(), KindChanged)
    await h.advance(3601)
    error = h.error("i")
    assert h.status("i") == "errored" and error is not None
    assert error["name"] == "NonDeterminismError" and "'waitForEvent'" not in error["message"]
    assert "recorded as 'do' but is now called as 'sleep'" in error["message"]


class Branches(WorkflowEntrypoint):
    """Two branches whose steps start in one order the first time (the sync step X takes real
    time) and are met in another on replay (X's record answers at once)."""

    async def run(self, event: Any, step: Any) -> Any:
        async def first() -> Any:
            await step.do("x", lambda: time.sleep(0.05) or ran("x"))
            return await step.do("after-x", lambda: ran("after-x"))

        async def second() -> Any:
            return await step.do("y", lambda: ran("y"))

        results = await asyncio.gather(first(), second())
        await step.sleep("nap", "1 hour")
        return results


async def test_concurrent_branches_that_replay_in_another_order_are_not_flagged() -> None:
    h = Harness(Branches)
    h.create("i")
    await h.settle()
    steps = h.store.steps("i")
    assert steps[("y", 1)].seq < steps[("after-x", 1)].seq  # y started before after-x
    await h.advance(3601)
    assert h.status("i") == "complete", h.error("i")
    assert h.output("i") == ["after-x", "y"]
    assert sorted(calls) == ["after-x", "x", "y"]  # each once


class Priced(WorkflowEntrypoint):
    """Old code: one price step. New code below asks step.patched before it."""

    async def run(self, event: Any, step: Any) -> Any:
        price = await step.do("price", lambda: ran("price", 10))
        await step.sleep("nap", "1 hour")
        return await step.do("charge", lambda: ran("charge", price))


class Repriced(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        if step.patched("new-pricing"):
            price = await step.do("price-v2", lambda: ran("price-v2", 12))
        else:
            price = await step.do("price", lambda: ran("price", 10))
        await step.sleep("nap", "1 hour")
        if step.patched("receipt"):  # past every instance's frontier: new code for all
            await step.do("receipt", lambda: ran("receipt"))
        return await step.do("charge", lambda: ran("charge", price))


async def test_patched_keeps_instances_started_on_old_code_on_the_old_branch() -> None:
    old = Harness(Priced)
    old.create("early")
    await old.settle()
    assert old.status("early") == "waiting"
    h = await resumed_on(old, Repriced)
    h.create("late")
    await h.settle()
    await h.advance(3601)
    assert (h.status("early"), h.status("late")) == ("complete", "complete")
    assert (h.output("early"), h.output("late")) == (10, 12)
    assert calls.count("price") == 1 and calls.count("price-v2") == 1
    assert calls.count("receipt") == 2  # both reached it for the first time on the new code
    marks = {n: s for (n, c), s in h.store.steps("early").items() if s.kind == "patch"}
    assert set(marks) == {"new-pricing", "receipt"}
    shown = {(s.name, s.output) for s in to_status(h.ns.snapshot("early", True)).steps}
    assert ("new-pricing", False) in shown and ("receipt", True) in shown


async def test_patched_answers_are_recorded_and_replayed_alike() -> None:
    h = Harness(Repriced)
    h.create("i")
    await h.settle()
    assert calls == ["price-v2"]
    await h.advance(3601)
    assert h.status("i") == "complete" and h.output("i") == 12
    assert calls == ["price-v2", "receipt", "charge"]


# -- delay functions -----------------------------------------------------------------------------


class Flaky(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def attempt(ctx: Any) -> str:
            calls.append(ctx.attempt)
            if ctx.attempt < 3:
                raise KeyError(f"attempt {ctx.attempt}")
            return "ok"

        def delay(ctx: Any, error: BaseException) -> Any:
            caught.append(error)
            if event.payload == "raise":
                raise ValueError("no delay for you")
            return f"{ctx.attempt * 100} seconds"

        return await step.do("flaky", attempt, retries={"limit": 5, "delay": delay})


async def test_a_delay_function_sets_each_retry_delay() -> None:
    h = Harness(Flaky)
    h.create("i", "ok")
    await h.settle()
    assert calls == [1] and h.status("i") == "waiting"
    await h.advance(99)
    assert calls == [1]
    await h.advance(2)  # 100 s after attempt 1
    assert calls == [1, 2]
    await h.advance(199)
    assert calls == [1, 2]
    await h.advance(2)  # 200 s after attempt 2
    assert h.status("i") == "complete" and calls == [1, 2, 3]
    assert [type(e) for e in caught] == [KeyError, KeyError]


async def test_a_delay_function_that_raises_fails_the_step_as_non_retryable() -> None:
    h = Harness(Flaky)
    h.create("i", "raise")
    await h.settle()
    assert h.status("i") == "errored" and calls == [1]
    error = h.error("i")
    assert error is not None and error["name"] == "ValueError"
    assert "delay function raised ValueError" in error["message"]
    assert "KeyError" in error["message"]
    rec = h.store.steps("i")[("flaky", 1)]
    assert rec.error is not None and rec.error["retryable"] is False


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"retries": {"delay": object()}}, "retries delay <object"),
        ({"retries": {"delay": lambda ctx: 1}}, "fn(ctx, error)"),
        ({"rollback": 5}, "rollback 5 is not callable"),
        ({"rollback": lambda a, b: None}, "one argument"),
        ({"rollback_config": {"timeout": 5}}, "without a rollback handler"),
        ({"rollback": print, "rollback_config": {"limit": 5}}, "keys from"),
        ({"sensitive": "yes"}, "sensitive 'yes'"),
    ],
)
async def test_bad_step_options_are_refused_naming_the_value(
    kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidStepError) as info:
        step_config(kwargs.pop("retries", None), None, **kwargs)
    assert named in str(info.value)


class BadOption(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("s", lambda: ran("s"), rollback="undo")


async def test_a_bad_option_in_run_errors_the_instance_before_the_step_runs() -> None:
    h = Harness(BadOption)
    h.create("i")
    await h.settle()
    error = h.error("i")
    assert h.status("i") == "errored" and error is not None
    assert error["name"] == "InvalidStepError" and "'undo'" in error["message"]
    assert calls == []


# -- sensitive -----------------------------------------------------------------------------------


class Secret(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        token = await step.do("token", lambda: ran("token", "s3cr3t-value"), sensitive=True)
        await step.sleep("nap", "1 hour")
        return await step.do("use", lambda: ran("use", len(token)))


async def test_a_sensitive_output_is_redacted_in_views_but_given_to_the_code() -> None:
    h = Harness(Secret)
    h.create("i")
    await h.settle()
    await h.advance(3601)  # a replay: the next step gets the real value from storage
    assert h.status("i") == "complete" and h.output("i") == len("s3cr3t-value")
    st = to_status(h.ns.snapshot("i", steps=True))
    token = next(s for s in st.steps if s.name == "token")
    assert token.output == "<redacted>"
    assert "s3cr3t" not in st.model_dump_json()
    assert "s3cr3t" not in str(InstanceDescription(st))
    assert "s3cr3t" not in InstanceDescription(st)._repr_html_()


# -- rollbacks -----------------------------------------------------------------------------------


def undo(tag: str) -> Any:
    def handler(rb: RollbackContext) -> None:
        calls.append((f"undo-{tag}", rb.output, rb.error.name, rb.ctx.step.name))

    return handler


class Saga(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        fast = {"retries": {"limit": 1, "delay": "1 hour"}}
        await step.do("a", lambda: ran("a", {"id": 1}), rollback=undo("a"))
        await step.do("plain", lambda: ran("plain"))

        async def undo_b(rb: RollbackContext) -> None:
            calls.append(("undo-b", rb.output, rb.error.name, rb.ctx.step.count))
            tries = sum(isinstance(c, tuple) and c[0] == "undo-b" for c in calls)
            if event.payload == "flaky-undo" and tries == 1:
                raise RuntimeError("refund service down")
            if event.payload == "failing-undo":
                raise RuntimeError("refund refused")

        await step.do("b", lambda: ran("b", 2), rollback=undo_b, rollback_config=fast)
        await step.do(
            "never-undone", lambda: ran("never-undone"), rollback=lambda: calls.append("oops")
        )
        if event.payload == "wait":
            await step.wait_for_event("go", type="go")
        await step.do("fails", _fail, rollback=undo("fails"))


def _fail() -> None:
    calls.append("fails")
    raise NonRetryableError("card declined", name="Declined")


async def test_handlers_of_finished_steps_run_in_reverse_start_order_before_errored() -> None:
    h = Harness(Saga)
    h.create("i", "plain")
    await h.settle()
    assert h.status("i") == "errored"
    undos = [c for c in calls if isinstance(c, tuple) or c == "oops"]
    assert undos == [
        ("undo-fails", None, "Declined", "fails"),  # failed for good: undone too, output None
        "oops",
        ("undo-b", 2, "Declined", 1),
        ("undo-a", {"id": 1}, "Declined", "a"),
    ]
    st = to_status(h.ns.snapshot("i", steps=True))
    assert st.rollback is not None and st.rollback.outcome == "completed"
    assert st.rollback.error is None and st.error is not None and st.error.name == "Declined"
    kinds = [(s.name, s.type) for s in st.steps if s.type == "rollback"]
    assert [name for name, _ in kinds] == ["fails", "never-undone", "b", "a"]


async def test_a_handler_retry_survives_hibernation_and_finished_handlers_never_repeat() -> None:
    h = Harness(Saga)
    h.create("i", "flaky-undo")
    await h.settle()
    assert h.status("i") == "waiting"  # b's handler waits an hour for its retry
    assert calls.count("oops") == 1 and sum(c[0] == "undo-b" for c in calls if c != "oops") == 1
    await h.advance(3601)
    assert h.status("i") == "errored"
    assert calls.count("oops") == 1  # finished before the hibernation: not run again
    undos = [c[0] for c in calls if isinstance(c, tuple)]
    assert undos == ["undo-fails", "undo-b", "undo-b", "undo-a"]
    rollback = to_status(h.ns.snapshot("i")).rollback
    assert rollback is not None and rollback.outcome == "completed"


async def test_a_failing_handler_makes_the_outcome_failed_and_the_others_still_run() -> None:
    h = Harness(Saga)
    h.create("i", "failing-undo")
    await h.settle()
    await h.advance(3601)
    assert h.status("i") == "errored"
    undos = [c[0] for c in calls if isinstance(c, tuple)]
    assert undos == ["undo-fails", "undo-b", "undo-b", "undo-a"]
    rollback = to_status(h.ns.snapshot("i")).rollback
    assert rollback is not None and rollback.outcome == "failed"
    assert rollback.error is not None and rollback.error.name == "RuntimeError"
    assert rollback.error.message == "refund refused"


async def test_terminate_with_rollback_runs_handlers_then_stores_terminated() -> None:
    h = Harness(Saga)
    h.create("i", "wait")
    await h.settle()
    assert h.status("i") == "waiting"
    calls.clear()
    h.ns.terminate("i", rollback=True)
    await h.settle()
    assert h.status("i") == "terminated"
    assert calls[0] == "oops"
    assert [c[:3] for c in calls[1:]] == [
        ("undo-b", 2, "Terminated"),
        ("undo-a", {"id": 1}, "Terminated"),
    ]
    rollback = to_status(h.ns.snapshot("i")).rollback
    assert rollback is not None and rollback.outcome == "completed"
    assert "fails" not in calls  # run() stopped at the wait: nothing after it ran


async def test_terminate_without_rollback_runs_no_handler() -> None:
    h = Harness(Saga)
    h.create("i", "wait")
    await h.settle()
    calls.clear()
    h.ns.terminate("i")
    await h.settle()
    assert h.status("i") == "terminated" and calls == []
    assert to_status(h.ns.snapshot("i")).rollback is None


async def test_non_determinism_error_pickles_with_its_fields() -> None:
    import pickle

    err = NonDeterminismError("m", "b", 1, StepRef("do", "a", 1), StepRef("sleep", "b", 1))
    back = pickle.loads(pickle.dumps(err))
    assert (back.recorded, back.found, back.step, back.count) == (err.recorded, err.found, "b", 1)
    assert repr(back.found) == "sleep step 'b' #1"


async def test_restart_clears_the_rollback_and_a_plain_terminate_cuts_one_short() -> None:
    h = Harness(Saga)
    h.create("i", "plain")
    await h.settle()
    assert to_status(h.ns.snapshot("i")).rollback is not None
    h.ns.restart("i")
    assert to_status(h.ns.snapshot("i")).rollback is None
    await h.settle()  # fails again, rolls back again

    h.create("j", "wait")
    await h.settle()
    h.ns.terminate("j", rollback=True)  # queued to roll back ...
    h.ns.terminate("j")  # ... and stopped before it could
    rollback = to_status(h.ns.snapshot("j")).rollback
    assert h.status("j") == "terminated" and rollback is not None
    assert rollback.outcome == "failed" and rollback.error is not None
    assert rollback.error.name == "Terminated"


def _failed_once() -> Any:
    from raydo.storage.records import StepKind, StepRecord, StepState

    return StepRecord(kind=StepKind.DO, seq=0, state=StepState.RUNNING, attempts=1)


async def test_after_failure_asks_the_delay_function_and_turns_its_failures_non_retryable() -> None:
    from datetime import timedelta

    from raydo.runtime.retrying import after_failure
    from raydo.runtime.rules import RetryPolicy

    error = {"name": "KeyError", "message": "k", "retryable": True}
    seen: list[Any] = []

    def by_attempt(ctx: Any, exc: BaseException) -> Any:
        seen.append((ctx, type(exc).__name__))
        return timedelta(minutes=ctx)

    async def awaitable(ctx: Any, exc: BaseException) -> float:
        return 1.0

    policy = RetryPolicy(limit=3, delay=by_attempt)
    moved = after_failure(_failed_once(), error, policy, 100.0, ctx=2, exc=KeyError("k"))
    assert (moved.state, moved.until, seen) == ("retrying", 220.0, [(2, "KeyError")])
    lost = after_failure(_failed_once(), error, policy, 100.0, at_once=True)
    assert (lost.until, len(seen)) == (100.0, 1)  # a lost attempt retries at once, unasked
    for fn, named in [
        (lambda ctx, exc: 1 / 0, "ZeroDivisionError"),
        (lambda ctx, exc: -5, "InvalidDurationError"),
        (awaitable, "InvalidInputError"),
    ]:
        done = after_failure(_failed_once(), error, RetryPolicy(delay=fn), 0.0, ctx=1)
        assert done.state == "done" and done.error["name"] == named
        assert done.error["retryable"] is False and "KeyError: k" in done.error["message"]


class BadPatch(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        if step.patched("bad\nid"):
            ran("new")


async def test_a_bad_patch_id_is_refused_naming_it() -> None:
    h = Harness(BadPatch)
    h.create("i")
    await h.settle()
    error = h.error("i")
    assert h.status("i") == "errored" and error is not None
    assert error["name"] == "InvalidStepError" and "'bad\\nid'" in error["message"]
    assert calls == [] and h.store.steps("i") == {}


class Fanout(WorkflowEntrypoint):
    """Two branches: on replay the first reaches its unfinished wait while the second, a few
    loop turns behind, has not yet met its finished step (whose handler must still run)."""

    async def run(self, event: Any, step: Any) -> Any:
        async def left() -> Any:
            await step.do("slow", lambda: time.sleep(0.05))  # a thread: x runs meanwhile
            return await step.wait_for_event("go", type="go")

        async def right() -> Any:
            for _ in range(3):  # behind the other branch by a few turns of the loop
                await asyncio.sleep(0)
            return await step.do("x", lambda: ran("x", 7), rollback=undo("x"))

        return await asyncio.gather(left(), right())


class FanoutWithoutHandler(Fanout):
    async def run(self, event: Any, step: Any) -> Any:
        async def left() -> Any:
            await step.do("slow", lambda: time.sleep(0.05))
            return await step.wait_for_event("go", type="go")

        async def right() -> Any:
            return await step.do("x", lambda: ran("x", 7))  # the new code dropped the handler

        return await asyncio.gather(left(), right())


async def test_terminate_with_rollback_undoes_steps_of_branches_that_replay_later() -> None:
    h = Harness(Fanout)
    h.create("i")
    await h.settle()
    assert h.status("i") == "waiting" and calls == ["x"]
    h.ns.terminate("i", rollback=True)
    await h.settle()
    assert h.status("i") == "terminated"
    assert calls == ["x", ("undo-x", 7, "Terminated", "x")]
    rollback = to_status(h.ns.snapshot("i")).rollback
    assert rollback is not None and rollback.outcome == "completed"


async def test_a_finished_step_whose_handler_the_new_code_dropped_fails_the_rollback() -> None:
    old = Harness(Fanout)
    old.create("i")
    await old.settle()
    h = await resumed_on(old, FanoutWithoutHandler)
    h.ns.terminate("i", rollback=True)
    await h.settle()
    rollback = to_status(h.ns.snapshot("i")).rollback
    assert h.status("i") == "terminated" and rollback is not None
    assert rollback.outcome == "failed" and rollback.error is not None
    assert rollback.error.name == "RollbackHandlerMissing" and "'x' #1" in rollback.error.message
