"""A per-second cron on a real 3-node cluster (three `ray start` processes, each with its own
storage folder), served by `raydo --address auto serve` on the head: every node's namespace runs
the schedule and each tick makes exactly one instance cluster-wide (runtime/tick_claims.py); the
head's `/metrics` counts the instances of every node (docs/cluster.md)."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from multinode import LocalCluster
from test_serve_cluster import Server, _stored_ids, _stored_status, _tick, until

from raydo.storage.kv import open_lmdb

pytestmark = [pytest.mark.ray, pytest.mark.extended]

FLOWS = """
import raydo


class Tick(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        return event.schedule["scheduled_time"].isoformat()


class Quick(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("double", lambda: event.payload * 2)
"""
NODES = ("head", "n2", "n3")
QUICK = [f"q{i}" for i in range(9)]


def _config(root: Path, storage: Path, schedules: str) -> None:
    (root / "raydo.toml").write_text(
        f'storage = "{storage}"\n'
        '[workflows.quick]\nclass = "cronflows:Quick"\n'
        f'[workflows.tick]\nclass = "cronflows:Tick"\nschedules = {schedules}\n'
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path)
    try:
        c.start_node("head", head=True)
        c.wait_nodes(1)
        for name in NODES[1:]:
            c.start_node(name)
        c.wait_nodes(3)
        (tmp_path / "cronflows.py").write_text(textwrap.dedent(FLOWS))
        _config(tmp_path, c.nodes["head"].storage, '["* * * * * *"]')
        yield c
    finally:
        c.shutdown()


def _ticks_by_node(cluster: LocalCluster) -> dict[str, list[str]]:
    return {
        name: _stored_ids(open_lmdb(str(cluster.nodes[name].storage)), "tick") for name in NODES
    }


def _homes(cluster: LocalCluster) -> dict[str, str]:
    homes = {}
    for name in NODES:
        kv = open_lmdb(str(cluster.nodes[name].storage))
        homes |= {iid: name for iid in QUICK if _stored_status(kv, "quick", iid) == "complete"}
    return homes


def test_a_cron_fires_once_per_tick_and_metrics_count_every_node(cluster: LocalCluster) -> None:
    root = cluster.root
    server = Server(cluster, root, cluster.address)
    try:
        for iid in QUICK:
            r = httpx.post(
                f"{server.url}/api/workflows/quick/instances",
                json={"id": iid, "params": 1},
                timeout=60,
            )
            assert r.status_code == 201, r.text
        homes = until(lambda: _homes(cluster) if len(_homes(cluster)) == len(QUICK) else None, "")
        assert len(set(homes.values())) >= 2, homes  # the metrics below span several nodes
        metrics = httpx.get(f"{server.url}/metrics", timeout=60).text
        assert f'raydo_instances{{status="complete",workflow="quick"}} {len(QUICK)}.0' in metrics
        assert "raydo_metrics_errors_total 0.0" in metrics
        until(lambda: sum(map(len, _ticks_by_node(cluster).values())) >= 12, "12 ticks")
    finally:
        server.stop()

    # The schedule is withdrawn from every node (a server whose config declares none), so the
    # count below is final; then every tick from the first to the last has exactly one instance.
    _config(root, cluster.nodes["head"].storage, "[]")
    again = Server(cluster, root, cluster.address)
    try:
        by_node = _ticks_by_node(cluster)
        everywhere = Counter(iid for ids in by_node.values() for iid in ids)
        assert [iid for iid, n in everywhere.items() if n > 1] == []
        seconds = sorted(int(_tick(iid)) for iid in everywhere)
        assert seconds == list(range(seconds[0], seconds[-1] + 1)), seconds
        listed = httpx.get(
            f"{again.url}/api/workflows/tick/instances", params={"limit": 1000}, timeout=60
        ).json()["result"]
        assert sorted(row["id"] for row in listed) == sorted(everywhere)
    finally:
        again.stop()
