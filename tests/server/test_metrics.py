"""`GET /metrics` on a real server: scraped with Prometheus' own parser, values move as
instances are created and run (creates, statuses, attempts, retries, step durations, lateness)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servekit import Served, until

pytestmark = pytest.mark.ray


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = httpx.get(f"{url}/metrics", timeout=30)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_as_instances_are_created_and_run(served: Served) -> None:
    url = served.url
    before = scrape(url)
    assert value(before, "raydo_instances_created_total", workflow="greet") == 0
    assert value(before, "raydo_instances", workflow="greet", status="complete") == 0
    assert value(before, "raydo_metrics_errors_total") == 0
    for n in range(3):
        r = httpx.post(f"{url}/api/workflows/greet/instances", json={"params": {"name": f"n{n}"}})
        assert r.status_code == 201
    r = httpx.post(f"{url}/api/workflows/pipeline/instances", json={"params": {"pace": 0.05}})
    assert r.status_code == 201

    def settled() -> dict[Any, float] | None:
        now = scrape(url)
        done = value(now, "raydo_instances", workflow="greet", status="complete") == 3
        piped = value(now, "raydo_instances", workflow="pipeline", status="complete") == 1
        reported = value(now, "raydo_step_attempts_total", workflow="pipeline", outcome="ok") == 4
        return now if done and piped and reported else None

    after = until(settled, "three greets and a pipeline to complete and be counted", 120)
    assert value(after, "raydo_instances_created_total", workflow="greet") == 3
    assert value(after, "raydo_step_attempts_total", workflow="greet", outcome="ok") == 3
    assert value(after, "raydo_step_attempts_total", workflow="pipeline", outcome="retry") == 1
    assert value(after, "raydo_step_retries_total", workflow="pipeline") == 1
    count = value(after, "raydo_step_duration_seconds_count", workflow="pipeline")
    assert count == 5  # 4 ok + 1 retried attempt
    inf = value(after, "raydo_step_duration_seconds_bucket", workflow="pipeline", le="+Inf")
    assert inf == count
    assert value(after, "raydo_step_duration_seconds_sum", workflow="pipeline") >= 3 * 0.05
    assert value(after, "raydo_wake_lateness_seconds_count", workflow="greet") == 3
    assert value(after, "raydo_queue_length", workflow="greet") == 0
    assert value(after, "raydo_pool_size", workflow="greet") >= 1


def test_metrics_need_the_token_off_loopback(served: Served) -> None:
    url = served.start("s3cret")
    assert httpx.get(f"{url}/metrics", timeout=60).status_code == 401
    auth = {"authorization": "Bearer s3cret"}
    ok = httpx.get(f"{url}/metrics", headers=auth, timeout=60)  # starts the namespace actors
    assert ok.status_code == 200 and "raydo_instances" in ok.text
