"""raydo.testing's LocalEnv runs a workflow's cron schedules on its fake clock: a test advances
time and sees the instances of each tick appear, with the ids and `event.schedule` the namespace
actor gives them (runtime/schedules.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from raydo import WorkflowEntrypoint
from raydo.runtime.schedules import tick_id
from raydo.testing import LocalEnv

HOURLY = "0 * * * *"
START = datetime(2030, 1, 1, 10, 20, tzinfo=UTC)


class Report(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        total = await step.do("count", lambda: 1)
        return {"at": event.schedule["scheduled_time"].isoformat(), "total": total}


def _ids(wf: Any) -> list[str]:
    return sorted(inst.id for inst in wf.instances().result())


def _tick(hour: int) -> str:
    return tick_id(HOURLY, datetime(2030, 1, 1, hour, tzinfo=UTC).timestamp())


def test_cron_instances_appear_as_the_fake_clock_advances() -> None:
    with LocalEnv(start=START) as env:
        wf = env.workflow(Report, schedules=[HOURLY])
        env.advance("30 minutes").result()  # 10:50: a new schedule starts from its next tick
        assert _ids(wf) == []
        env.advance("1 hour").result()  # 11:50
        assert _ids(wf) == [_tick(11)]
        env.advance(timedelta(hours=2)).result()  # 13:50: one instance per tick, none twice
        assert _ids(wf) == [_tick(11), _tick(12), _tick(13)]
        done = wf.get(_tick(12)).result().wait(timeout=30).result()
        assert done.output == {"at": "2030-01-01T12:00:00+00:00", "total": 1}


def test_declaring_no_schedules_stops_them() -> None:
    with LocalEnv(start=START) as env:
        env.workflow(Report, name="report", schedules=[HOURLY])
        env.advance("1 hour").result()
        wf = env.workflow(Report, name="report", schedules=[])
        env.advance("3 hours").result()
        assert _ids(wf) == [_tick(11)]
