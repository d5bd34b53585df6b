"""`GET /metrics`: the declared workflows' metrics in Prometheus' text format (prometheus_client).

Each scrape asks every workflow's namespace actor for its report (runtime/metrics.py: totals
from the instance actors, gauges read at that moment) and renders them in a registry made for
that scrape, so the server holds no metric state of its own and two servers on one storage agree.
On a multi-node cluster a workflow's report is the sum of every reachable node's (the bindings'
Router). A workflow that cannot answer is left out and counted in `raydo_metrics_errors_total`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar, cast

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..bindings.config import Project
from ..runtime import metrics as m
from ..runtime.rules import brief

log = logging.getLogger("raydo")


def add_metrics_route(api: FastAPI, project: Project) -> None:
    @api.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        reports, errors = await _reports(project)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Reports(reports, errors))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _reports(project: Project) -> tuple[list[m.Report], int]:
    reports, errors = [], 0
    for name in project.names:
        try:
            reports.append(await project.workflow(name).metrics_report())
        except Exception as exc:
            errors += 1
            log.warning("metrics of workflow %s unavailable: %s", name, brief(exc))
    return reports, errors


class _Reports(Collector):
    def __init__(self, reports: list[m.Report], errors: int) -> None:
        self.reports, self.errors = reports, errors

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for report in self.reports:
            self._add(families, report)
        yield from families.values()
        failed = CounterMetricFamily(
            "raydo_metrics_errors", "Workflows whose metrics a scrape could not read"
        )
        failed.add_metric([], self.errors)
        yield failed

    @staticmethod
    def _add(families: dict[str, Metric], report: m.Report) -> None:
        for (name, labels), value in sorted(report.gauges.items()):
            keys = m.label_names(name)
            gauge = _family(
                families, name, partial(GaugeMetricFamily, name, m.HELP[name], labels=keys)
            )
            gauge.add_metric(list(labels), value)
        for (name, labels), value in sorted(report.totals.counters.items()):
            # prometheus_client adds _total back to the name
            bare, keys = name.removesuffix("_total"), m.label_names(name)
            counter = _family(
                families, name, partial(CounterMetricFamily, bare, m.HELP[name], labels=keys)
            )
            counter.add_metric(list(labels), value)
        for (name, labels), hist in sorted(report.totals.histograms.items()):
            made = _family(
                families,
                name,
                partial(HistogramMetricFamily, name, m.HELP[name], labels=["workflow"]),
            )
            buckets, total, _ = m.cumulative(name, hist)
            made.add_metric(list(labels), buckets, total)


F = TypeVar("F", bound=Metric)


def _family(families: dict[str, Metric], name: str, make: Callable[[], F]) -> F:
    """The family of `name` in this scrape, made on first use (one per name across workflows)."""
    found = families.get(name)
    if found is None:
        found = families[name] = make()
    return cast(F, found)
