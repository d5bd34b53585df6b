"""Metrics an operator expects, kept cheaply in each process and merged where they are exported.

Per step, a process adds to a `Tally` (plain dict arithmetic on the event loop thread: no lock,
no syscall, no Ray call; measured in benchmarks/metrics_overhead.py). The instance actor reports
its tally with each batch result to the namespace actor, which keeps the workflow's totals; the
raydo server's `/metrics` reads them from every namespace (server/metrics.py), and each actor
also mirrors its tally into `ray.util.metrics` on a slow timer (actors/metrics.py) so a Ray
cluster's own Prometheus scrape sees the same numbers.

A histogram is kept as Prometheus keeps one: cumulative counts per upper bound, a sum and a count.

    name                                   kind       labels             where it is counted
    raydo_instances                        gauge      workflow, status   namespace (kept counters)
    raydo_instances_created_total          counter    workflow           namespace create
    raydo_instances_expired_total          counter    workflow           namespace (retention)
    raydo_schedule_ticks_total             counter    workflow           namespace (cron)
    raydo_queue_length                     gauge      workflow           namespace (queued+waking)
    raydo_pool_size                        gauge      workflow           namespace (instance actors)
    raydo_active_instances                 gauge      workflow           namespace
    raydo_step_attempts_total              counter    workflow, outcome  instance actor
    raydo_step_retries_total               counter    workflow           instance actor
    raydo_step_duration_seconds            histogram  workflow           instance actor (attempt)
    raydo_wake_lateness_seconds            histogram  workflow           instance actor (sleep end)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from ..storage.instances import InstanceStore
from ..storage.kv import Staged
from ..storage.records import StepKind, StepRecord, StepState, StepWrites
from .clock import Clock

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0)

ATTEMPTS = "raydo_step_attempts_total"
RETRIES = "raydo_step_retries_total"
STEP_DURATION = "raydo_step_duration_seconds"
WAKE_LATENESS = "raydo_wake_lateness_seconds"
CREATED = "raydo_instances_created_total"
EXPIRED = "raydo_instances_expired_total"
TICKS = "raydo_schedule_ticks_total"
INSTANCES = "raydo_instances"
QUEUE = "raydo_queue_length"
POOL = "raydo_pool_size"
ACTIVE = "raydo_active_instances"

BUCKETS = {STEP_DURATION: DURATION_BUCKETS, WAKE_LATENESS: LATENESS_BUCKETS}
HELP = {
    INSTANCES: "Instances of the workflow in each status",
    CREATED: "Instances created",
    EXPIRED: "Finished instances deleted when their retention ran out",
    TICKS: "Instances created by cron schedules",
    QUEUE: "Instances waiting for a concurrency slot (queued, or woken and not yet running)",
    POOL: "Instance actors of the workflow (busy and idle)",
    ACTIVE: "Instances running in an activation now",
    ATTEMPTS: "Step attempts that ended, by outcome (ok, retry, failed)",
    RETRIES: "Step attempts that failed and will be retried",
    STEP_DURATION: "Duration of one step attempt, in seconds",
    WAKE_LATENESS: "How late a sleep ended after its due time, in seconds",
}

_MAX_OPEN = 10_000
_LABELS = {INSTANCES: ("workflow", "status"), ATTEMPTS: ("workflow", "outcome")}

Labels = tuple[str, ...]
Key = tuple[str, Labels]


def label_names(name: str) -> tuple[str, ...]:
    return _LABELS.get(name, ("workflow",))


@dataclass
class Tally:
    """Counters and histograms of one process since it last handed them on (`take`)."""

    counters: dict[Key, float] = field(default_factory=dict)
    histograms: dict[Key, list[float]] = field(default_factory=dict)  # per bucket, +Inf, sum

    def count(self, name: str, labels: Labels, n: float = 1) -> None:
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0) + n

    def observe(self, name: str, labels: Labels, value: float) -> None:
        bounds = BUCKETS[name]
        key = (name, labels)
        hist = self.histograms.get(key)
        if hist is None:
            hist = self.histograms[key] = [0.0] * (len(bounds) + 2)
        hist[bisect.bisect_left(bounds, value)] += 1  # counts per bucket, not cumulative
        hist[-1] += value

    def merge(self, other: Tally) -> None:
        for key, n in other.counters.items():
            self.counters[key] = self.counters.get(key, 0) + n
        for key, hist in other.histograms.items():
            mine = self.histograms.get(key)
            if mine is None:
                self.histograms[key] = list(hist)
            else:
                for i, n in enumerate(hist):
                    mine[i] += n

    def take(self) -> Tally:
        """Everything counted since the last take; this tally starts again from zero."""
        taken = Tally(self.counters, self.histograms)
        self.counters, self.histograms = {}, {}
        return taken

    def __bool__(self) -> bool:
        return bool(self.counters or self.histograms)


def cumulative(name: str, hist: list[float]) -> tuple[list[tuple[str, float]], float, float]:
    """A kept histogram as Prometheus exposes it: (le, cumulative count) pairs ending with +Inf,
    the sum and the count."""
    bounds, running, out = BUCKETS[name], 0.0, []
    for bound, n in zip((*[str(b) for b in bounds], "+Inf"), hist[:-1], strict=True):
        running += n
        out.append((bound, running))
    return out, hist[-1], running


@dataclass
class Report:
    """A namespace's metrics at one moment: its totals and its gauges."""

    workflow: str
    totals: Tally
    gauges: dict[Key, float]


def merge_reports(workflow: str, reports: list[Report]) -> Report:
    """One workflow's reports from several nodes as one: totals and gauges summed (each node
    counts only the instances it homes)."""
    totals = Tally()
    gauges: dict[Key, float] = {}
    for report in reports:
        totals.merge(report.totals)
        for key, value in report.gauges.items():
            gauges[key] = gauges.get(key, 0.0) + value
    return Report(workflow, totals, gauges)


class MeteredStore(InstanceStore):
    """The instance actor's store: watches the step records an activation writes, so the step
    path itself stays free of metrics code. An attempt starts with an unsynced `running` write
    (or its slot: storage/inflight.py) and ends with the synced write of its outcome; a sleep
    ends with its `done` write."""

    def __init__(self, *args: Any, clock: Clock, tally: Tally) -> None:
        super().__init__(*args)
        self.clock, self.tally = clock, tally
        self._labels: Labels = (self.workflow,)
        self._outcomes = {o: (self.workflow, o) for o in ("ok", "retry", "failed")}
        self._started: dict[tuple[str, tuple[str, int]], float] = {}

    def stage_steps(self, iid: str, lease: int, writes: StepWrites) -> Staged:
        staged = super().stage_steps(iid, lease, writes)
        staged.after = lambda: self._observe(iid, writes)  # once written
        return staged

    def _observe(self, iid: str, writes: StepWrites) -> None:
        for step_id, step in writes:
            if step.kind is StepKind.DO:
                self._watch_attempt((iid, step_id), step)
            elif step.kind is StepKind.SLEEP and step.state is StepState.DONE and step.until:
                ended = step.ended_at or self.clock.now()
                self.tally.observe(WAKE_LATENESS, self._labels, max(0.0, ended - step.until))

    def begin_attempt(
        self, iid: str, lease: int, step_id: tuple[str, int], step: StepRecord
    ) -> int | None:
        slot = super().begin_attempt(iid, lease, step_id, step)
        if slot is not None:
            self._watch_attempt((iid, step_id), step)
        return slot

    def _watch_attempt(self, key: tuple[str, tuple[str, int]], step: StepRecord) -> None:
        if step.state is StepState.RUNNING:
            if len(self._started) > _MAX_OPEN:
                self._started.clear()  # attempts of stopped activations never end here
            # (a long attempt's running record is written after its start: the start counts)
            self._started.setdefault(key, self.clock.monotonic())
            return
        started = self._started.pop(key, None)
        if started is None:
            return  # not an attempt's end (e.g. the step's first record)
        outcome = "retry" if step.state is StepState.RETRYING else "failed" if step.error else "ok"
        self.tally.count(ATTEMPTS, self._outcomes[outcome])
        if outcome == "retry":
            self.tally.count(RETRIES, self._labels)
        self.tally.observe(STEP_DURATION, self._labels, self.clock.monotonic() - started)
