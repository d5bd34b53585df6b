"""Issue 7 fixes that live in the runtime, tested without Ray (in-memory store, fake clock)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from harness import Harness

from raydo import NonRetryableError, WorkflowStepError
from raydo.errors import InvalidStateError, InvalidStepError
from raydo.runtime.model import WorkflowEntrypoint
from raydo.storage.codec import encode

pytestmark = pytest.mark.asyncio

calls: list[Any] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


# -- 5: a step function that cannot take the context fails at once, not after a minute of retries


class TwoParams(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def needs_two(a: Any, b: Any) -> int:
            calls.append("ran")
            return 1

        return await step.do("bad signature", needs_two)


async def test_step_function_with_an_impossible_signature_fails_at_once() -> None:
    h = Harness(TwoParams)
    h.create("i")
    await h.settle()
    assert h.status("i") == "errored"  # no retry delay: the first attempt ended it
    error = h.error("i")
    assert error is not None and error["name"] == "InvalidStepError"
    assert "'bad signature'" in error["message"] and "(ctx)" in error["message"]
    assert calls == []
    steps = h.store.steps("i")
    assert steps[("bad signature", 1)].attempts == 1


# -- 6: a step called but never awaited


class Forgets(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("first", lambda: calls.append("first"))
        step.do("forgotten", lambda: calls.append("forgotten"))  # no await
        return "done"


async def test_a_step_never_awaited_errors_the_instance_naming_it() -> None:
    h = Harness(Forgets)
    h.create("i")
    await h.settle()
    assert h.status("i") == "errored"
    error = h.error("i")
    assert error is not None and error["name"] == "UnawaitedStepError"
    assert "'forgotten'" in error["message"] and "await" in error["message"]
    assert calls == ["first"]


# -- 8: `except NonRetryableError` catches a step that failed non-retryably, first run and replay


class CatchesNonRetryable(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def decline() -> None:
            raise NonRetryableError("declined", name="CardError")

        try:
            await step.do("pay", decline)
        except NonRetryableError as err:
            assert isinstance(err, WorkflowStepError)
            return {"caught": err.name}
        return "not reached"


async def test_non_retryable_step_failure_is_a_non_retryable_error() -> None:
    h = Harness(CatchesNonRetryable)
    h.create("i")
    await h.settle()
    assert h.output("i") == {"caught": "CardError"}


# -- 10: send_event to a finished instance


class Quick(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("one", lambda: 1)


async def test_send_event_to_a_finished_instance_is_refused_naming_the_status() -> None:
    h = Harness(Quick)
    h.create("i")
    await h.settle()
    assert h.status("i") == "complete"
    with pytest.raises(InvalidStateError, match="complete") as err:
        h.ns.send_event("i", "approved", encode(None))
    assert err.value.status == "complete"
    assert not h.store.has_events("i", ["approved"])  # nothing written


# -- 15: restart from a step counts each kind separately (a sleep and a do of one name)


class Checkpoints(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.sleep("checkpoint", 1)
        await step.do("middle", lambda: calls.append("middle"))
        await step.do("checkpoint", lambda: calls.append("checkpoint"))
        return "ok"


async def test_restart_from_a_name_defaults_to_the_do_step_of_that_name() -> None:
    h = Harness(Checkpoints)
    h.create("i")
    await h.settle()
    await h.advance(2)
    assert h.status("i") == "complete"
    assert calls == ["middle", "checkpoint"]
    h.ns.restart("i", ("checkpoint", 1, "do"))
    await h.settle()
    assert h.status("i") == "complete"
    assert calls == ["middle", "checkpoint", "checkpoint"]  # "middle" did not run again
    h.ns.restart("i", ("checkpoint", 1, "sleep"))
    await h.settle()
    await h.advance(2)
    assert calls == ["middle", "checkpoint", "checkpoint", "middle", "checkpoint"]
    with pytest.raises(InvalidStepError, match="no such step"):
        h.ns.restart("i", ("checkpoint", 2, "do"))


# -- 3: a running step can notice that its attempt was abandoned


NOTICED = threading.Event()


class Watches(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def loop(ctx: Any) -> str:
            calls.append("started")
            while not ctx.cancelled:
                threading.Event().wait(0.005)
            NOTICED.set()
            ctx.check_cancelled()  # raises: the result would be discarded anyway
            return "not reached"

        return await step.do("watch", loop)


async def test_terminate_lets_a_running_sync_step_notice() -> None:
    NOTICED.clear()
    h = Harness(Watches)
    h.create("i")
    await h.until(lambda: calls == ["started"])
    h.ns.terminate("i")
    await h.until(NOTICED.is_set)
    await h.settle()
    assert h.status("i") == "terminated"
