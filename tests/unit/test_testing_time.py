"""Time in raydo.testing's in-process mode: the clock skips only while the test waits and every
instance waits on it, or when the test advances it, and each wake-up plays out before time moves
on. A workflow of months finishes at once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from raydo import WaitForEventTimeoutError, WaitTimeoutError, WorkflowEntrypoint
from raydo.testing import LocalEnv, introspect

attempts: list[int] = []


class LongHaul(WorkflowEntrypoint):
    """30 days asleep, hours of exponential backoff, a day waiting for an event."""

    async def run(self, event: Any, step: Any) -> Any:
        await step.sleep("cool off", "30 days")

        def flaky(ctx: Any) -> int:
            attempts.append(ctx.attempt)
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


# 30 days + 10+20+40+80+160+320 minutes of backoff + 1 day
LONG_HAUL = timedelta(days=31, minutes=630)


@pytest.mark.parametrize("storage", ["memory", "lmdb"])
def test_a_month_of_sleeps_backoff_and_waits_takes_no_real_time(
    storage: str, tmp_path: Path
) -> None:
    attempts.clear()
    with LocalEnv(None if storage == "memory" else tmp_path / "s") as env:
        haul = env.workflow(LongHaul)
        start = env.now()
        with introspect(haul, "a") as inst:
            haul.create(id="a").result()
            # A 30-second real limit for 31 days of workflow time: only skipping can meet it.
            out = inst.get_output(timeout=30).result()
        assert out == {"tries": 7, "approval": "timed out"}
        assert attempts == [1, 2, 3, 4, 5, 6, 7]
        assert env.now() - start == LONG_HAUL  # each wake-up on its due time, none early or late


def test_time_moves_only_while_the_test_waits() -> None:
    with LocalEnv() as env:
        haul = env.workflow(LongHaul)
        start = env.now()
        haul.create(id="a").result()
        inst = introspect(haul, "a")
        assert inst.wait_for_status("waiting").result().status == "waiting"
        env.advance(0).result()  # everything has settled...
        assert env.now() == start  # ...and still no time passed: nobody waits for an end
        assert inst.get_output(timeout=30).result()["tries"] == 7
        inst.dispose()


def test_an_event_sent_while_waiting_arrives_before_the_clock_skips() -> None:
    with LocalEnv() as env:
        haul = env.workflow(LongHaul)
        with introspect(haul, "a") as inst:
            inst.disable_sleeps().disable_retry_delays()
            haul.create(id="a").result()
            waiting = inst.wait_for_status("waiting").result()
            assert waiting.steps[-1].name == "approval"
            before = env.now()
            haul.get("a").result().send_event(type="approved").result()
            assert inst.get_output().result()["approval"] == "approved"
            assert env.now() == before


def test_no_skip_while_a_step_runs() -> None:
    release = threading.Event()
    seen: list[datetime] = []

    with LocalEnv() as env:

        class Slow(WorkflowEntrypoint):
            async def run(self, event: Any, step: Any) -> Any:
                def work() -> str:
                    seen.append(env.now())
                    release.wait(30)
                    seen.append(env.now())
                    return "done"

                return await step.do("work", work)

        class Nap(WorkflowEntrypoint):
            async def run(self, event: Any, step: Any) -> Any:
                await step.sleep("nap", "1 hour")
                return "rested"

        slow, nap = env.workflow(Slow), env.workflow(Nap)
        with introspect(slow, "s") as working, introspect(nap, "n") as napping:
            slow.create(id="s").result()
            nap.create(id="n").result()
            assert napping.wait_for_status("waiting").result().status == "waiting"
            # The test waits for the nap's end (skipping is on) while "work" runs in a thread:
            # the clock must not move, so the nap cannot end.
            with pytest.raises(WaitTimeoutError):
                napping.get_output(timeout=0.3).result()
            release.set()
            assert working.get_output().result() == "done"
            assert napping.get_output().result() == "rested"
        assert len(seen) == 2 and seen[0] == seen[1]


def test_advance_wakes_in_order_and_lets_each_wake_play_out() -> None:
    with LocalEnv(auto_skip=False) as env:

        class Ticks(WorkflowEntrypoint):
            async def run(self, event: Any, step: Any) -> Any:
                times = []
                for _ in range(3):
                    await step.sleep("tick", "1 hour")
                    times.append(await step.do("now", lambda: env.now().isoformat()))
                return times

        ticks = env.workflow(Ticks)
        start = env.now()
        with introspect(ticks, "a") as inst:
            ticks.create(id="a").result()
            env.advance("59 minutes").result()
            assert inst.wait_for_status("waiting").result().steps[-1].name == "tick"
            env.advance("2 hours").result()
            assert (
                len(inst.wait_for_status("waiting").result().steps) == 5
            )  # tick now tick now tick
            env.advance("1 hour").result()
            out = inst.get_output().result()
        assert [datetime.fromisoformat(t) - start for t in out] == [
            timedelta(hours=1),
            timedelta(hours=2),
            timedelta(hours=3),
        ]


def test_without_auto_skip_waits_do_not_move_the_clock() -> None:
    with LocalEnv(auto_skip=False) as env:
        haul = env.workflow(LongHaul)
        start = env.now()
        with introspect(haul, "a") as inst:
            haul.create(id="a").result()
            with pytest.raises(WaitTimeoutError, match="env's clock is at"):
                inst.get_output(timeout=0.2).result()
            assert env.now() == start
            env.auto_skip = True
            assert inst.get_output(timeout=30).result()["tries"] == 7


def test_an_instance_wait_skips_time_too() -> None:
    with LocalEnv() as env:
        haul = env.workflow(LongHaul)
        inst = haul.create(id="a").result()
        assert inst.wait(timeout=30).result().output["tries"] == 7
