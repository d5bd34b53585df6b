"""Metrics without Ray: the Tally, the store that watches step records, the mirror into
ray.util.metrics (its metric classes replaced by recorders)."""

from __future__ import annotations

from typing import Any

import pytest

from raydo.actors import metrics as actor_metrics
from raydo.runtime import metrics as m
from raydo.runtime.model import WorkflowEntrypoint
from tests.unit.harness import Harness


class Flaky(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def sometimes(ctx: Any) -> str:
            if ctx.attempt < 3:
                raise ConnectionError("busy")
            return "ok"

        await step.do("first", lambda: 1)
        await step.do("flaky", sometimes, retries={"limit": 5, "delay": "1 second"})
        await step.sleep("nap", "10 seconds")
        return "done"


def metered(h: Harness) -> m.Tally:
    tally = m.Tally()
    store = m.MeteredStore(h.kv, "wf", clock=h.clock, tally=tally)
    for runner in list(h.ns.pool._leases):  # type: ignore[attr-defined]
        runner.store = store
    return tally


@pytest.mark.asyncio
async def test_attempts_retries_durations_and_lateness_are_counted() -> None:
    h = Harness(Flaky)
    tally = metered(h)
    h.create("i")
    await h.settle()
    for _ in range(4):
        await h.advance(5)
    assert h.status("i") == "complete"
    wf = ("wf",)
    assert tally.counters[(m.ATTEMPTS, ("wf", "ok"))] == 2
    assert tally.counters[(m.ATTEMPTS, ("wf", "retry"))] == 2
    assert tally.counters[(m.RETRIES, wf)] == 2
    buckets, total, count = m.cumulative(m.STEP_DURATION, tally.histograms[(m.STEP_DURATION, wf)])
    assert count == 4 and buckets[-1] == ("+Inf", 4) and total >= 0
    _, late, wakes = m.cumulative(m.WAKE_LATENESS, tally.histograms[(m.WAKE_LATENESS, wf)])
    assert wakes == 1 and 0 <= late < 10
    taken = tally.take()
    assert taken and not tally


def test_tally_merge_and_cumulative_buckets() -> None:
    a, b = m.Tally(), m.Tally()
    a.observe(m.STEP_DURATION, ("w",), 0.002)
    b.observe(m.STEP_DURATION, ("w",), 0.002)
    b.observe(m.STEP_DURATION, ("w",), 1000.0)
    b.count(m.ATTEMPTS, ("w", "ok"), 3)
    a.merge(b)
    buckets, total, count = m.cumulative(m.STEP_DURATION, a.histograms[(m.STEP_DURATION, ("w",))])
    assert dict(buckets)["0.001"] == 0 and dict(buckets)["0.005"] == 2
    assert dict(buckets)["600.0"] == 2 and dict(buckets)["+Inf"] == 3 == count
    assert total == pytest.approx(1000.004)
    assert a.counters[(m.ATTEMPTS, ("w", "ok"))] == 3


class Recorder:
    made: dict[str, Recorder] = {}

    def __init__(self, name: str, description: str, tag_keys: tuple[str, ...]) -> None:
        self.name, self.keys, self.calls = name, tag_keys, []
        Recorder.made[name] = self

    def inc(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("inc", value, tags))

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("set", value, tags))


def test_ray_mirror_sends_growth_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.util import metrics as ray_metrics

    monkeypatch.setattr(ray_metrics, "Counter", Recorder)
    monkeypatch.setattr(ray_metrics, "Gauge", Recorder)
    mirror = actor_metrics.RayMirror()
    totals = m.Tally()
    totals.count(m.ATTEMPTS, ("w", "ok"), 5)
    totals.observe(m.STEP_DURATION, ("w",), 0.02)
    report = m.Report("w", totals, {(m.INSTANCES, ("w", "complete")): 7})
    mirror.export(report)
    totals.count(m.ATTEMPTS, ("w", "ok"), 2)
    mirror.export(report)
    attempts = Recorder.made["raydo_step_attempts"]
    assert [c[1] for c in attempts.calls] == [5, 2]
    assert attempts.calls[0][2] == {"workflow": "w", "outcome": "ok"}
    assert Recorder.made["raydo_instances"].calls[0] == (
        "set",
        7,
        {"workflow": "w", "status": "complete"},
    )
    bucket = Recorder.made["raydo_step_duration_seconds_bucket"]
    assert ("inc", 1.0, {"workflow": "w", "le": "0.05"}) in bucket.calls
    assert all(c[2]["le"] != "0.01" for c in bucket.calls)  # an empty bucket sends nothing
