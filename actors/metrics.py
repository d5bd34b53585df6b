"""A workflow's metrics in its namespace actor: totals merged from the instance actors' reports,
gauges read from the namespace when asked, and a mirror into `ray.util.metrics` so a Ray cluster's
Prometheus scrape sees them too (names and meaning: runtime/metrics.py).

The mirror runs every EXPORT_EVERY seconds, never per step: a `ray.util.metrics` call costs
~8 us, a Tally addition ~0.5 us. Ray has no bulk histogram observe, so a histogram goes to Ray as
counters `<name>_bucket{le}` (cumulative, as Prometheus lays a histogram out), `<name>_sum` and
`<name>_count`: `histogram_quantile` works on them as on a native histogram.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..runtime import listing
from ..runtime import metrics as m
from ..runtime.namespace import Namespace

log = logging.getLogger("raydo")

EXPORT_EVERY = 10.0


class WorkflowMetrics:
    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        self.totals = m.Tally()
        self._created = 0
        self._mirror: RayMirror | None = None

    def add(self, tally: m.Tally) -> None:
        """An instance actor's report (runs on the namespace actor's loop)."""
        self.totals.merge(tally)

    def count_created(self, n: int) -> None:
        self._created += n

    def report(self, ns: Namespace, pool_size: int, ticks: int) -> m.Report:
        wf = (self.workflow,)
        totals = m.Tally()
        totals.merge(self.totals)
        totals.count(m.CREATED, wf, self._created + ticks)
        totals.count(m.EXPIRED, wf, ns.expired)
        totals.count(m.TICKS, wf, ticks)
        stats = ns.stats()
        gauges: dict[m.Key, float] = {
            (m.QUEUE, wf): stats["queued"] + stats["waking"],
            (m.ACTIVE, wf): stats["active"],
            (m.POOL, wf): pool_size,
        }
        # The kept counters (no scan), as `counts()` reports them.
        for status, n in listing.kept_counts(ns.store, ns.reported, ns.overlaid()).items():
            gauges[(m.INSTANCES, (self.workflow, str(status)))] = n
        return m.Report(self.workflow, totals, gauges)

    async def export_forever(self, make_report: Any) -> None:
        """Mirror the report into ray.util.metrics now and then. Never stops on an error."""
        while True:
            await asyncio.sleep(EXPORT_EVERY)
            try:
                if self._mirror is None:
                    self._mirror = RayMirror()
                self._mirror.export(make_report())
            except Exception:
                log.exception("exporting metrics of workflow %s to Ray failed", self.workflow)


class RayMirror:
    """Ray metric objects, made on first use, fed the growth of each total since last time."""

    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}
        self._seen: dict[tuple[str, tuple[str, ...]], float] = {}

    def export(self, report: m.Report) -> None:
        for (name, labels), value in report.gauges.items():
            self._metric("gauge", name, m.label_names(name)).set(value, _tags(name, labels))
        for (name, labels), value in report.totals.counters.items():
            self._add(name.removesuffix("_total"), m.label_names(name), labels, value)
        for (name, labels), hist in report.totals.histograms.items():
            buckets, total, count = m.cumulative(name, hist)
            for le, n in buckets:
                self._add(f"{name}_bucket", ("workflow", "le"), (*labels, le), n)
            self._add(f"{name}_sum", ("workflow",), labels, total)
            self._add(f"{name}_count", ("workflow",), labels, count)

    def _add(self, name: str, keys: tuple[str, ...], labels: tuple[str, ...], value: float) -> None:
        grown = value - self._seen.get((name, labels), 0.0)
        self._seen[(name, labels)] = value
        if grown > 0:
            self._metric("counter", name, keys).inc(grown, dict(zip(keys, labels, strict=True)))

    def _metric(self, kind: str, name: str, keys: tuple[str, ...]) -> Any:
        metric = self._metrics.get(name)
        if metric is None:
            from ray.util import metrics as ray_metrics

            cls = ray_metrics.Gauge if kind == "gauge" else ray_metrics.Counter
            metric = self._metrics[name] = cls(name, _help(name), tag_keys=keys)
        return metric


def _tags(name: str, labels: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(m.label_names(name), labels, strict=True))


def _help(name: str) -> str:
    for candidate in (name, f"{name}_total", name.rsplit("_", 1)[0]):
        if candidate in m.HELP:
            return m.HELP[candidate]
    return name
