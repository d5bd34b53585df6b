"""Workflow semantics through the Namespace with in-process runners, an in-memory store and a fake
clock. No Ray: these check what replay, retries, sleeps, events and controls mean."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from harness import Harness
from pydantic import BaseModel

from raydo.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidDurationError,
    InvalidStateError,
    NonRetryableError,
    WaitForEventTimeoutError,
    WorkflowStepError,
)
from raydo.runtime import step as step_module
from raydo.runtime.clock import FakeClock
from raydo.runtime.model import WorkflowEntrypoint
from raydo.storage.codec import encode

pytestmark = pytest.mark.asyncio

calls: list[Any] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


class Chain(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        a = await step.do("a", lambda: calls.append("a") or 1)
        await step.sleep("nap", "1 hour")
        b = await step.do("b", lambda: calls.append("b") or a + event.payload["x"])
        return {"b": b}


async def test_finished_steps_never_run_again_across_hibernation() -> None:
    h = Harness(Chain)
    h.create("i", {"x": 41})
    await h.settle()
    assert h.status("i") == "waiting"
    assert calls == ["a"]
    await h.advance(3599)
    assert h.status("i") == "waiting"
    await h.advance(2)
    assert h.status("i") == "complete"
    assert h.output("i") == {"b": 42}
    assert calls == ["a", "b"]


async def test_duplicate_and_unknown_ids() -> None:
    h = Harness(Chain)
    h.create("i", {"x": 1})
    with pytest.raises(InstanceExistsError, match="'i'"):
        h.create("i", {"x": 1})
    with pytest.raises(InstanceNotFoundError, match="'nope'"):
        h.ns.snapshot("nope")
    created = h.ns.create([("i", encode(None)), ("j", encode({"x": 2}))], skip_existing=True)
    assert created == ["j"]
    await h.settle()  # their first steps run in threads: not into the next test's `calls`


class Flaky(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def attempt(ctx: Any) -> int:
            calls.append(ctx.attempt)
            if ctx.attempt < event.payload["succeed_on"]:
                raise ValueError(f"attempt {ctx.attempt} failed")
            return ctx.attempt

        return await step.do(
            "flaky", attempt, retries={"limit": 3, "delay": "10 seconds", "backoff": "linear"}
        )


async def test_retries_follow_backoff_and_persist_between_attempts() -> None:
    h = Harness(Flaky)
    h.create("i", {"succeed_on": 3})
    await h.settle()
    assert calls == [1]
    assert h.status("i") == "waiting"  # a 10 s retry delay hibernates
    await h.advance(9)
    assert calls == [1]
    await h.advance(1.5)
    assert calls == [1, 2]
    await h.advance(19)  # linear: second delay is 20 s
    assert calls == [1, 2]
    await h.advance(1.5)
    assert calls == [1, 2, 3]
    assert h.status("i") == "complete"
    assert h.output("i") == 3


async def test_retries_exhausted_errors_instance_with_name_and_message() -> None:
    h = Harness(Flaky)
    h.create("i", {"succeed_on": 99})
    await h.settle()
    for _ in range(4):
        await h.advance(100)
    assert calls == [1, 2, 3, 4]  # limit 3 retries = 4 attempts
    assert h.status("i") == "errored"
    assert h.error("i") == {"name": "ValueError", "message": "attempt 4 failed"}


class CatchesFailure(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def fail() -> None:
            calls.append("fail")
            raise NonRetryableError("card declined", name="PaymentError")

        try:
            await step.do("pay", fail)
        except WorkflowStepError as err:
            return {"caught": err.name, "message": err.error_message, "retryable": err.retryable}
        return "not reached"


async def test_non_retryable_stops_at_once_and_is_catchable_the_same_on_replay() -> None:
    h = Harness(CatchesFailure)
    h.create("i")
    await h.settle()
    assert calls == ["fail"]
    expected = {"caught": "PaymentError", "message": "card declined", "retryable": False}
    assert h.output("i") == expected
    # replay from scratch: the stored error is raised again without running the step
    h2 = Harness(CatchesFailure, kv=h.kv, clock=h.clock)
    h2.ns.store.save(_with_status(h2, "i", "running"))
    h2.ns.recover()
    await h2.settle()
    assert calls == ["fail"]
    assert h2.output("i") == expected


def _with_status(h: Harness, iid: str, status: str) -> Any:
    rec = h.store.require(iid)
    rec.status = status
    return rec


class Uncaught(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("x", _raise_nonretryable)


def _raise_nonretryable() -> None:
    raise NonRetryableError("stop now")


async def test_uncaught_step_error_errors_instance() -> None:
    h = Harness(Uncaught)
    h.create("i")
    await h.settle()
    assert h.status("i") == "errored"
    assert h.error("i") == {"name": "NonRetryableError", "message": "stop now"}


class Slow(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def hang(ctx: Any) -> str:
            calls.append(ctx.attempt)
            if ctx.attempt == 1:
                await asyncio.sleep(5)
            return "ok"

        return await step.do("hang", hang, timeout=0.05, retries={"limit": 1, "delay": 0})


async def test_timed_out_attempt_is_a_failed_attempt() -> None:
    h = Harness(Slow)
    h.create("i")
    await h.until(lambda: calls == [1])
    await h.advance(0.05)  # the attempt's timeout, on the fake clock
    await h.settle()
    assert calls == [1, 2]
    assert h.output("i") == "ok"


CLOCK = FakeClock()


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock of the test's harness, also the one SlowFirst's steps sleep on."""
    global CLOCK
    CLOCK = FakeClock()
    return CLOCK


class Gathered(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def work(n: int) -> int:
            calls.append(n)
            await CLOCK.sleep(0.01 * (3 - n))  # finish in the reverse order of their start
            return n * 10

        results = await asyncio.gather(
            *(step.do(f"w{n}", lambda n=n: work(n)) for n in range(3)),
            step.sleep("long", "1 day"),
        )
        return results[:3]


async def test_concurrent_steps_run_together_and_replay(clock: FakeClock) -> None:
    h = Harness(Gathered, clock=clock)
    h.create("i")
    await h.advance(0.03)
    await h.settle()
    assert sorted(calls) == [0, 1, 2]
    assert h.status("i") == "waiting"
    await h.advance(86400)
    assert h.output("i") == [0, 10, 20]
    assert sorted(calls) == [0, 1, 2]


class Waits(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        got = []
        for i in range(3):
            ev = await step.wait_for_event(f"e{i}", type="msg", timeout="1 hour")
            got.append(ev.payload)
        try:
            await step.wait_for_event("late", type="never", timeout="1 minute")
        except WaitForEventTimeoutError:
            got.append("timeout")
        return got


async def test_events_buffered_fifo_delivered_once_and_timeout_catchable() -> None:
    h = Harness(Waits)
    h.create("i")
    h.ns.send_event("i", "msg", encode("first"))  # sent before the wait: buffered
    await h.settle()
    h.ns.send_event("i", "msg", encode("second"))
    h.ns.send_event("i", "msg", encode("third"))
    await h.settle()
    assert h.status("i") == "waiting"
    await h.advance(61)
    assert h.output("i") == ["first", "second", "third", "timeout"]


class Paused(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("one", lambda: calls.append("one"))
        await step.sleep("nap", "100 seconds")
        await step.do("two", lambda: calls.append("two"))
        return "done"


async def test_pause_freezes_timers_and_resume_keeps_remaining_time() -> None:
    h = Harness(Paused)
    h.create("i")
    await h.settle()
    await h.advance(40)
    h.ns.pause("i")
    assert h.status("i") == "paused"
    await h.advance(500)
    assert calls == ["one"]
    h.ns.resume("i")
    await h.settle()
    assert h.status("i") == "waiting"
    await h.advance(59)
    assert calls == ["one"]
    await h.advance(2)
    assert calls == ["one", "two"]
    assert h.status("i") == "complete"


async def test_terminate_and_errors_on_finished() -> None:
    h = Harness(Paused)
    h.create("i")
    await h.settle()
    h.ns.terminate("i")
    assert h.status("i") == "terminated"
    await h.advance(200)
    assert calls == ["one"]
    with pytest.raises(InvalidStateError, match="terminated"):
        h.ns.terminate("i")


async def test_restart_from_step_keeps_earlier_results() -> None:
    h = Harness(Paused)
    h.create("i")
    await h.settle()
    await h.advance(101)
    assert calls == ["one", "two"]
    h.ns.restart("i", "nap")
    await h.settle()
    assert calls == ["one", "two"]
    await h.advance(101)
    assert calls == ["one", "two", "two"]
    h.ns.restart("i")
    await h.settle()
    assert calls == ["one", "two", "two", "one"]


class Model(BaseModel):
    when: datetime
    n: int


class Typed(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do("model")
        async def make() -> Model:
            return Model(when=datetime(2030, 1, 1, tzinfo=UTC), n=3)

        m = await make()
        assert isinstance(m, Model)
        d = await step.do("dt", lambda: datetime(2031, 5, 6, tzinfo=UTC))
        assert isinstance(d, datetime)
        return {"n": m.n, "year": d.year}


async def test_decorator_form_and_typed_results() -> None:
    h = Harness(Typed)
    h.create("i")
    await h.settle()
    assert h.output("i") == {"n": 3, "year": 2031}


class BadSleep(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        try:
            await step.sleep_until("past", datetime(2000, 1, 1, tzinfo=UTC))
        except InvalidDurationError as err:
            return str(err)


async def test_sleep_until_past_is_a_clear_error() -> None:
    h = Harness(BadSleep)
    h.create("i")
    await h.settle()
    assert "in the past" in h.output("i")


class TooBig(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("big", lambda: "x" * (2 << 20))


async def test_oversized_result_fails_the_step_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # the real limit is 256 MiB (results over 1 MiB become blob files: storage/blobs.py)
    monkeypatch.setattr(step_module, "MAX_RESULT_BYTES", 1 << 20)
    h = Harness(TooBig)
    h.create("i")
    await h.settle()
    err = h.error("i")
    assert err is not None and err["name"] == "PayloadError"
    assert "'big'" in err["message"] and "1 MiB" in err["message"]


class LoopCount(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        total = 0
        for i in range(5):
            total += await step.do("same", lambda i=i: i)
        await step.sleep("s", timedelta(hours=1))
        return total


async def test_same_name_in_a_loop_gets_counts() -> None:
    h = Harness(LoopCount)
    h.create("i")
    await h.settle()
    steps = h.store.steps("i")
    assert sorted(k for k in steps if k[0] == "same") == [("same", n) for n in range(1, 6)]
    await h.advance(3601)
    assert h.output("i") == 10


async def test_concurrency_limit_queues_instances() -> None:
    h = Harness(Paused, workers=1)
    for n in range(3):
        h.create(f"i{n}")
    assert h.status("i2") == "queued"
    await h.settle()
    assert {h.status(f"i{n}") for n in range(3)} == {"waiting"}


class LongStep(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def slow() -> str:
            calls.append("slow start")
            await CLOCK.sleep(0.2)
            calls.append("slow end")
            return "x"

        await step.do("slow", slow)
        await step.do("after", lambda: calls.append("after"))
        return "ok"


async def test_pause_waits_for_the_running_step_then_resume_continues(clock: FakeClock) -> None:
    h = Harness(LongStep, clock=clock)
    h.create("i")
    await h.until(lambda: "slow start" in calls)
    h.ns.pause("i")
    assert h.ns.snapshot("i").pausing  # reported as waitingForPause
    await h.advance(0.2)
    await h.settle()
    assert calls == ["slow start", "slow end"]
    assert h.status("i") == "paused"
    h.ns.resume("i")
    await h.settle()
    assert calls == ["slow start", "slow end", "after"]
    assert h.output("i") == "ok"


class Exits(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def sync_exit(ctx: Any) -> str:
            calls.append(("sync", ctx.attempt))
            if ctx.attempt == 1:
                raise SystemExit(3)
            return "sync ok"

        async def async_interrupt(ctx: Any) -> str:
            calls.append(("async", ctx.attempt))
            if ctx.attempt == 1:
                raise KeyboardInterrupt
            return "async ok"

        retry = {"limit": 1, "delay": 0}
        a = await step.do("sync", sync_exit, retries=retry)
        b = await step.do("async", async_interrupt, retries=retry)
        return [a, b]


async def test_base_exceptions_from_steps_are_failed_attempts() -> None:
    h = Harness(Exits)
    h.create("i")
    await h.settle()
    assert h.output("i") == ["sync ok", "async ok"]
    assert calls == [("sync", 1), ("sync", 2), ("async", 1), ("async", 2)]
    steps = h.store.steps("i")
    assert steps[("sync", 1)].attempts == 2


class SlowFirst(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        calls.append(("start", event.instance_id))

        async def work() -> str:
            await CLOCK.sleep(event.payload)
            return event.instance_id

        return await step.do("work", work)


async def test_batches_hand_back_unstarted_work_when_one_activation_runs_long(
    clock: FakeClock,
) -> None:
    h = Harness(SlowFirst, workers=1, clock=clock)
    # one create call: the first batch is [long, short0..3]; "long" runs past the 0.1 s budget,
    # is left running for join(), and the shorts go back to the queue unstarted
    items = [("long", encode(0.3))] + [(f"short{n}", encode(0.0)) for n in range(4)]
    h.ns.create(items, skip_existing=False)
    await h.until(lambda: len(calls) == 1)
    await h.advance(0.15)
    assert [iid for _, iid in calls] == ["long"]
    await h.advance(0.2)
    await h.settle()
    assert {h.status(i) for i in ["long", *(f"short{n}" for n in range(4))]} == {"complete"}
    assert h.output("long") == "long"
    started = [iid for _, iid in calls]
    assert sorted(started) == sorted(["long", *(f"short{n}" for n in range(4))])  # each once


async def test_instance_taken_away_while_queued_in_a_batch_never_runs(clock: FakeClock) -> None:
    h = Harness(SlowFirst, workers=1, batch_budget=10.0, clock=clock)
    items = [("long", encode(0.3)), ("victim", encode(0.0)), ("other", encode(0.0))]
    h.ns.create(items, skip_existing=False)
    await h.until(lambda: len(calls) == 1)  # the batch [long, victim, other] is with the worker
    h.ns.terminate("victim")
    await h.advance(0.3)
    await h.settle()
    assert h.status("victim") == "terminated"
    assert ("start", "victim") not in calls
    assert h.output("other") == "other"


class Poisonable(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("only", lambda: f"done {event.instance_id}")


async def test_only_the_instance_that_kills_its_worker_is_blamed() -> None:
    from harness import DyingRunner

    h = Harness(Poisonable, workers=1, runner=DyingRunner)
    items = [("p", encode("poison"))] + [(f"i{n}", encode(None)) for n in range(3)]
    h.ns.create(items, skip_existing=False)  # one batch: [p, i0, i1, i2]; its worker dies at p
    await h.settle(10)
    for n in range(3):
        assert h.status(f"i{n}") == "complete", h.error(f"i{n}")
        assert h.output(f"i{n}") == f"done i{n}"
    assert h.status("p") == "errored"
    assert h.error("p")["name"] == "WorkerLostError"  # type: ignore[index]


async def test_waiters_of_instances_finished_in_a_lost_batch_are_woken() -> None:
    from harness import DyingRunner

    h = Harness(Poisonable, workers=1, runner=DyingRunner)
    h.ns.create([("a", encode(None)), ("b", encode(None))], skip_existing=False)
    # the worker finishes both, then dies before reporting: storage says complete
    await asyncio.wait_for(h.ns.wait_all(["a", "b"], timeout=None), 5)
    assert h.output("a") == "done a" and h.output("b") == "done b"


async def test_pause_of_an_instance_waiting_its_turn_in_a_batch(clock: FakeClock) -> None:
    h = Harness(SlowFirst, workers=1, batch_budget=10.0, clock=clock)
    items = [("long", encode(0.3)), ("held", encode(0.0)), ("other", encode(0.0))]
    h.ns.create(items, skip_existing=False)
    await h.until(lambda: len(calls) == 1)  # [long, held, other] is with the worker
    h.ns.pause("held")
    await h.advance(0.3)
    await h.settle()
    assert h.status("held") == "paused"
    assert "work" not in {n for n, _ in h.store.steps("held")}  # its step never ran
    assert h.output("other") == "other"
    h.ns.resume("held")
    await h.settle()
    assert h.output("held") == "held"


async def test_pause_of_an_instance_handed_back_unstarted(clock: FakeClock) -> None:
    h = Harness(SlowFirst, workers=1, clock=clock)  # 0.1 s budget: "long" joined, rest back
    items = [("long", encode(0.3)), ("held", encode(0.0))]
    h.ns.create(items, skip_existing=False)
    await h.until(lambda: len(calls) == 1)
    h.ns.pause("held")
    await h.advance(0.15)
    await h.advance(0.2)
    await h.settle()
    assert h.status("held") == "paused"
    assert h.output("long") == "long"


class ExitsInRun(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("one", lambda: 1)
        raise SystemExit("run() called sys.exit")


async def test_base_exception_from_run_errors_the_instance() -> None:
    h = Harness(ExitsInRun)
    h.create("i")
    await h.settle()
    assert h.status("i") == "errored"
    assert h.error("i") == {"name": "SystemExit", "message": "run() called sys.exit"}
