"""A sleep that is over is recorded with the activation's next write, not in a transaction of
its own (Activation.save_behind): a wake activation commits one transaction fewer, and the
history still tells what happened in order."""

from __future__ import annotations

import asyncio
from typing import Any

from harness import Harness

from raydo import WorkflowEntrypoint
from raydo.storage import history
from raydo.storage.kv import MemoryKV


class CountingKV(MemoryKV):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, fn: Any, durable: bool = True) -> Any:
        self.writes += 1
        return super().write(fn, durable)


class SleepThenStep(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.do("before", lambda: 1)
        await step.sleep("nap", "1 hour")
        if event.payload == "sleep-last":
            return "slept"
        if event.payload == "then-wait":
            got = await step.wait_for_event("go", type="go", timeout="1 hour")
            return got.payload
        return await step.do("after", lambda: 2)


def _types(h: Harness, iid: str) -> list[str]:
    events = h.kv.read(lambda r: history.read(r, "wf", iid, None, 100))
    return [e["type"] for e in events]


def test_a_wake_activation_records_the_sleep_with_the_next_step_in_order() -> None:
    async def main() -> None:
        h = Harness(SleepThenStep, kv=CountingKV(), workers=1)
        h.create("a")
        await h.settle()
        assert h.status("a") == "waiting"
        before = h.kv.writes
        await h.advance(3600)
        assert h.status("a") == "complete" and h.output("a") == 2
        # acquire, the next step's start (with the sleep's end), its result, the settle
        assert h.kv.writes - before == 4
        tail = _types(h, "a")[-8:]
        assert tail == [
            "workflow_waiting",
            "workflow_running",
            "sleep_completed",
            "step_started",
            "attempt_started",
            "attempt_completed",
            "step_completed",
            "workflow_completed",
        ]

    asyncio.run(main())


def test_a_sleep_that_ends_the_run_or_precedes_a_wait_is_still_recorded_first() -> None:
    async def main() -> None:
        h = Harness(SleepThenStep, kv=CountingKV(), workers=1)
        h.create("last", "sleep-last")
        h.create("wait", "then-wait")
        await h.settle()
        await h.advance(3600)
        assert h.status("last") == "complete"
        assert _types(h, "last")[-2:] == ["sleep_completed", "workflow_completed"]
        steps = h.store.steps("last")
        assert steps[("nap", 1)].state.value == "done"
        waits = _types(h, "wait")
        assert waits.index("sleep_completed") < waits.index("wait_started")

    asyncio.run(main())
