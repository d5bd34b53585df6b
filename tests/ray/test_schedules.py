"""Cron schedules on real Ray and LMDB: instances created per tick with event.schedule, through a
kill of the namespace actor (Ray restarts it; the schedule comes back from storage), each tick
once. An every-second cron (croniter's 6th field is seconds) keeps the test short."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray

import raydo
from raydo import ClusterError, InvalidInputError, WorkflowEntrypoint
from raydo.runtime.schedules import tick_id
from raydo.storage.kv import open_lmdb
from raydo.storage.schedules import ScheduleStore

pytestmark = pytest.mark.ray

EVERY_SECOND = "* * * * * *"


class Report(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        sched = event.schedule
        return {"cron": sched["cron"], "at": sched["scheduled_time"].timestamp()}


def until(check: Callable[[], Any], what: str, limit: float = 60) -> Any:
    deadline = time.monotonic() + limit
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def finished(wf: raydo.Workflow) -> list[raydo.StatusInfo]:
    try:
        return [s for s in wf.instances().result() if s.status == "complete"]
    except ClusterError:  # the namespace actor is restarting
        return []


def test_cron_creates_instances_per_tick_once_across_a_namespace_kill(raydo_env: Path) -> None:
    wf = raydo.workflow(Report, name="cron", schedules=[EVERY_SECOND], concurrency=2)
    until(lambda: len(finished(wf)) >= 2, "two ticks")
    before = {s.id for s in finished(wf)}
    ray.kill(wf.actor, no_restart=False)  # Ray restarts it; it reads its schedules back
    until(lambda: len({s.id for s in finished(wf)} - before) >= 2, "ticks after the restart")
    raydo.workflow(Report, name="cron", schedules=[]).instances().result()  # undeclared
    kv = open_lmdb(str(raydo_env))
    assert ScheduleStore(kv, "cron").crons() == []
    ticks = []
    for st in wf.instances().result():
        full = wf.get(st.id).result().status().result()
        if full.status != "complete":
            continue
        assert full.output["cron"] == EVERY_SECOND
        assert st.id == tick_id(EVERY_SECOND, full.output["at"])  # one id per tick
        ticks.append(full.output["at"])
    assert len(ticks) == len(set(ticks)) >= 4
    assert all(t == int(t) for t in ticks)  # on the second, as the cron says


def test_bad_schedules_are_refused_before_anything_is_stored(raydo_env: Path) -> None:
    for bad in (["61 * * * *"], "0 9 * * 1", ["nonsense"]):
        with pytest.raises(InvalidInputError, match="schedule"):
            raydo.workflow(Report, name="badcron", schedules=bad)  # type: ignore[arg-type]
    kv = open_lmdb(str(raydo_env))
    assert ScheduleStore(kv, "badcron").crons() == []
