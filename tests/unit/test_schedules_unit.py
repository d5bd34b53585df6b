"""Cron schedules without Ray: the in-memory store, a fake clock, the namespace's Scheduler."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from raydo import InvalidInputError
from raydo.runtime.model import WorkflowEntrypoint
from raydo.runtime.schedules import Scheduler, check_crons, due_tick, next_tick, tick_id
from raydo.storage.schedules import ScheduleStore
from tests.unit.harness import Harness

HOURLY = "0 * * * *"
START = datetime(2026, 1, 1, 10, 20, tzinfo=UTC).timestamp()


class Report(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return {"schedule": event.schedule, "payload": event.payload}


def _at(hour: int, minute: int = 0) -> float:
    return datetime(2026, 1, 1, hour, minute, tzinfo=UTC).timestamp()


def _scheduler(h: Harness) -> Scheduler:
    return Scheduler(h.ns, ScheduleStore(h.kv, "wf"), h.clock)


def _ids(h: Harness) -> list[str]:
    return sorted(r.id for r in h.store.records())


def test_tick_math() -> None:
    assert next_tick(HOURLY, _at(10, 20)) == _at(11)
    assert next_tick(HOURLY, _at(11)) == _at(12)  # strictly after
    assert due_tick(HOURLY, _at(11), _at(11, 59)) is None
    assert due_tick(HOURLY, _at(11), _at(12)) == _at(12)  # a tick at now is due
    assert due_tick(HOURLY, _at(10, 20), _at(15, 30)) == _at(15)  # only the latest missed one
    assert tick_id(HOURLY, _at(12)) == tick_id(HOURLY, _at(12)) != tick_id(HOURLY, _at(13))
    assert tick_id(HOURLY, _at(12)).endswith("-20260101T120000Z")


@pytest.mark.asyncio
async def test_each_tick_creates_one_instance_with_event_schedule() -> None:
    h = Harness(Report)
    h.clock._now = START
    s = _scheduler(h)
    s.use([HOURLY])
    await h.advance(30 * 60)  # 10:50: no tick yet (a new schedule starts from its next tick)
    assert _ids(h) == []
    await h.advance(20 * 60)  # 11:10
    await h.advance(60 * 60)  # 12:10
    await h.settle()
    assert _ids(h) == sorted([tick_id(HOURLY, _at(11)), tick_id(HOURLY, _at(12))])
    out = h.output(tick_id(HOURLY, _at(12)))
    assert out == {
        "schedule": {"cron": HOURLY, "scheduled_time": datetime.fromtimestamp(_at(12), UTC)},
        "payload": None,
    }
    assert not s.fire(HOURLY, _at(12))  # the same tick again: refused, nothing created
    assert len(_ids(h)) == 2
    s.stop()


@pytest.mark.asyncio
async def test_ticks_missed_while_down_fire_once_at_start_and_never_twice() -> None:
    h = Harness(Report)
    h.clock._now = START
    first = _scheduler(h)
    first.use([HOURLY])
    await h.advance(60 * 60)  # 11:20: the 11:00 tick fired
    first.stop()  # raydo goes down
    await h.clock.advance(4 * 3600)  # 15:20: 12, 13, 14, 15 missed
    again = _scheduler(h)
    again.start()  # the schedules come back from storage
    await h.advance(1)
    await h.settle()
    assert _ids(h) == sorted([tick_id(HOURLY, _at(11)), tick_id(HOURLY, _at(15))])
    again.stop()
    third = _scheduler(h)  # a restart right after: 15:00 is not fired again
    third.start()
    await h.advance(1)
    assert len(_ids(h)) == 2
    third.stop()


@pytest.mark.asyncio
async def test_undeclared_schedules_stop_and_bad_crons_are_refused() -> None:
    h = Harness(Report)
    h.clock._now = START
    s = _scheduler(h)
    s.use([HOURLY, "*/30 * * * *"])
    assert s.crons == [HOURLY, "*/30 * * * *"]
    s.use(["*/30 * * * *"])
    assert s.crons == ["*/30 * * * *"]
    assert ScheduleStore(h.kv, "wf").last_tick(HOURLY) is None
    for bad in ["61 * * * *", "every day", "", ["0 9 * * 1", 5]]:
        with pytest.raises(InvalidInputError, match=r"cron|schedule"):
            s.use(bad if isinstance(bad, list) else [bad])
    with pytest.raises(InvalidInputError, match="list"):
        check_crons("0 9 * * 1")
    assert ScheduleStore(h.kv, "wf").crons() == ["*/30 * * * *"]  # nothing written
    s.stop()
